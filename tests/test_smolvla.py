"The SmolVLA backend on a tiny, randomly initialised SmolVLA built offline: lerobot's real model and processors."
import re
from pathlib import Path

import numpy as np
import pytest
import torch

pytest.importorskip('lerobot', reason='lerobot is installed by `make install` (requirements/lerobot.txt)')
from lerobot.policies.smolvla.modeling_smolvla import SmolVLAPolicy
from lerobot.policies.smolvla.processor_smolvla import make_smolvla_pre_post_processors

from salus.vla import VLAEnsemble, VLAObservation, VLAPolicy, backend_of, load_backend
from salus.vla.smolvla import SmolVLAAdapter, SmolVLABackend, tiny_smolvla_config, tiny_smolvlm

@pytest.fixture(scope='module')
def vlm(tmp_path_factory):
    return tiny_smolvlm(tmp_path_factory.mktemp('smolvlm'))

def policy(vlm, seed, **kw):
    config = tiny_smolvla_config(vlm, **kw)
    torch.manual_seed(seed)
    return SmolVLAPolicy(config), make_smolvla_pre_post_processors(config, None)

def observation(B=2, seed=0):
    rng = np.random.default_rng(seed)
    img = lambda: rng.integers(0, 256, (B, 96, 96, 3), dtype=np.uint8)
    return VLAObservation(img(), img(), rng.normal(size=(B, 11)), ['lift the red cube', 'open the drawer'][:B])

def test_batch_has_the_seeds_keys_and_dtypes(vlm):
    p, procs = policy(vlm, 0)
    batch = SmolVLABackend([p], [procs], members=3)._batch(observation())
    assert {'observation.images.camera1', 'observation.state', 'observation.language.tokens',
            'observation.language.attention_mask'} <= set(batch)
    assert batch['observation.images.camera1'].dtype == torch.float32 and batch['observation.language.attention_mask'].dtype == torch.bool
    assert batch['observation.language.tokens'].shape[0] == 2

def test_noise_sample_members_disagree_identical_checkpoints_do_not(vlm):
    p, procs = policy(vlm, 0)
    backend = SmolVLABackend([p], [procs], members=3)
    assert isinstance(backend, VLAPolicy)
    chunks, emb = backend.member_chunks(observation(), torch.Generator().manual_seed(0))
    assert chunks.shape == (3, 2, 4, 7) and emb.shape[:2] == (3, 2) and np.isfinite(chunks).all()
    assert chunks.std(0).mean() > 1e-4   # K noise draws of one flow: the samples disperse
    seq, _ = backend.member_chunks(observation(), torch.Generator().manual_seed(0), batched=False)
    assert np.allclose(seq, chunks, atol=1e-4)   # one batched forward == K calls
    # K checkpoints share one noise draw: two copies of the same weights give zero spread, and member 0 is the
    # checkpoint alone
    p2, procs2 = policy(vlm, 0)
    g = lambda: torch.Generator().manual_seed(3)
    twins = SmolVLABackend([p, p2], [procs, procs2]).member_chunks(observation(), g())[0]
    assert np.abs(twins.std(0)).max() < 1e-6
    alone = SmolVLABackend([p], [procs], members=1).member_chunks(observation(), g())[0]
    assert np.allclose(twins[0], alone[0], atol=1e-5)
    p3, procs3 = policy(vlm, 1)   # different initialisation: real disagreement
    assert SmolVLABackend([p, p3], [procs, procs3]).member_chunks(observation(), g())[0].std(0).mean() > 1e-4

def test_action_adapter_pads_the_checkpoints_action(vlm):
    p, procs = policy(vlm, 0, action_dim=6)   # the seeds padded SmolVLA's 6-D action to the env's 7-D
    chunks, _ = SmolVLABackend([p], [procs], members=2).member_chunks(observation(), torch.Generator().manual_seed(0))
    assert chunks.shape == (2, 2, 4, 7) and np.all(chunks[..., 6] == 0) and np.abs(chunks[..., :6]).sum() > 0

@pytest.mark.parametrize('n_ckpt', [1, 2])
def test_save_load_round_trip_is_exact(vlm, tmp_path, n_ckpt):
    pairs = [policy(vlm, s) for s in range(n_ckpt)]
    backend = SmolVLABackend([p for p, _ in pairs], [q for _, q in pairs], members=3 if n_ckpt == 1 else None,
                             adapter=SmolVLAAdapter(cameras={'front': 'observation.images.camera1'}))
    for p, _ in pairs:   # move off the initialisation so a silent re-init would show
        for w in p.model.action_out_proj.parameters(): w.data += 0.05
    before = backend.member_chunks(observation(), torch.Generator().manual_seed(1))[0]
    backend.save(tmp_path/'ckpt')
    assert backend_of(tmp_path/'ckpt') == 'smolvla'
    again = load_backend(tmp_path/'ckpt')   # the registry reads the tag and loads with SmolVLA's loader
    assert isinstance(again, SmolVLABackend) and again.members == backend.members
    assert np.array_equal(again.member_chunks(observation(), torch.Generator().manual_seed(1))[0], before)

def test_predict_api_and_bad_input(vlm, tmp_path):
    p, procs = policy(vlm, 0)
    ens = VLAEnsemble(SmolVLABackend([p], [procs], members=3), batch_size=1)
    obs = observation(1)
    action, signals = ens.predict({'front': obs.front[0], 'wrist': obs.wrist[0]}, obs.state[0], 'lift the red cube')
    assert action.shape == (1, 7) and signals.shape == (1, 6) and np.isfinite(signals).all()
    with pytest.raises(ValueError, match='uint8'):
        ens.predict({'front': obs.front.astype(np.float32), 'wrist': obs.wrist}, obs.state, 'x')
    with pytest.raises(ValueError, match='non-empty'):
        ens.predict({'front': obs.front, 'wrist': obs.wrist}, obs.state, '  ')
    with pytest.raises(ValueError, match='state must have 11 values'):
        ens.predict({'front': obs.front, 'wrist': obs.wrist}, np.zeros((1, 9)), 'x')
    with pytest.raises(FileNotFoundError, match='no such folder'):
        SmolVLABackend.from_pretrained(tmp_path/'missing')
    with pytest.raises(FileNotFoundError, match='config.json missing'):
        SmolVLABackend.from_pretrained(tmp_path)
    with pytest.raises(ValueError, match='no image feature'):
        SmolVLABackend([p], [procs], adapter=SmolVLAAdapter(cameras={'wrist': 'observation.images.camera2'}))
    with pytest.raises(ValueError, match='unknown env camera'):
        SmolVLAAdapter(cameras={'left': 'observation.images.camera1'})

def test_released_architecture_is_written_and_read_back(tmp_path):
    "SmolVLM2-500M's architecture (for timing the released size) round-trips through transformers' own loaders."
    from transformers import AutoConfig, AutoProcessor
    from salus.vla.smolvla import SMOLVLM2_500M, write_smolvlm
    path = write_smolvlm(tmp_path/'vlm', **SMOLVLM2_500M, corpus=['lift the red cube'])
    config, processor = AutoConfig.from_pretrained(path), AutoProcessor.from_pretrained(path)
    assert (config.text_config.hidden_size, config.text_config.num_hidden_layers, config.text_config.vocab_size) == (960, 32, 49280)
    assert (config.vision_config.hidden_size, config.vision_config.image_size, config.scale_factor) == (768, 512, 4)
    v = config.vision_config  # image tokens per image = patches after the pixel shuffle
    assert processor.image_seq_len == (v.image_size // v.patch_size // config.scale_factor) ** 2 == 64
    assert processor.tokenizer.convert_tokens_to_ids('<image>') == config.image_token_id

def test_loading_refuses_processor_steps_that_are_not_smolvlas(vlm, tmp_path):
    "A checkpoint's processor JSON names what lerobot imports and calls: anything but SmolVLA's own steps is refused before."
    import json
    from salus.vla.smolvla import UntrustedCheckpointError
    p, procs = policy(vlm, 0)
    SmolVLABackend([p], [procs], members=2).save(tmp_path/'ckpt')
    marker = tmp_path/'pwned'
    popen = {'class': 'subprocess.Popen', 'config': {'args': ['touch', str(marker)]}}   # would run `touch` when instantiated
    for name, index, entry, replaces, refused in [
            ('policy_preprocessor.json', 1, popen, False, "'subprocess.Popen'"),                          # an extra step
            ('policy_preprocessor.json', 0, {'registry_name': 'rename_observations_processor', **popen}, True, "'subprocess.Popen'"),
            ('policy_postprocessor.json', 2, {'registry_name': 'action_tokenizer_processor'}, False, "'action_tokenizer_processor'")]:
        f = tmp_path/'ckpt'/name
        good = f.read_text()
        d = json.loads(good)
        d['steps'][index:index + replaces] = [entry]
        f.write_text(json.dumps(d))
        with pytest.raises(UntrustedCheckpointError, match=rf"{name}: step {index} names {re.escape(refused)}, not one of SmolVLA's processor steps .* load only trusted checkpoints"):
            SmolVLABackend.load(tmp_path/'ckpt')
        f.write_text(good)
    assert not marker.exists()
    (tmp_path/'ckpt'/'policy_preprocessor.json').write_text('{"steps": "rename"}')
    with pytest.raises(UntrustedCheckpointError, match=r'policy_preprocessor.json: not a processor pipeline \(a "steps" list of objects\)'):
        SmolVLABackend.load(tmp_path/'ckpt')

def test_a_smolvla_checkpoint_is_collected_like_an_embedded_one(vlm, tmp_path):
    "`collect_rollouts` loads any registered backend and sizes the store from it: K members, its chunk, K x its VLM width."
    from salus.collect import RolloutConfig, collect_rollouts, episode_specs
    p, procs = policy(vlm, 0)
    backend = SmolVLABackend([p], [procs], members=2)
    backend.save(tmp_path/'ckpt')
    envs = dict(image_size=32, control_hz=10, collision_force=60.0, seen_tasks=['lift_red'], unseen_tasks=[])
    cfg = RolloutConfig(str(tmp_path/'ckpt'), envs, ('epistemic', 'chunk_disagreement', 'sample_dispersion'), samples=2)
    store = collect_rollouts(tmp_path/'rollouts.zarr', episode_specs(['lift_red'], [], {'nominal': {}}, 1, seed=0), cfg,
                             backend='serial', progress=False)
    assert len(store) == 1 and store.attrs['members'] == 2
    assert store.data('chunks').shape == (store.n_steps, 2, backend.chunk_size, 7)
    assert store.data('embedding').shape == (store.n_steps, 2 * backend.embedding_dim)
    sig = store.data('signals')
    assert np.isfinite(sig).all() and sig[:, 0].max() > 0   # the two noise-sample members disagree

def test_bootstrap_members_are_models_of_their_own_and_the_folder_moves(demos, tmp_path):
    "lerobot's training loop on the exported demonstrations, K models on bootstrap resamples; the saved folder loads after a move."
    import shutil
    from salus.rollout import evaluate_policy
    from salus.vla.training_smolvla import finetune_smolvla
    store, envs = demos
    backend, losses = finetune_smolvla(store, tmp_path/'policy', members=2, ensemble='bootstrap', steps=3, batch_size=8, image_size=32)
    assert len(backend.policies) == 2 and [sorted(h['step'] for h in losses if h['member'] == k) for k in (0, 1)] == [[0, 1, 2]] * 2
    (tmp_path/'elsewhere').mkdir()
    moved = shutil.move(tmp_path/'policy', tmp_path/'elsewhere'/'policy')   # no path inside points back at where it was trained
    again = load_backend(moved)
    chunks = lambda b: b.member_chunks(observation(1), torch.Generator().manual_seed(0))[0]
    assert np.array_equal(chunks(again), chunks(backend))
    assert chunks(again).std(0).mean() > 1e-4   # two models: they disagree (one noise draw for both)
    assert again.embed(observation(1)).shape == (1, 2 * again.embedding_dim)   # the members' embeddings side by side, as collected
    assert evaluate_policy(again, ['lift_red'], envs, episodes=1, progress=False)[0]['steps'] > 0
    with pytest.raises(FileExistsError, match='not empty'): finetune_smolvla(store, moved, steps=1)
    from salus.vla.base import checkpoint_identity
    twice = backend.save(tmp_path/'twice', vlm=Path(moved)/'vlm')
    assert checkpoint_identity(twice) == checkpoint_identity(moved)   # no path of the machine or the run in its files

def test_fine_tuning_starts_from_a_checkpoint(demos, tmp_path):
    "A SmolVLA folder as the starting point (as `policy.checkpoint`): its weights, trained further on the demonstrations."
    from salus.vla.training_smolvla import finetune_smolvla
    store, _ = demos
    start, _ = finetune_smolvla(store, tmp_path/'start', members=2, steps=2, batch_size=8, image_size=32)
    tuned, losses = finetune_smolvla(store, tmp_path/'tuned', checkpoint=tmp_path/'start', members=2, steps=2, batch_size=8, lr=1e-2)
    assert len(losses) == 2
    get = lambda b: {k: v.clone() for k, v in b.policies[0].model.action_out_proj.state_dict().items()}
    a, b = get(start), get(tuned)
    assert a.keys() == b.keys() and any(not torch.equal(a[k], b[k]) for k in a)   # it trained
    assert start.policies[0].model.state_dict().keys() == tuned.policies[0].model.state_dict().keys()   # the same architecture
    from salus.vla import EmbeddedVLA, EmbeddedVLAConfig
    EmbeddedVLA(EmbeddedVLAConfig(image_size=32, channels=8, keypoints=4, hidden=16, flow_steps=2), members=2).save(tmp_path/'embedded')
    with pytest.raises(ValueError, match="embedded: a 'embedded' checkpoint, not a SmolVLA one"):
        finetune_smolvla(store, tmp_path/'x', checkpoint=tmp_path/'embedded')
    assert not (tmp_path/'x').exists()   # refused before anything is written
