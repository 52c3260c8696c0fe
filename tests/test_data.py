"The episode store keeps its invariants: append-only, crash-safe, validated on open; demos recording resumes exactly."
import pathlib, re, shutil, subprocess, sys

import numpy as np
import pytest
import zarr

from salus.params import DemosParams, EnvsParams
from salus.demos import record_demonstrations
from salus.data import EpisodeStore, StoreError, StoreSchema

SCHEMA = StoreSchema(data={'state': ((3,), 'float32'), 'image': ((4, 4, 3), 'uint8')}, meta={'task': 'str', 'seed': 'int64'})

def episode(T, fill=0.0):
    return {'state': np.full((T, 3), fill, 'float32'), 'image': np.zeros((T, 4, 4, 3), 'uint8')}

@pytest.fixture
def store(tmp_path):
    s = EpisodeStore.create(tmp_path/'s.zarr', SCHEMA, attrs={'kind': 'test'})
    for i, T in enumerate([3, 5, 2]): s.append_episode(episode(T, i), {'task': f't{i}', 'seed': i})
    s.close()
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
    from salus.base import FAILURE_TYPES, horizon_steps
    from salus.data import failure_labels
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

# -- the commit protocol, the writer lock and damage detection (issue: nothing lost, nothing silent)

CHILD_APPEND = r'''
import os, sys, numpy as np
path, kill_at = sys.argv[1], int(sys.argv[2])
from salus.data import EpisodeStore
replace, count = os.replace, [0]
def counting_replace(src, dst, *a, **k):   # every file zarr or the commit writes lands by a rename: kill before the k-th
    count[0] += 1
    if count[0] == kill_at: os._exit(137)
    return replace(src, dst, *a, **k)
os.replace = counting_replace
w = EpisodeStore.open(path, mode='a')
w.append_episode({'state': np.full((70, 3), 9, 'float32'), 'image': np.full((70, 4, 4, 3), 9, 'uint8')}, {'task': 'late', 'seed': 9})
print(count[0])
'''

def _child(*args):

    return subprocess.run([sys.executable, '-c', CHILD_APPEND, *map(str, args)], capture_output=True, text=True, timeout=120)

def _same_stores(a, b):
    assert (len(a), a.n_steps) == (len(b), b.n_steps)
    assert all(np.array_equal(a.data(k), b.data(k)) for k in SCHEMA.data)
    assert all(np.array_equal(x, y) for x, y in zip(a.meta().values(), b.meta().values()))

def test_a_kill_before_any_write_of_an_append_leaves_the_committed_store_and_resume_gives_the_uninterrupted_one(store, tmp_path):

    reference = shutil.copytree(store.path, tmp_path/'reference.zarr')
    done = _child(reference, 0)                                        # never killed: counts the renames of one append
    assert done.returncode == 0, done.stderr
    writes = int(done.stdout.split()[-1])
    assert writes > 10                                                 # zarr.json and chunks of 5 arrays, and the commit record
    for k in range(1, writes + 1):
        victim = shutil.copytree(store.path, tmp_path/f'killed{k}.zarr')
        assert _child(victim, k).returncode == 137
        r = EpisodeStore.open(victim)                                  # readable at every kill point: the 3 committed episodes
        assert (len(r), r.n_steps) == (3, 10), k
        _same_stores(r, EpisodeStore.open(store.path))
        assert _child(victim, 0).returncode == 0                       # resume: cut the tail, append again
        resumed = EpisodeStore.open(victim)
        _same_stores(resumed, EpisodeStore.open(reference))
        assert resumed.verify() > 0
        assert not [p for p in victim.rglob('*') if p.name.endswith(('.partial', '.tmp'))]   # no temporary file left behind

def test_a_second_writer_is_refused_naming_the_first(store, tmp_path):

    holder = subprocess.Popen([sys.executable, '-c', 'import sys, time; from salus.data import EpisodeStore\n'
                               f'w = EpisodeStore.open({str(store.path)!r}, mode="a"); print("open", flush=True); time.sleep(60)'],
                              stdout=subprocess.PIPE, text=True)
    try:
        assert holder.stdout.readline().strip() == 'open'
        with pytest.raises(StoreError, match=rf'another writer has it open \(.*"pid": {holder.pid}'): EpisodeStore.open(store.path, mode='a')
        second = _child(store.path, 0)                                 # another process is refused too, and writes nothing
        assert second.returncode == 1 and 'another writer has it open' in second.stderr
        assert len(EpisodeStore.open(store.path)) == 3                 # readers are never blocked
    finally: holder.kill(); holder.wait()
    w = EpisodeStore.open(store.path, mode='a')                       # a killed writer's lock is free again
    with pytest.raises(StoreError, match='another writer'): EpisodeStore.open(store.path, mode='a')   # one writer per process too
    w.close()
    assert not (pathlib.Path(store.path)/'.salus_writer.lock').exists()


@pytest.mark.parametrize('damage,message', [
    (lambda p: (p/'data/state/c/0/0').unlink(), 'data/state: chunk data/state/c/0/0 is missing'),
    (lambda p: (p/'meta/seed/c/0').unlink(), 'meta/seed: chunk meta/seed/c/0 is missing'),       # the last, partly filled chunk
    (lambda p: (p/'meta/seed/c/0').write_bytes((p/'meta/seed/c/0').read_bytes()[:-3]), 'meta/seed cannot be read'),
    (lambda p: (p/'data/image/zarr.json').write_text('{"zarr_format": 3, '), 'array data/image is unreadable'),
    (lambda p: (p/'salus_commit.json').write_text('{"n_episodes": 3'), 'the commit record salus_commit.json is damaged'),
    (lambda p: (p/'salus_commit.json').unlink(), 'no commit record'),
])
def test_missing_or_damaged_files_are_named(tmp_path, damage, message):
    s = EpisodeStore.create(tmp_path/'big.zarr', SCHEMA, chunk_steps=4)
    for i, T in enumerate([3, 5, 2]): s.append_episode(episode(T, i + 1), {'task': f't{i}', 'seed': i + 1})
    s.close()
    damage(tmp_path/'big.zarr')
    with pytest.raises(StoreError, match=re.escape(message)): EpisodeStore.open(tmp_path/'big.zarr')

def _flip_last_byte(chunk):
    b = bytearray(chunk.read_bytes()); b[-1] ^= 0xFF; chunk.write_bytes(bytes(b))   # same size: only the CRC can tell

@pytest.mark.parametrize('chunk,on_open', [('data/state/c/0/0', True),         # a float array: checked on every open
                                           ('data/image/c/0/0/0/0', False)])   # any other: by verify()
def test_a_changed_full_chunk_fails_its_checksum(tmp_path, chunk, on_open):
    s = EpisodeStore.create(tmp_path/'s.zarr', SCHEMA, chunk_steps=4)
    for i, T in enumerate([3, 5, 2]):
        s.append_episode({**episode(T, i + 1), 'image': np.full((T, 4, 4, 3), i + 1, 'uint8')}, {'task': f't{i}', 'seed': i + 1})
    s.close()
    _flip_last_byte(tmp_path/'s.zarr'/chunk)
    message = re.escape(f"{chunk.split('/c/')[0]}: chunk {chunk} fails its CRC-32 check")
    if on_open:
        with pytest.raises(StoreError, match=message): EpisodeStore.open(tmp_path/'s.zarr')
    else:
        with pytest.raises(StoreError, match=message): EpisodeStore.open(tmp_path/'s.zarr').verify()

def test_an_all_fill_array_without_chunk_files_is_fine(tmp_path):
    schema = StoreSchema(data={'held': ((), 'bool'), 'x': ((1,), 'float32')}, meta={'task': 'str'})
    s = EpisodeStore.create(tmp_path/'s.zarr', schema)
    s.append_episode({'held': np.zeros(5, bool), 'x': np.ones((5, 1), 'float32')}, {'task': 'a'})
    s.close()
    assert not list((tmp_path/'s.zarr/data/held').rglob('c/*'))
    r = EpisodeStore.open(tmp_path/'s.zarr')
    assert not r.data('held').any() and r.verify() >= 1

@pytest.mark.parametrize('chunk_steps,message', [(64, 'data/state has non-finite values in row 4'),     # in the last, partly filled chunk
                                                 (4, r'data/state: chunk data/state/c/1/0 (fails its CRC-32 check|has \d+ bytes, \d+ were committed)')])
def test_non_finite_values_in_any_float_array_are_refused_on_open(tmp_path, chunk_steps, message):
    s = EpisodeStore.create(tmp_path/'s.zarr', SCHEMA, chunk_steps=chunk_steps)
    for i, T in enumerate([3, 5, 2]): s.append_episode(episode(T, i), {'task': f't{i}', 'seed': i})
    s.close()
    zarr.open_group(tmp_path/'s.zarr', mode='r+')['data/state'][4, 1] = np.nan   # e.g. a demonstration's action, damaged on disk
    with pytest.raises(StoreError, match=message): EpisodeStore.open(tmp_path/'s.zarr')

def test_lossy_conversions_are_refused(store):
    w = EpisodeStore.open(store.path, mode='a')
    ok = episode(2)
    for bad, message in [({**ok, 'state': np.zeros((2, 3), 'int16')}, 'data/state: values of dtype int16, the store holds float32'),
                         ({**ok, 'image': np.full((2, 4, 4, 3), 0.5)}, 'data/image: values of dtype float64, the store holds uint8'),
                         ({**ok, 'image': np.full((2, 4, 4, 3), 300)}, 'do not fit the store\'s uint8'),
                         ({**ok, 'state': np.full((2, 3), 1e39)}, "too large for the store's float32")]:
        with pytest.raises(StoreError, match=re.escape(message)): w.append_episode(bad, {'task': 'x', 'seed': 0})
    w.append_episode({**ok, 'state': np.zeros((2, 3))}, {'task': 'x', 'seed': 0})   # float64 into float32 is fine
    w.close()

def test_open_or_create_restarts_only_when_asked_and_recreates_an_unborn_store(store, tmp_path):
    with pytest.raises(StoreError, match=r"other \['kind'\]"): EpisodeStore.open_or_create(store.path, SCHEMA, attrs={'kind': 'other'})
    assert len(EpisodeStore.open(store.path)) == 3                     # refused: untouched
    fresh = EpisodeStore.open_or_create(store.path, SCHEMA, attrs={'kind': 'other'}, on_mismatch='restart')
    assert len(fresh) == 0 and fresh.attrs['kind'] == 'other'
    fresh.close()
    unborn = zarr.open_group(tmp_path/'unborn.zarr', mode='w-')       # a kill during create, before its commit record
    unborn.create_array('data/state', shape=(0, 3), dtype='float32')
    again = EpisodeStore.open_or_create(tmp_path/'unborn.zarr', SCHEMA)
    assert len(again) == 0 and again.schema == SCHEMA
    with pytest.raises(ValueError, match="on_mismatch must be"): EpisodeStore.open_or_create(store.path, SCHEMA, on_mismatch='ignore')

def test_a_version_1_store_is_upgraded_in_place(store):
    import json
    p = pathlib.Path(store.path)
    (p/'salus_commit.json').unlink()
    zarr.open_group(p, mode='r+').attrs['schema_version'] = 1          # what an older salus wrote
    with pytest.raises(StoreError, match='upgrade it in place with `salus.data.upgrade_store'): EpisodeStore.open(p)
    from salus.data import upgrade_store
    up = upgrade_store(p)
    assert (len(up), up.n_steps, up.attrs['schema_version']) == (3, 10, 2) and up.verify() > 0
    assert json.loads((p/'salus_commit.json').read_text())['n_episodes'] == 3

def test_horizons_shorter_than_a_step_or_equal_after_rounding_are_refused():
    from salus.base import horizon_steps
    with pytest.raises(ValueError, match='shorter than one control step'): horizon_steps([0.01, 0.5], 10)
    with pytest.raises(ValueError, match='two horizons would be the same'): horizon_steps([0.2, 0.24], 10)
    assert horizon_steps([0.2, 0.5, 1, 2], 4) == [1, 2, 4, 8]
