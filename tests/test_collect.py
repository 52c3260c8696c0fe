"Rollout collection: the same episodes on every backend, crash-safe resume after SIGKILL, clear errors."
import os, signal, subprocess, sys, textwrap, time

import numpy as np
import pytest

from salus.collect import RolloutConfig, collect_rollouts, episode_specs
from salus.data import EpisodeStore, StoreError
from salus.signals import SIGNALS, FeatureNovelty
from salus.vla import EmbeddedVLA, EmbeddedVLAConfig

ENVS = dict(image_size=32, control_hz=10, collision_force=60.0, seen_tasks=['lift_red'], unseen_tasks=['open_drawer'])

@pytest.fixture(scope='module')
def setup(tmp_path_factory):
    "A small, randomly initialised (untrained: real, just fast to fail) ensemble and a novelty reference."
    tmp = tmp_path_factory.mktemp('collect')
    EmbeddedVLA(EmbeddedVLAConfig(image_size=32, channels=8, keypoints=4, hidden=16, flow_steps=2), members=2, seed=3).save(tmp/'policy')
    FeatureNovelty(np.random.default_rng(0).normal(size=(64, 32)), k=3).save(tmp/'novelty')
    cfg = RolloutConfig(str(tmp/'policy'), ENVS, tuple(SIGNALS), samples=3, novelty_path=str(tmp/'novelty'))
    specs = episode_specs(['lift_red'], ['open_drawer'], {'nominal': {}, 'shifted': {'pose': 0.03, 'distractors': 1}}, 2, seed=7)
    serial = collect_rollouts(tmp/'serial.zarr', specs, cfg, backend='serial', progress=False)
    return tmp, cfg, specs, serial

def same_store(a:EpisodeStore, b:EpisodeStore):
    assert len(a) == len(b) and np.array_equal(a.episode_ends, b.episode_ends)
    for key in a.schema.data: assert np.array_equal(a.data(key), b.data(key)), key
    for key, v in a.meta().items(): assert list(v) == list(b.meta()[key]), key

def test_store_contents(setup):
    _, cfg, specs, store = setup
    meta = store.meta()
    assert len(store) == len(specs) == 8 and list(meta['index']) == list(range(8))
    assert set(meta['split']) == {'seen', 'unseen'} and set(meta['shift_name']) == {'nominal', 'shifted'}
    assert store.attrs['signal_names'] == list(SIGNALS)
    sig = store.data('signals')
    assert sig.shape == (store.n_steps, len(SIGNALS)) and np.isfinite(sig).all()
    assert store.data('chunks').shape[1:] == (2, 4, 7)
    for o, f, s in zip(meta['outcome'], meta['failure_type'], meta['failure_step']):
        assert (o == 'success') == (f == '') == (s == -1)
    assert all(meta['steps'] == np.diff(np.r_[0, store.episode_ends]))   # one stored step per control step

@pytest.mark.parametrize('backend', ['local', 'ray'])
def test_backends_give_the_same_episodes(setup, tmp_path, backend):
    if backend == 'ray': pytest.importorskip('ray')
    _, cfg, specs, serial = setup
    same_store(serial, collect_rollouts(tmp_path/'s.zarr', specs, cfg, backend=backend, workers=2, progress=False))

def test_sigkill_then_resume_gives_the_uninterrupted_store(setup, tmp_path):
    tmp, cfg, specs, serial = setup
    path = tmp_path/'killed.zarr'
    script = textwrap.dedent(f"""
        from salus.collect import RolloutConfig, collect_rollouts, episode_specs
        cfg = RolloutConfig(**{cfg.__dict__!r})
        specs = episode_specs(['lift_red'], ['open_drawer'], {{'nominal': {{}}, 'shifted': {{'pose': 0.03, 'distractors': 1}}}}, 2, seed=7)
        collect_rollouts({str(path)!r}, specs, cfg, backend='serial', progress=False)
    """)
    proc = subprocess.Popen([sys.executable, '-c', script], env={**os.environ, 'MUJOCO_GL': 'egl'})
    rng = np.random.default_rng()
    target = int(rng.integers(1, len(specs) - 2))
    deadline = time.time() + 300
    while time.time() < deadline:
        try:
            if len(EpisodeStore.open(path)) >= target: break
        except StoreError: pass
        time.sleep(0.05)
    time.sleep(float(rng.uniform(0, 0.5)))   # a random point inside the next episode
    proc.send_signal(signal.SIGKILL); proc.wait()
    killed = EpisodeStore.open(path)   # validates
    n = len(killed)
    assert target <= n < len(specs), "the collector finished before it could be killed"
    for key in killed.schema.data: assert np.array_equal(killed.data(key), serial.data(key)[:killed.n_steps]), key
    resumed = collect_rollouts(path, specs, cfg, backend='serial', progress=False)
    same_store(serial, resumed)

def test_bad_input(setup, tmp_path):
    tmp, cfg, specs, serial = setup
    with pytest.raises(ValueError, match='not the first'):   # a store from other seeds is refused, not extended
        collect_rollouts(tmp/'serial.zarr', episode_specs(['lift_red'], ['open_drawer'], {'nominal': {}, 'shifted': {}}, 3, seed=8),
                         cfg, 'serial', progress=False)
    with pytest.raises(ValueError, match='unknown backend'):
        collect_rollouts(tmp_path/'x.zarr', specs, cfg, backend='mpi', progress=False)
    with pytest.raises(FileNotFoundError, match='no policy checkpoint'):
        collect_rollouts(tmp_path/'y.zarr', specs, RolloutConfig(str(tmp_path/'nothing'), ENVS, ('epistemic',)), 'serial', progress=False)
    (tmp_path/'octo').mkdir()
    (tmp_path/'octo'/'config.json').write_text('{"backend": "octo"}')   # a backend nobody registered: said, not a KeyError
    with pytest.raises(ValueError, match="backend 'octo' is not registered"):
        collect_rollouts(tmp_path/'s.zarr', specs, RolloutConfig(str(tmp_path/'octo'), ENVS, ('epistemic',)), 'serial', progress=False)
    assert not (tmp_path/'s.zarr').exists()   # refused before anything is written
    six = EmbeddedVLA(EmbeddedVLAConfig(image_size=32, channels=8, keypoints=4, hidden=16, flow_steps=2, action_dim=6), members=2)
    six.save(tmp_path/'six')
    with pytest.raises(ValueError, match="the policy's actions are 6-D, the task suite's 7-D"):
        collect_rollouts(tmp_path/'s.zarr', specs, RolloutConfig(str(tmp_path/'six'), ENVS, ('epistemic',)), 'serial', progress=False)
    assert not (tmp_path/'s.zarr').exists()
    bad_state = EmbeddedVLA(EmbeddedVLAConfig(image_size=32, channels=8, keypoints=4, hidden=16, flow_steps=2, state_dim=9), members=2)
    bad_state.save(tmp_path/'nine')
    with pytest.raises(ValueError, match="nine: the policy cannot act in the task suite: state must have 9 values, got 11"):
        collect_rollouts(tmp_path/'s.zarr', specs, RolloutConfig(str(tmp_path/'nine'), ENVS, ('epistemic',)), 'serial', progress=False)
    assert not (tmp_path/'s.zarr').exists()
    with pytest.raises(ValueError, match='needs samples'):
        collect_rollouts(tmp_path/'z.zarr', specs[:1], RolloutConfig(cfg.policy_path, ENVS, ('sample_dispersion',), samples=0), 'serial', progress=False)

def test_workers_exit_when_the_collector_is_killed(tmp_path):
    "After a SIGKILL of the main process (e.g. the OOM killer), its spawned workers do not stay alive holding memory."
    (tmp_path/'slow_work.py').write_text("import os, time\ndef work(spec, cfg):\n    print(os.getpid(), file=open(cfg, 'a'), flush=True)\n    time.sleep(60)\n")
    pids = tmp_path/'pids.txt'
    script = f"from salus.collect import run_specs\nimport slow_work\nlist(run_specs(range(4), {str(pids)!r}, 'local', 2, fn=slow_work.work))"
    env = {**os.environ, 'PYTHONPATH': f"{tmp_path}{os.pathsep}{os.environ.get('PYTHONPATH', '')}"}
    main = subprocess.Popen([sys.executable, '-c', script], env=env)
    deadline = time.time() + 120
    while time.time() < deadline and (not pids.exists() or len(pids.read_text().split()) < 2): time.sleep(0.1)
    workers = [int(p) for p in pids.read_text().split()]
    assert len(workers) == 2
    main.send_signal(signal.SIGKILL); main.wait()
    def alive(pid):
        try: os.kill(pid, 0)
        except ProcessLookupError: return False
        return not open(f'/proc/{pid}/stat').read().split(') ')[1].startswith('Z')   # a zombie has exited
    deadline = time.time() + 10
    while time.time() < deadline and any(map(alive, workers)): time.sleep(0.1)
    assert not any(map(alive, workers)), "workers outlived the killed collector"

def test_a_store_of_another_collection_is_restarted_only_when_asked(setup, tmp_path):
    tmp, cfg, specs, serial = setup
    import shutil
    path = shutil.copytree(serial.path, tmp_path/'other.zarr')
    other = episode_specs(['lift_red'], ['open_drawer'], {'nominal': {}}, 1, seed=99)
    with pytest.raises(ValueError, match='more than the 2 asked for; delete it'): collect_rollouts(path, other, cfg, backend='serial', progress=False)
    assert len(EpisodeStore.open(path)) == len(serial)                   # refused: untouched
    fresh = collect_rollouts(path, other, cfg, backend='serial', progress=False, on_mismatch='restart')
    assert len(fresh) == len(other) and fresh.meta()['seed'].tolist() == [s.seed for s in other]

def test_collect_and_replicate_collections_share_one_plan():
    "Collection 0 is seeded by the root seed, replicate k by derive_seed(seed, 'collection', k); same tasks, shifts and count."
    from salus.base import derive_seed
    from salus.collect import collection_plan, rollout_config
    from salus.params import load_params
    from conftest import REPO
    params = load_params(REPO/'params.yaml', profile='smoke')
    c, e = params.collect, params.envs
    specs0, attrs0 = collection_plan(params, 0)
    specs2, attrs2 = collection_plan(params, 2)
    assert specs0 == episode_specs(e.seen_tasks, e.unseen_tasks, c.shifts, c.episodes_per_task, seed=params.seed)
    assert specs2 == episode_specs(e.seen_tasks, e.unseen_tasks, c.shifts, c.episodes_per_task,
                                   seed=derive_seed(params.seed, 'collection', 2))
    assert [s.seed for s in specs0] != [s.seed for s in specs2] and [s.task for s in specs0] == [s.task for s in specs2]
    assert 'collection' not in attrs0 and attrs2['collection'] == 2 and attrs0['collect'] == attrs2['collect'] == c.values()
    cfg = rollout_config(params, novelty_path='novelty')
    assert cfg.signals == tuple(params.signals.active) and cfg.samples == params.signals.samples and cfg.novelty_path == 'novelty'
    for bad in (-1, 1.5, True):
        with pytest.raises(ValueError, match='collection must be an integer ≥ 0'): collection_plan(params, bad)
    assert collection_plan(params, np.int64(2)) == (specs2, attrs2)
