"The VLA ensemble: one batched forward, real disagreement, exact save/load, the seed's predict API, clear errors."
import warnings

import numpy as np
import pytest
import torch

from salus.vla import (VLA_BACKENDS, EmbeddedVLA, EmbeddedVLAConfig, Normalizer, VLAEnsemble, VLAObservation, VLAPolicy,
                       backend_of, ensemble_step, executed_action, load_backend)

CFG = EmbeddedVLAConfig(image_size=32, channels=16, keypoints=8, hidden=64, flow_steps=4)

def observation(B=2, seed=0):
    rng = np.random.default_rng(seed)
    img = lambda: rng.integers(0, 256, (B, 96, 96, 3), dtype=np.uint8)
    return VLAObservation(img(), img(), rng.normal(size=(B, 11)), ['lift the red cube', 'open the drawer'][:B])

def test_members_disagree_and_identical_members_do_not():
    vla = EmbeddedVLA(CFG, members=3, seed=0)
    chunks, emb = vla.member_chunks(observation(), torch.Generator().manual_seed(1))
    assert chunks.shape == (3, 2, 4, 7) and emb.shape == (3, 2, 64)
    assert chunks.std(0).mean() > 1e-3
    vla.params = {k: v[:1].expand_as(v).clone() for k, v in vla.params.items()}   # three copies of member 0
    same, _ = vla.member_chunks(observation(), torch.Generator().manual_seed(1))
    assert np.abs(same.std(0)).max() < 1e-6

def test_batched_forward_equals_sequential():
    vla = EmbeddedVLA(CFG, members=4, seed=2)
    b, _ = vla.member_chunks(observation(), torch.Generator().manual_seed(0))
    s, _ = vla.member_chunks(observation(), torch.Generator().manual_seed(0), batched=False)
    assert np.allclose(b, s, atol=1e-5)

def test_samples_disperse_and_protocol():
    vla = EmbeddedVLA(CFG, members=2)
    samples = vla.sample(observation(), 5, torch.Generator().manual_seed(0))
    assert samples.shape == (5, 2, 4, 7) and samples.std(0).mean() > 1e-4
    assert isinstance(vla, VLAPolicy)
    assert vla.act(observation()).shape == (2, 4, 7) and vla.embed(observation()).shape == (2, 2 * 64)

def test_save_load_round_trip_is_exact(tmp_path):
    vla = EmbeddedVLA(CFG, members=3, seed=5)
    vla.params = {k: v + 0.01 * torch.randn_like(v) for k, v in vla.params.items()}
    vla.save(tmp_path/'ckpt')
    back = EmbeddedVLA.load(tmp_path/'ckpt')
    a, _ = vla.member_chunks(observation(), torch.Generator().manual_seed(3))
    b, _ = back.member_chunks(observation(), torch.Generator().manual_seed(3))
    assert np.array_equal(a, b) and back.config == vla.config and back.normalizer == vla.normalizer

def test_the_registry_loads_by_tag_and_names_what_it_cannot_load(tmp_path):
    vla = EmbeddedVLA(CFG, members=2, seed=1)
    ckpt = vla.save(tmp_path/'ckpt')
    back = load_backend(ckpt)
    assert type(back) is EmbeddedVLA and set(VLA_BACKENDS) >= {'embedded', 'smolvla'}
    assert np.array_equal(back.member_chunks(observation(), torch.Generator().manual_seed(0))[0],
                          vla.member_chunks(observation(), torch.Generator().manual_seed(0))[0])
    with pytest.raises(FileNotFoundError, match=r'missing: no VLA checkpoint folder there'):
        load_backend(tmp_path/'missing')
    (tmp_path/'empty').mkdir()
    with pytest.raises(ValueError, match=r"empty: not a VLA checkpoint SALUS can load \(no 'backend' tag in any of"): backend_of(tmp_path/'empty')
    (ckpt/'config.json').write_text('{"backend": "octo"}')
    with pytest.raises(ValueError, match=r"backend 'octo' is not registered \(registered: \["): load_backend(ckpt)
    (ckpt/'config.json').write_text('{"backend": ["embedded"]}')
    with pytest.raises(ValueError, match=r"config.json: the 'backend' tag must be a name, got \['embedded'\]"): load_backend(ckpt)
    (ckpt/'config.json').write_text('{"backend": ')
    with pytest.raises(ValueError, match=r'config.json: not a readable checkpoint description'): load_backend(ckpt)

def test_one_ensemble_step_is_what_every_caller_executes():
    vla = EmbeddedVLA(CFG, members=3, seed=4)
    step = ensemble_step(vla, observation(), torch.Generator().manual_seed(2), samples=4)
    g = torch.Generator().manual_seed(2)   # the same draws in the same order, by hand
    chunks, emb = vla.member_chunks(observation(), g)
    samples = vla.member_chunks(observation(), g, samples=4)[0][:, 0]
    assert np.array_equal(step.chunks, chunks) and np.array_equal(step.embedding, emb)
    assert np.array_equal(step.samples, samples)
    expected = np.clip(np.median(chunks[:, :, 0], 0), -1, 1).astype(np.float32)
    assert np.array_equal(step.action, expected) and step.action.dtype == np.float32
    assert np.array_equal(executed_action(chunks), expected) and step.joint_embedding.shape == (2, 3 * 64)
    assert ensemble_step(vla, observation()).samples is None
    for bad in (1, -1, 2.5, True):
        with pytest.raises(ValueError, match='samples must be 0 \\(none\\) or an integer ≥ 2'): ensemble_step(vla, observation(), samples=bad)

def test_predict_keeps_the_seed_contract():
    ens = VLAEnsemble(EmbeddedVLA(CFG, members=3), batch_size=1)
    obs = observation(1)
    action, signals = ens.predict({'front': obs.front[0], 'wrist': obs.wrist[0]}, obs.state[0], 'lift the red cube')
    assert action.shape == (1, 7) and signals.shape == (1, 6) and np.isfinite(signals).all()
    assert ens.last_chunks.shape == (3, 1, 4, 7) and ens.signal_names[0] == 'epistemic'
    assert np.all(np.abs(action) <= 1)

def test_bad_input_is_refused(tmp_path):
    vla = EmbeddedVLA(CFG, members=2)
    obs = observation(1)
    with pytest.raises(ValueError, match='front image must be uint8'): VLAObservation(obs.front.astype(float), obs.wrist, obs.state, 'x')
    with pytest.raises(ValueError, match=r'wrist image must be \(B,H,W,3\)'): VLAObservation(obs.front, obs.wrist[..., :2], obs.state, 'x')
    with pytest.raises(ValueError, match='state must have 11 values'): vla.act(VLAObservation(obs.front, obs.wrist, np.zeros((1, 7)), 'x'))
    with pytest.raises(ValueError, match='non-empty string'): VLAObservation(obs.front, obs.wrist, obs.state, '')
    with pytest.raises(ValueError, match='non-finite'): VLAObservation(obs.front, obs.wrist, np.full((1, 11), np.nan), 'x')
    with pytest.raises(FileNotFoundError, match='not an embedded VLA checkpoint'): EmbeddedVLA.load(tmp_path/'missing')
    with pytest.raises(ValueError, match='positive integer'): EmbeddedVLAConfig(chunk_size=0)
    with pytest.raises(ValueError, match="dict with 'front' and 'wrist'"): VLAEnsemble(vla).predict(obs.front, obs.state, 'x')
    with pytest.raises(ValueError, match='streams signals for 1'): VLAEnsemble(vla).predict({'front': obs.front.repeat(2, 0), 'wrist': obs.wrist.repeat(2, 0)}, obs.state.repeat(2, 0), 'x')

def test_training_on_real_demos_lowers_the_loss_and_bootstraps_differ(tmp_path):
    from salus.params import DemosParams, EnvsParams
    from salus.demos import record_demonstrations
    from salus.data import EpisodeStore
    from salus.vla import demo_tensors, train_ensemble
    envs = EnvsParams(image_size=32, control_hz=10, collision_force=60, seen_tasks=['lift_red', 'push_blue_to_marker'], unseen_tasks=[])
    record_demonstrations(tmp_path/'demos.zarr', envs, DemosParams(episodes_per_task=3, action_noise=0.05, grasp_noise=0.003), seed=1, progress=False)
    data = demo_tensors(EpisodeStore.open(tmp_path/'demos.zarr'), CFG, progress=False)
    assert data.chunks.shape[1:] == (CFG.chunk_size, 7) and len(data.front) == len(data.state) == len(data.text)
    vla = EmbeddedVLA(CFG, members=2)
    history = train_ensemble(vla, data, epochs=12, batch_size=16, lr=3e-3, seed=0, progress=False)
    loss = lambda k, epochs: np.mean([h['loss'] for h in history if h['member'] == k and h['epoch'] in epochs])
    first = [loss(k, [0]) for k in range(2)]
    assert all(loss(k, [9, 10, 11]) < 0.93 * first[k] for k in range(2))   # every member learns (seeded: ~0.8-0.87 here)
    assert first[0] != first[1]                                # on different bootstrap resamples
    assert np.allclose(vla.normalizer.action_mean, data.chunks.reshape(-1, 7).mean(0), atol=1e-5)

def test_batch_size_must_be_a_positive_integer():
    vla = EmbeddedVLA(CFG, members=2)
    for b in (0, -2, 1.5):
        with pytest.raises(ValueError, match=rf'VLAEnsemble: batch_size must be an integer ≥ 1 \(environments stepped together\), got {b!r}'):
            VLAEnsemble(vla, batch_size=b)

def test_out_of_range_state_is_refused_not_streamed_as_inf():
    obs = observation(1)
    ens = VLAEnsemble(EmbeddedVLA(CFG, members=3), batch_size=1)
    state = obs.state.copy()
    state[0, 2] = 1e30                                     # finite, but the chunks' variance overflows float32
    with warnings.catch_warnings():
        warnings.simplefilter('error')                     # an error, not an overflow warning and inf signals
        with pytest.raises(ValueError, match=r"signals are non-finite at env 0 \(.*'action_variance'.*\): inputs out of range"):
            ens.predict({'front': obs.front, 'wrist': obs.wrist}, state, 'lift the red cube')
        with pytest.raises(ValueError, match=r'state has non-finite values \(NaN, inf or beyond float32\) at env 0, index 2'):
            VLAObservation(obs.front, obs.wrist, state.astype(np.float64) * 1e10, 'x')   # 1e40: beyond float32
    tight = Normalizer([0.] * 11, [1e-3] * 11, [0.] * 7, [1.] * 7)   # a near-constant training state: tiny stds
    state[0, 2] = 1e36
    with pytest.raises(ValueError, match=r'state is out of range: normalised by the training statistics it is non-finite at env 0, index 2 \(1e\+36\)'):
        EmbeddedVLA(CFG, members=2, normalizer=tight).member_chunks(VLAObservation(obs.front, obs.wrist, state, 'x'))
    broken = EmbeddedVLA(CFG, members=2)
    with torch.no_grad(): broken.params['head.4.bias'][1, 0] = float('nan')   # one non-finite weight in member 1
    with pytest.raises(ValueError, match=r'action chunks or embeddings are non-finite at env 0: .* or non-finite weights'): broken.act(obs)

def test_training_stops_on_non_finite_demonstrations_or_loss(tmp_path):
    from dataclasses import replace
    from salus.params import DemosParams, EnvsParams
    from salus.demos import record_demonstrations
    from salus.data import EpisodeStore
    from salus.vla import demo_tensors, train_ensemble
    envs = EnvsParams(image_size=32, control_hz=10, collision_force=60, seen_tasks=['lift_red'], unseen_tasks=[])
    record_demonstrations(tmp_path/'demos.zarr', envs, DemosParams(episodes_per_task=2, action_noise=0.05, grasp_noise=0.003), seed=1, progress=False)
    data = demo_tensors(EpisodeStore.open(tmp_path/'demos.zarr'), CFG, progress=False)
    bad = replace(data, chunks=data.chunks.copy())
    bad.chunks[7, 0, 2] = np.nan                           # one NaN in one demonstrated action
    vla = EmbeddedVLA(CFG, members=2)
    with pytest.raises(ValueError, match=r'demonstrations: chunks has a non-finite value \(nan\) at step 7 \(episode 0\)'):
        train_ensemble(vla, bad, epochs=2, batch_size=16, progress=False)
    with pytest.raises(FloatingPointError, match=r'non-finite training loss at epoch \d+, batch \d+ \(member [01], (flow|goal) loss: (nan|inf)\): check the inputs'):
        train_ensemble(vla, data, epochs=3, batch_size=16, lr=1e10, progress=False)   # diverges
