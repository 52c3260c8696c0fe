"The episode store keeps its invariants: append-only, crash-safe, validated on open; demos recording resumes exactly."
import numpy as np
import pytest
import zarr

from salus.core import DemosParams, EnvsParams
from salus.data import EpisodeStore, StoreError, StoreSchema, record_demonstrations

SCHEMA = StoreSchema(data={'state': ((3,), 'float32'), 'image': ((4, 4, 3), 'uint8')}, meta={'task': 'str', 'seed': 'int64'})

def episode(T, fill=0.0):
    return {'state': np.full((T, 3), fill, 'float32'), 'image': np.zeros((T, 4, 4, 3), 'uint8')}

@pytest.fixture
def store(tmp_path):
    s = EpisodeStore.create(tmp_path/'s.zarr', SCHEMA, attrs={'kind': 'test'})
    for i, T in enumerate([3, 5, 2]): s.append_episode(episode(T, i), {'task': f't{i}', 'seed': i})
    return s

def test_round_trip(store):
    s = EpisodeStore.open(store.path)
    assert (len(s), s.n_steps, s.episode_ends.tolist()) == (3, 10, [3, 8, 10])
    assert s.episode(1)['state'].tolist() == [[1, 1, 1]] * 5
    assert list(s.meta()['task']) == ['t0', 't1', 't2'] and s.meta()['seed'].dtype == np.int64
    assert s.attrs['kind'] == 'test' and s.data('state').shape == (10, 3)
    assert [len(e['state']) for e in s] == [3, 5, 2]

def test_writer_refuses_bad_episodes(store):
    w = EpisodeStore.open(store.path, mode='a')
    bad = episode(2); bad['state'][1, 2] = np.inf
    with pytest.raises(StoreError, match=r'data/state: non-finite value at \[1, 2\]'): w.append_episode(bad, {'task': 'x', 'seed': 0})
    with pytest.raises(StoreError, match='meta keys'): w.append_episode(episode(2), {'task': 'x'})
    with pytest.raises(StoreError, match='share one length'): w.append_episode({'state': np.zeros((2, 3)), 'image': np.zeros((3, 4, 4, 3))}, {'task': 'x', 'seed': 0})
    with pytest.raises(StoreError, match='step shape'): w.append_episode({'state': np.zeros((2, 2)), 'image': np.zeros((2, 4, 4, 3))}, {'task': 'x', 'seed': 0})
    assert EpisodeStore.open(store.path).n_steps == 10          # nothing of the refused episodes is stored
    with pytest.raises(StoreError, match='read-only'): EpisodeStore.open(store.path).append_episode(episode(1), {'task': 'x', 'seed': 0})
    with pytest.raises(StoreError, match='already exists'): EpisodeStore.create(store.path, SCHEMA)

def test_crash_mid_append_is_invisible_and_cut_on_resume(store):
    g = zarr.open_group(store.path, mode='r+')
    g['data/state'].append(np.ones((4, 3), 'float32'))   # a crash after data, before meta and episode_ends
    g['meta/task'].append(np.array(['half'], dtype=object))
    r = EpisodeStore.open(store.path)
    assert (len(r), r.n_steps, list(r.meta()['task'])) == (3, 10, ['t0', 't1', 't2'])
    w = EpisodeStore.open(store.path, mode='a')
    assert w.group['data/state'].shape[0] == 10 and w.group['meta/task'].shape[0] == 3
    w.append_episode(episode(2, 7), {'task': 't3', 'seed': 3})
    assert EpisodeStore.open(store.path).episode(3)['state'].tolist() == [[7, 7, 7]] * 2

@pytest.mark.parametrize('damage,message', [
    (lambda g: g['data/image'].resize((9, 4, 4, 3)), 'data/image has 9 rows, episode_ends says 10 (truncated data)'),
    (lambda g: g.attrs.__delitem__('schema_version'), 'schema_version is None'),
    (lambda g: g.attrs.__delitem__('schema'), "attribute 'schema' is missing"),
    (lambda g: zarr.open_group(g.store, mode='r+').__delitem__('meta/seed'), 'array meta/seed is missing'),
    (lambda g: g['meta/episode_ends'].__setitem__(1, 2), 'strictly increasing'),
    (lambda g: g['meta/task'].resize((2,)), 'meta/task has 2 rows for 3 episodes'),
])
def test_damaged_store_is_refused_with_the_reason(store, damage, message):
    damage(zarr.open_group(store.path, mode='r+'))
    with pytest.raises(StoreError, match=message.replace('(', r'\(').replace(')', r'\)')): EpisodeStore.open(store.path)

def test_open_errors(tmp_path, store):
    with pytest.raises(StoreError, match='no episode store here'): EpisodeStore.open(tmp_path/'missing.zarr')
    with pytest.raises(ValueError, match="mode must be 'r' or 'a'"): EpisodeStore.open(store.path, mode='w')
    with pytest.raises(StoreError, match='other'): EpisodeStore.open_or_create(store.path, SCHEMA, attrs={'kind': 'other'})
    with pytest.raises(IndexError, match='episode 3 out of range'): store.episode(3)

def test_demos_resume_equals_one_uninterrupted_run(tmp_path):
    envs = EnvsParams(image_size=16, control_hz=10, collision_force=60, seen_tasks=['lift_red', 'push_blue_to_marker'], unseen_tasks=[])
    one = DemosParams(episodes_per_task=1, action_noise=0.05, grasp_noise=0.003)
    two = one.model_copy(update={'episodes_per_task': 2})
    record_demonstrations(tmp_path/'resumed.zarr', envs, one, seed=3, progress=False)   # "killed" after one per task
    with pytest.raises(StoreError, match=r"other \['demos'\]"): record_demonstrations(tmp_path/'resumed.zarr', envs, two, seed=3, progress=False)
    zarr.open_group(str(tmp_path/'resumed.zarr'), mode='r+').attrs['demos'] = two.values()  # same run, larger budget
    record_demonstrations(tmp_path/'resumed.zarr', envs, two, seed=3, progress=False)
    record_demonstrations(tmp_path/'straight.zarr', envs, two, seed=3, progress=False)
    a, b = EpisodeStore.open(tmp_path/'resumed.zarr'), EpisodeStore.open(tmp_path/'straight.zarr')
    assert len(a) == len(b) == 4
    ma, mb = a.meta(), b.meta()
    order = sorted(range(4), key=lambda i: (ma['task'][i], ma['attempt'][i]))
    assert [(ma['task'][i], ma['seed'][i]) for i in order] == list(zip(mb['task'], mb['seed']))
    for i, j in zip(order, range(4)):
        ea, eb = a.episode(i), b.episode(j)
        assert all(np.array_equal(ea[k], eb[k]) for k in ea)
    assert set(ma['split']) == {'seen'} and set(ma['outcome']) == {'success'}

def test_failure_labels_follow_the_definition():
    from salus.data import FAILURE_TYPES, failure_labels, horizon_steps
    rng = np.random.default_rng(0)
    lengths = rng.integers(1, 30, 40)
    ends = np.cumsum(lengths)
    kinds = [rng.choice(['', *FAILURE_TYPES]) for _ in lengths]
    tf = np.array([L if k else -1 for L, k in zip(lengths, kinds)])   # failures become a fact after the last action
    horizons = horizon_steps([0.2, 0.5, 1.0, 2.0], 10)
    y = failure_labels(ends, kinds, tf, horizons)
    assert y.shape == (ends[-1], 4, 4) and y.dtype == np.uint8
    start = 0
    for L, k, f in zip(lengths, kinds, tf):                           # brute force, step by step
        for t in range(L):
            for j, h in enumerate(horizons):
                for c, kind in enumerate(FAILURE_TYPES):
                    assert y[start + t, j, c] == int(k == kind and 0 < f - t <= h)
        start += L
    assert (np.diff(y.astype(int), axis=1) >= 0).all()               # a longer horizon never un-labels a step
    with pytest.raises(ValueError, match='positive seconds'): horizon_steps([0.5, -1], 10)

def test_fsspec_url_store():
    "A store at an fsspec URL (here the in-memory filesystem) behaves as a local one, including the crash-safe tail cut."
    url = f'memory://salus-test-{np.random.default_rng().integers(1 << 30)}/s.zarr'
    s = EpisodeStore.create(url, SCHEMA, attrs={'kind': 'test'})
    for i, T in enumerate([3, 5]): s.append_episode(episode(T, i), {'task': f't{i}', 'seed': i})
    zarr.open_group(url, mode='r+')['data/state'].append(np.ones((4, 3), 'float32'))   # a crash mid-episode
    r = EpisodeStore.open(url, mode='a')
    assert (len(r), r.n_steps) == (2, 8) and r.episode(1)['state'].tolist() == [[1, 1, 1]] * 5
    assert zarr.open_group(url, mode='r')['data/state'].shape[0] == 8
    with pytest.raises(StoreError, match='already exists'): EpisodeStore.create(url, SCHEMA)

def test_export_lerobot_reads_back(tmp_path):
    "The demonstrations written with lerobot's own writer read back with LeRobotDataset: frames, states, actions."
    pytest.importorskip('lerobot', reason='lerobot is installed by `make install`')
    from lerobot.datasets.lerobot_dataset import LeRobotDataset
    from salus.data import export_lerobot
    envs = EnvsParams(image_size=32, control_hz=10, collision_force=60, seen_tasks=['lift_red', 'open_drawer'], unseen_tasks=[])
    record_demonstrations(tmp_path/'d.zarr', envs, DemosParams(episodes_per_task=1, action_noise=0.0, grasp_noise=0.0), seed=0, progress=False)
    store = EpisodeStore.open(tmp_path/'d.zarr')
    export_lerobot(store, tmp_path/'lerobot', repo_id='salus/test', progress=False)
    back = LeRobotDataset('salus/test', root=tmp_path/'lerobot')
    assert back.num_episodes == 2 and len(back) == store.n_steps and back.fps == 10
    rng = np.random.default_rng(0)
    for i in rng.choice(store.n_steps, 5, replace=False):
        e = int(np.searchsorted(store.episode_ends, i, side='right'))
        frame = back[int(i)]
        assert int(frame['episode_index']) == e and frame['task'] == str(store.meta()['instruction'][e])
        for cam, key in (('front', 'observation.images.camera1'), ('wrist', 'observation.images.camera2')):
            img = (frame[key].permute(1, 2, 0).numpy() * 255).round().astype(np.uint8)
            assert np.array_equal(img, store.data(cam)[i])
        assert np.array_equal(frame['observation.state'].numpy(), store.data('state')[i])
        assert np.array_equal(frame['action'].numpy(), store.data('action')[i])
    with pytest.raises(FileExistsError): export_lerobot(store, tmp_path/'lerobot', progress=False)

def test_nan_signal_rows_are_refused(tmp_path):
    schema = StoreSchema(data={'signals': ((2,), 'float32')}, meta={'task': 'str'})
    s = EpisodeStore.create(tmp_path/'r.zarr', schema)
    s.append_episode({'signals': np.zeros((3, 2))}, {'task': 'a'})
    bad = np.zeros((2, 2)); bad[1, 0] = np.nan
    with pytest.raises(StoreError, match=r'data/signals: non-finite value at \[1, 0\]'): s.append_episode({'signals': bad}, {'task': 'b'})
    g = zarr.open_group(tmp_path/'r.zarr', mode='r+')
    g['data/signals'][1] = [np.nan, 0]   # damage on disk
    with pytest.raises(StoreError, match='data/signals has non-finite values in row 1'): EpisodeStore.open(tmp_path/'r.zarr')
