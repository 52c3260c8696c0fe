"The TinyVLA backend on tiny, randomly initialised TinyVLA checkpoints written offline in the released layout."
import json, pickle, shutil
from pathlib import Path

import numpy as np
import pytest
import torch
from safetensors.torch import load_file, save_file

from salus.vla import VLAObservation, VLAPolicy, backend_of, load_backend
from salus.vla.base import checkpoint_identity
from salus.vla.tinyvla import TinyVLAAdapter, TinyVLABackend, write_tiny_tinyvla

ENVS = dict(image_size=32, control_hz=10, collision_force=60.0, seen_tasks=['lift_red'], unseen_tasks=[])

@pytest.fixture(scope='module')
def tiny(tmp_path_factory):
    "A 7-D-action, 11-D-state TinyVLA (the suite's own sizes: the identity adapter)."
    return write_tiny_tinyvla(tmp_path_factory.mktemp('tinyvla')/'tiny')

def observation(B=2, seed=0, size=32):
    rng = np.random.default_rng(seed)
    img = lambda: rng.integers(0, 256, (B, size, size, 3), dtype=np.uint8)
    return VLAObservation(img(), img(), rng.normal(size=(B, 11)), ['lift the red cube', 'open the drawer'][:B])

def load(path, **kw):
    with pytest.warns(UserWarning, match='not normalised'): return TinyVLABackend.from_pretrained(path, **kw)

def copy_with(src, dest, edit_config=None, edit_weights=None):
    "A copy of a checkpoint folder with its config.json and/or its tensors edited."
    shutil.copytree(src, dest)
    if edit_config:
        config = json.loads((dest/'config.json').read_text()); edit_config(config)
        (dest/'config.json').write_text(json.dumps(config))
    if edit_weights:
        state = load_file(dest/'model.safetensors'); edit_weights(state)
        save_file(state, dest/'model.safetensors')
    return dest

def test_members_disagree_and_save_load_is_exact(tiny, tmp_path):
    backend = load(tiny, members=3)
    assert isinstance(backend, VLAPolicy) and (backend.members, backend.chunk_size, backend.action_dim) == (3, 4, 7)
    chunks, emb = backend.member_chunks(observation(), torch.Generator().manual_seed(0))
    assert chunks.shape == (3, 2, 4, 7) and emb.shape == (3, 2, backend.embedding_dim)
    assert chunks.std(0).mean() > 1e-3   # K noise draws of one model disagree
    assert np.array_equal(emb[0], emb[1])   # one backbone forward: the same embedding for every member
    backend.save(tmp_path/'saved')
    assert backend_of(tmp_path/'saved') == 'tinyvla'
    again = load_backend(tmp_path/'saved')
    assert np.array_equal(again.member_chunks(observation(), torch.Generator().manual_seed(0))[0], chunks)
    assert checkpoint_identity(backend.save(tmp_path/'twice')) == checkpoint_identity(tmp_path/'saved')
    samples = again.sample(observation(1), 3, torch.Generator().manual_seed(1))
    assert samples.shape == (3, 1, 4, 7) and samples.std(0).mean() > 1e-3

def test_a_released_style_10d_checkpoint_drives_the_suite(tmp_path):
    "TinyVLA's own sizes (8-D state, 10-D xyz + 6-D rotation + gripper actions) with its dataset_stats.pkl one folder up."
    from salus.params import EnvsParams
    from salus.rollout import evaluate_policy
    folder = write_tiny_tinyvla(tmp_path/'release'/'checkpoint-1000', action_dim=10, state_dim=8, chunk_size=4)
    stats = {'qpos_mean': np.zeros(8, np.float32), 'qpos_std': np.full(8, 0.5, np.float32),
             'action_min': np.full(10, -0.02, np.float32), 'action_max': np.full(10, 0.02, np.float32)}
    with open(tmp_path/'release'/'dataset_stats.pkl', 'wb') as f: pickle.dump(stats, f)   # TinyVLA's layout: beside the checkpoints
    backend = TinyVLABackend.from_pretrained(folder, members=2)
    assert backend.adapter.action_layout == 'xyz_rot6d_gripper' and backend.adapter.state_map == list(range(8))
    np.testing.assert_array_equal(backend.stats['qpos_std'], stats['qpos_std'])
    chunks, _ = backend.member_chunks(observation(1), torch.Generator().manual_seed(0))
    assert chunks.shape == (2, 1, 4, 7)
    assert np.abs(chunks[..., :3]).max() <= 0.02 / 0.04 + 1e-6   # positions within the statistics' range, in env units
    records = evaluate_policy(backend, ['lift_red'], EnvsParams(**ENVS), episodes=1, progress=False)
    assert records[0]['task'] == 'lift_red' and records[0]['steps'] > 0

def test_a_tinyvla_checkpoint_is_collected_like_an_embedded_one(tiny, tmp_path):
    "`collect_rollouts` loads the saved folder through the registry and sizes the store from it."
    from salus.collect import RolloutConfig, collect_rollouts, episode_specs
    backend = load(tiny, members=2)
    backend.save(tmp_path/'ckpt')
    cfg = RolloutConfig(str(tmp_path/'ckpt'), ENVS, ('epistemic', 'chunk_disagreement', 'sample_dispersion'), samples=2)
    store = collect_rollouts(tmp_path/'rollouts.zarr', episode_specs(['lift_red'], [], {'nominal': {}}, 1, seed=0), cfg,
                             backend='serial', progress=False)
    assert len(store) == 1 and store.attrs['members'] == 2
    assert store.data('chunks').shape == (store.n_steps, 2, 4, 7)
    assert store.data('embedding').shape == (store.n_steps, 2 * backend.embedding_dim)
    sig = store.data('signals')
    assert np.isfinite(sig).all() and sig[:, 0].max() > 0   # the noise-draw members disagree
    assert store.attrs['policy'] == checkpoint_identity(tmp_path/'ckpt')

@pytest.mark.parametrize('edit_config,edit_weights,message', [
    (lambda c: c.update(action_head_type='act'), None, "action_head_type 'act'"),
    (lambda c: c.update(model_type='llava'), None, "model_type 'llava', not 'llava_pythia'"),
    (lambda c: c['vision_config']['vision_tower'].update(vision_model_name_or_path='siglip'), None, 'CLIP tower only'),
    (lambda c: c.update(hidden_size=48), None, 'do not fit config.json'),
    (None, lambda s: s.pop('embed_out.combine.weight'), "missing ['embed_out.combine.weight']"),
    (None, lambda s: s.update(extra=torch.zeros(1)), "unexpected ['extra']"),
    (lambda c: c.update(action_dim=4), lambda s: None, 'do not fit'),   # the head's width is not the config's
])
def test_a_checkpoint_that_is_not_this_architecture_is_refused(tiny, tmp_path, edit_config, edit_weights, message):
    bad = copy_with(tiny, tmp_path/'bad', edit_config, edit_weights)
    with pytest.raises(ValueError, match=message.replace('[', r'\[').replace(']', r'\]').replace('(', r'\(').replace(')', r'\)')):
        TinyVLABackend.from_pretrained(bad)

def test_buffers_older_transformers_saved_are_rebuilt_not_refused(tiny, tmp_path):
    "GPT-NeoX checkpoints of older transformers hold its causal mask and rotary frequencies; they load, and run the same."
    def add(state):
        state['gpt_neox.layers.0.attention.bias'] = torch.ones(1, 1, 8, 8, dtype=torch.bool)
        state['gpt_neox.layers.0.attention.masked_bias'] = torch.tensor(-1e9)
        state['gpt_neox.layers.0.attention.rotary_emb.inv_freq'] = torch.ones(4)
    old = copy_with(tiny, tmp_path/'old', edit_weights=add)
    chunks = lambda path: load(path).member_chunks(observation(1), torch.Generator().manual_seed(0))[0]
    assert np.array_equal(chunks(old), chunks(tiny))

def test_missing_files_and_unmappable_sizes_are_named(tiny, tmp_path):
    with pytest.raises(FileNotFoundError, match='no TinyVLA checkpoint folder'): TinyVLABackend.from_pretrained(tmp_path/'nothing')
    partial = copy_with(tiny, tmp_path/'partial')
    (partial/'preprocessor_config.json').unlink(); (partial/'tokenizer.json').unlink()
    with pytest.raises(FileNotFoundError, match=r"missing \['preprocessor_config.json', 'tokenizer.json"): TinyVLABackend.from_pretrained(partial)
    four = write_tiny_tinyvla(tmp_path/'four', action_dim=4, state_dim=8)
    with pytest.raises(ValueError, match='actions are 4-D.*salus_adapter.json'): TinyVLABackend.from_pretrained(four)
    (four/'salus_adapter.json').write_text(json.dumps({'state_map': list(range(8)), 'action_layout': 'direct',
                                                       'action_map': [0, 1, 2, None, None, None, 3]}))
    backend = load(four, members=2)   # x, y, z and gripper: the adapter the user wrote
    chunks, _ = backend.member_chunks(observation(1), torch.Generator().manual_seed(0))
    assert chunks.shape == (2, 1, 4, 7) and np.all(chunks[..., 3:6] == 0)
    (four/'salus_adapter.json').write_text(json.dumps({'state_map': list(range(8)), 'action_map': [0, 1, 2, 3, 4, 5, 6]}))
    with pytest.raises(ValueError, match=r'action_map entries must be indices 0..3'): TinyVLABackend.from_pretrained(four)
    with pytest.raises(ValueError, match='state must have 11 values'):
        load(tiny).member_chunks(VLAObservation(*[observation(1).front] * 2, np.zeros((1, 8)), ['lift']))

class _Boom:
    def __reduce__(self): return (print, ('pickle ran code',))

def test_normalisation_pickles_run_no_code(tiny, tmp_path, capsys):
    folder = copy_with(tiny, tmp_path/'ckpt')
    with open(folder/'dataset_stats.pkl', 'wb') as f: pickle.dump({'qpos_mean': _Boom()}, f)
    with pytest.raises(ValueError, match='refusing to load builtins.print'): TinyVLABackend.from_pretrained(folder)
    assert 'pickle ran code' not in capsys.readouterr().out
    (folder/'dataset_stats.pkl').unlink()
    (folder/'dataset_stats.json').write_text(json.dumps({'qpos_mean': [0] * 11, 'qpos_std': [1] * 11, 'action_min': [0] * 3, 'action_max': [1] * 7}))
    with pytest.raises(ValueError, match='action_min must be 7 finite numbers'): TinyVLABackend.from_pretrained(folder)

def test_adapter_round_trips_every_env_action():
    rng = np.random.default_rng(0)
    env = rng.uniform(-1, 1, (50, 7))
    for state_dim, action_dim in ((11, 7), (8, 10), (7, 10)):
        a = TinyVLAAdapter.for_checkpoint(state_dim, action_dim)
        back = a.action(torch.from_numpy(a.checkpoint_action(env, action_dim)).double()).numpy()
        np.testing.assert_allclose(back, env, atol=1e-6)

def test_fine_tuning_a_10d_checkpoint_learns_its_own_units(demos, tmp_path):
    "A 10-D TinyVLA as `policy.checkpoint`: trained on the demonstrations turned into its actions, statistics refitted."
    from salus.vla.training_tinyvla import finetune_tinyvla
    store, _ = demos
    start = write_tiny_tinyvla(tmp_path/'start', action_dim=10, state_dim=8)
    before = load_file(start/'model.safetensors')
    tuned, losses = finetune_tinyvla(store, tmp_path/'tuned', checkpoint=start, members=2, steps=3, batch_size=4, lr=1e-3, progress=False)
    assert [h['step'] for h in losses] == [0, 1, 2] and all(np.isfinite(h['loss']) for h in losses)
    after = load_file(tmp_path/'tuned'/'model.safetensors')
    assert before.keys() == after.keys() and not torch.equal(before['embed_out.combine.weight'], after['embed_out.combine.weight'])
    assert tuned.stats['action_min'].shape == (10,) and tuned.stats['qpos_mean'].shape == (8,)
    assert (tuned.stats['action_min'][3:9] >= -1).all() and (tuned.stats['action_max'][3:9] <= 1).all()   # rotation rows
    assert load_backend(tmp_path/'tuned').member_chunks(observation(1), torch.Generator().manual_seed(0))[0].shape == (2, 1, 4, 7)
    from salus.vla import EmbeddedVLA, EmbeddedVLAConfig
    EmbeddedVLA(EmbeddedVLAConfig(image_size=32, channels=8, keypoints=4, hidden=16, flow_steps=2), members=2).save(tmp_path/'embedded')
    with pytest.raises(ValueError, match="a 'embedded' checkpoint, not a TinyVLA one"):
        finetune_tinyvla(store, tmp_path/'x', checkpoint=tmp_path/'embedded')
    assert not (tmp_path/'x').exists()   # refused before anything is written
