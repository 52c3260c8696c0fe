"""The committed π0 / LIBERO-10 logs read completely into an episode store; malformed logs are refused with the file,
line and field named; ActProbe's protocols split as published; the ActProbe-like detector and SALUS run on them."""
import gzip, json, shutil
from pathlib import Path

import numpy as np
import pytest

from salus.evaluate import ElapsedScorer, SalusScorer, SignalScorer, TaskPriorScorer, Unit, evaluate_units
from salus.external import (ACTPROBE_FEATURES, ActProbeScorer, ExternalLogError, allseen_splits, external_metrics_json, external_table,
                            load_external_data, read_actprobe_logs, score_protocol, unseen_task_splits, write_actprobe_store)
from salus.predictor import PredictorConfig, TrainConfig
from conftest import REPO

LOGS = REPO/'external/actprobe_pi0_libero'

@pytest.fixture(scope='module')
def pi0(tmp_path_factory):
    store = write_actprobe_store(LOGS, tmp_path_factory.mktemp('pi0')/'pi0.zarr')
    return store, load_external_data(store, [1.0, 2.0, 5.0])

def test_committed_logs_are_the_published_release(pi0):
    store, data = pi0
    e = data.episodes
    assert (LOGS/'LICENSE').read_text().startswith('                                 Apache License')
    assert 'air-embodied-brain/actprobe' in (LOGS/'README.md').read_text()
    assert len(store) == 500 and int(e.failed.sum()) == 134
    task = np.asarray(e.meta['task'])
    # the README's per-task table: episodes / failures / shortest / longest
    table = {0: (50, 10, 49, 104), 1: (50, 1, 45, 104), 2: (50, 21, 41, 104), 3: (50, 3, 40, 104), 4: (50, 14, 43, 104),
             5: (50, 8, 27, 104), 6: (50, 18, 42, 104), 7: (50, 0, 43, 97), 8: (50, 47, 76, 104), 9: (50, 12, 47, 104)}
    for t, (n, fails, shortest, longest) in table.items():
        m = task == f'task_{t}'
        assert (m.sum(), e.failed[m].sum(), e.lengths[m].min(), e.lengths[m].max()) == (n, fails, shortest, longest)
    assert e.signal_names == list(ACTPROBE_FEATURES) and data.budget.tolist() == [104] * 500 and e.control_hz == 4.0
    assert store.attrs['kind'] == 'external' and e.labels.shape == (e.signals.shape[0], 3, 1)
    failed = np.flatnonzero(e.failed)[0]
    y = e.labels[e.starts[failed]:e.episode_ends[failed], :, 0]
    assert y[:, 0].sum() == 4 and y[:, 2].sum() == 20            # fails within 1 s / 5 s at 4 Hz: the last 4 / 20 steps
    assert not e.labels[e.starts[np.flatnonzero(~e.failed)[0]]:e.episode_ends[np.flatnonzero(~e.failed)[0]]].any()

def copy_logs(tmp_path, tasks=(0, 1)) -> Path:
    dest = tmp_path/'logs'
    (dest/'metrics_logs').mkdir(parents=True)
    for t in tasks: shutil.copy(LOGS/f'metrics_logs/task_{t}.jsonl.gz', dest/f'metrics_logs/task_{t}.jsonl.gz')
    return dest

def rewrite(folder:Path, task:int, line:int, change):
    "Apply `change` to line `line` (0-based) of task `task`'s log, written back uncompressed."
    gz = folder/f'metrics_logs/task_{task}.jsonl.gz'
    lines = gzip.open(gz, 'rt').read().splitlines()
    lines[line] = change(lines[line])
    gz.unlink()
    (folder/f'metrics_logs/task_{task}.jsonl').write_text('\n'.join(lines) + '\n')

def edit_json(f):
    def change(line):
        d = json.loads(line); f(d); return json.dumps(d)
    return change

@pytest.mark.parametrize('change,message', [
    (lambda line: line[:-5], "task_1.jsonl:3: not a JSON object"),
    (edit_json(lambda d: d.pop('success')), "task_1.jsonl:3: missing field(s) ['success']"),
    (edit_json(lambda d: d['steps'][5].pop('chunk_mse')), "task_1.jsonl:3: step 5 lacks feature(s) ['chunk_mse']"),
    (lambda line: line.replace('"action_norm": ', '"action_norm": NaN, "x": ', 1), "task_1.jsonl:3: step 0, feature 'action_norm' is not finite"),
    (edit_json(lambda d: d['steps'][2].update(eef_z=float('inf'))), "step 2, feature 'eef_z' is not finite"),
    (edit_json(lambda d: d.update(length=d['length'] + 1)), "task_1.jsonl:3: length"),
    (edit_json(lambda d: d['steps'].reverse()), "task_1.jsonl:3: step 0 is not a step dict with t=0"),
    (edit_json(lambda d: d.update(success='yes')), "'success' must be true or false"),
])
def test_malformed_logs_are_refused_with_file_line_and_field(tmp_path, change, message):
    logs = copy_logs(tmp_path)
    rewrite(logs, 1, 2, change)
    with pytest.raises(ExternalLogError) as err: read_actprobe_logs(logs)
    assert message in str(err.value)
    with pytest.raises(ExternalLogError): write_actprobe_store(logs, tmp_path/'s.zarr')
    assert not (tmp_path/'s.zarr').exists()                        # nothing half-written is left as the store

def test_missing_or_empty_log_folders_are_named(tmp_path):
    with pytest.raises(ExternalLogError, match='no such folder'): read_actprobe_logs(tmp_path/'nope')
    (tmp_path/'empty').mkdir()
    with pytest.raises(ExternalLogError, match='has no metrics_logs/ folder'): read_actprobe_logs(tmp_path/'empty')
    (tmp_path/'empty/metrics_logs').mkdir()
    with pytest.raises(ExternalLogError, match='no task_<i>.jsonl'): read_actprobe_logs(tmp_path/'empty')
    logs = copy_logs(tmp_path, tasks=(3,))
    write_actprobe_store(logs, tmp_path/'s.zarr')
    with pytest.raises(ExternalLogError, match='already exists'): write_actprobe_store(logs, tmp_path/'s.zarr')

def test_protocol_splits(pi0):
    _, data = pi0
    e = data.episodes
    task = np.asarray(e.meta['task'])
    for seed in range(3):
        sp = allseen_splits(e, seed)
        assert sorted(np.r_[sp['train'], sp['val'], sp['test']].tolist()) == list(range(500)) and sp['calib'] is sp['val']
        for t in set(task):
            for y in (False, True):
                n = ((task == t) & (e.failed == y)).sum()
                got = [((task[sp[k]] == t) & (e.failed[sp[k]] == y)).sum() for k in ('train', 'val', 'test')]
                assert all(abs(g - f * n) < 1 for g, f in zip(got, (0.7, 0.15, 0.15)))   # 70/15/15 per task and outcome
        us = unseen_task_splits(e, seed, n_tasks=3)
        held = set(us['heldout_tasks'])
        assert len(held) == 3 and set(task[us['test']]) == held and (task[us['test']].size == 150)
        assert not held & set(task[np.r_[us['train'], us['val']]]) and len(us['train']) + len(us['val']) == 350
    assert len({tuple(unseen_task_splits(e, s)['heldout_tasks']) for s in range(5)}) > 1   # different tasks per seed

def test_salus_actprobe_and_controls_on_one_seed(pi0):
    "One all-seen seed end to end with small settings: every scorer fitted and scored, the controls behave as defined."
    _, data = pi0
    e = data.episodes
    config = PredictorConfig(e.signal_names, [1.0, 2.0, 5.0], 4.0, failure_types=[], window=4, hidden=8)
    scorers = [SalusScorer(config=config, train_config=TrainConfig(epochs=2)), SignalScorer('chunk_mse'), ElapsedScorer(), TaskPriorScorer(),
               ActProbeScorer(epochs=5, check_every=5)]
    scored = score_protocol(data, 'allseen', 0, scorers, 0.15)
    res = {'allseen': evaluate_units([scored], [Unit(0, 0)], 'allseen', ['h1s', 'h2s', 'h5s'], bootstrap=10, main_alpha=0.15)}
    m = external_metrics_json(res, 'pi0_libero')
    ep = m['pi0_libero']['allseen']
    assert set(ep) == {'salus', 'chunk_mse', 'elapsed', 'task_prior', 'actprobe'}
    for s in ep:
        for k in ('q_auc_0.25', 'q_auc_0.25_taskmax', 'q_auc_0.25_survivors', 'roc_auc', 'f1_alpha_0.15', 'balanced_accuracy_alpha_0.15',
                  'n_episodes', 'n_failures', 'q_auc_0.25_ci'):
            assert k in ep[s], (s, k)
    assert ep['elapsed']['q_auc_0.25'] == 0.5       # every episode runs past the 26-step budget cutoff: length cannot rank them
    assert ep['task_prior']['q_auc_0.25_macro'] == 0.5 and ep['elapsed']['roc_auc'] > 0.8   # full-episode: length ranks them
    assert set(m['paired']['pi0_libero']['allseen']) == {'chunk_mse', 'elapsed', 'task_prior', 'actprobe'}
    assert scored[-1].info['val_q_auc'] is not None
    table = external_table(m)
    assert '| **salus** |' in table and 'ActProbe (published' in table and '0.801' in table

def test_readme_shows_the_generated_external_table():
    from salus.report import sync_readme_results
    assert sync_readme_results(REPO/'README.md', REPO/'metrics/external.md', check=True), \
        "README's π0 table differs from metrics/external.md: run `make repro` (or salus.report.sync_readme_results(results='metrics/external.md'))"
