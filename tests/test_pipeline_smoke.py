"""The project's own pipeline, on the smoke profile, in a scratch copy of the working tree (so the working tree's
DVC outputs are untouched): it reproduces end to end, a second copy run at the same time gives the same bytes, right
after that DVC has nothing left to do, and changing one param re-runs only the stages that read it."""
import json, re, subprocess

import pytest

from salus.params import load_params
from salus.stages import _tool, dvc, reproduce_in_scratch
from salus.data import EpisodeStore
from salus.predictor import ConformalThresholds, load_predictor
from conftest import REPO

def ran(root) -> list[str]:
    return sorted(re.findall(r"Running stage '([^']+)'", dvc('repro', cwd=root, capture=True).stdout))

@pytest.fixture(scope='module')
def smoke_runs(tmp_path_factory):
    "Two scratch copies reproduced from scratch at the same time (the smoke profile's stages use one core each)."
    again = tmp_path_factory.mktemp('again')/'salus'
    second = subprocess.Popen([_tool('salus_repro_scratch'), '--profile', 'smoke', '--dest', str(again), '--root', str(REPO)],
                              stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    try: first = reproduce_in_scratch(REPO, tmp_path_factory.mktemp('smoke')/'salus', profile='smoke')
    finally: log = second.communicate()[0]
    assert second.returncode == 0, f"the second smoke run failed:\n{log[-5000:]}"
    return first, again

@pytest.fixture(scope='module')
def smoke_copy(smoke_runs): return smoke_runs[0]

def test_smoke_pipeline_reproduces(smoke_copy):
    params = load_params(smoke_copy/'params.yaml')
    assert params.profile == 'smoke'
    assert load_params(REPO/'params.yaml').profile == 'default'        # the working tree is untouched
    demos = EpisodeStore.open(smoke_copy/'stores/demos.zarr')
    assert len(demos) == params.demos.episodes_per_task * len(params.envs.seen_tasks)
    assert demos.attrs['image_size'] == params.envs.image_size
    metrics = json.loads((smoke_copy/'metrics/demos.json').read_text())
    assert metrics['episodes'] == len(demos) and set(metrics['tasks']) == set(params.envs.seen_tasks)
    assert (smoke_copy/'reports/demos.ipynb').is_file()
    policy = json.loads((smoke_copy/'metrics/policy.json').read_text())
    assert policy['members'] == params.policy.members
    for condition, tasks in [('seen', params.envs.seen_tasks), ('unseen', params.envs.unseen_tasks),
                             ('seen_shifted', params.envs.seen_tasks), ('seen_wrong_instruction', params.envs.seen_tasks)]:
        assert policy[condition]['episodes'] == params.policy.eval_episodes_per_task * len(tasks)
        assert set(policy[condition]['per_task']) == set(tasks)
    assert (smoke_copy/'checkpoints/policy/model.safetensors').is_file()
    losses = (smoke_copy/'plots/policy_loss.csv').read_text().splitlines()
    assert losses[0].startswith('epoch,member,loss') and len(losses) == 1 + params.policy.epochs * params.policy.members
    language = json.loads((smoke_copy/'metrics/language.json').read_text())
    assert language['rollouts'] == 2 * params.policy.eval_episodes_per_task and 0 <= language['followed'] <= language['rollouts']
    rollouts = EpisodeStore.open(smoke_copy/'stores/rollouts.zarr')
    tasks = params.envs.seen_tasks + params.envs.unseen_tasks
    assert len(rollouts) == params.collect.episodes_per_task * len(params.collect.shifts) * len(tasks)
    assert rollouts.attrs['signal_names'] == params.signals.active
    collection = json.loads((smoke_copy/'metrics/collection.json').read_text())
    assert collection['episodes'] == len(rollouts) and set(collection['by_task']) == set(tasks)
    assert sum(collection['by_split']['seen'].get(k, 0) for k in ('success', 'collision', 'drop', 'miss', 'timeout')) \
        == params.collect.episodes_per_task * len(params.collect.shifts) * len(params.envs.seen_tasks)
    predictor = json.loads((smoke_copy/'metrics/predictor.json').read_text())
    assert predictor['architecture'] in params.predictor.architectures and predictor['seeds'] == params.predictor.seeds
    assert predictor['signal_names'] == params.signals.active
    for s in range(params.predictor.seeds):
        folder = smoke_copy/f'checkpoints/predictor/seed{s}'
        model, thresholds = load_predictor(folder), ConformalThresholds.load(folder/'thresholds.json')
        assert model.config.signal_names == params.signals.active and thresholds.alphas == params.predictor.alphas
        splits = {k: set(v) for k, v in json.loads((folder/'splits.json').read_text()).items()}
        assert set().union(*splits.values()) == set(range(len(rollouts)))
        assert sum(map(len, splits.values())) == len(rollouts)                         # disjoint
        unseen = {i for i, split in enumerate(rollouts.meta()['split']) if split == 'unseen'}
        assert splits['unseen'] == unseen and not unseen & (splits['train'] | splits['val'] | splits['calib'])

    evaluation = json.loads((smoke_copy/'metrics/evaluate.json').read_text())
    for level in ('episode', 'step'):
        for split, by_scorer in evaluation[level].items():
            assert split in ('seen', 'unseen', 'heldout') and set(by_scorer) == {'salus', *params.evaluate.baselines}
    assert 'heldout' in evaluation['episode'] and evaluation['config']['collections'] == params.replicate.collections
    assert {'elapsed', 'task_prior'} <= set(evaluation['config']['controls'])
    for split, by_scorer in evaluation['episode'].items():      # the early-detection schema, with intervals and paired differences
        for scorer, m in by_scorer.items():
            for key in ('q_auc_0.25', 'q_auc_0.25_macro', 'q_auc_0.25_survivors', 'q_auc_1', 'roc_auc', 'detection_time_safe_alpha_0.1',
                        'balanced_accuracy_alpha_0.15', 'q_auc_0.25_ci', 'detection_time_safe_alpha_0.1_ci', 'n_episodes'):
                assert key in m, (split, scorer, key)
        assert set(evaluation['paired'][split]) == set(params.evaluate.baselines)
        assert all(len(v) == 3 for p in evaluation['paired'][split].values() for v in p.values() if v is not None)
    n_seen = sum(s == 'seen' for s in rollouts.meta()['split'])
    assert evaluation['episode']['seen']['salus']['n_episodes'] == n_seen        # cross-fitted: every seen episode scored
    assert (smoke_copy/'metrics/results.md').read_text().count('| **salus** |') == len(evaluation['episode'])
    external = json.loads((smoke_copy/'metrics/external.json').read_text())
    ex = params.external
    assert set(external[ex.dataset]) == set(ex.protocols) and external['config']['episodes'] == 500
    for protocol, by_scorer in external[ex.dataset].items():
        assert {'salus', 'chunk_mse', *ex.baselines} <= set(by_scorer)
        for m in by_scorer.values():
            for key in ('q_auc_0.25', 'q_auc_0.25_taskmax', 'q_auc_0.25_survivors', 'roc_auc', f'f1_alpha_{ex.alpha:g}',
                        f'balanced_accuracy_alpha_{ex.alpha:g}', 'n_episodes', 'n_failures', 'q_auc_0.25_ci'):
                assert key in m
        assert 'q_auc_0.25' in external['paired'][ex.dataset][protocol]['elapsed']
    assert '| **salus** |' in (smoke_copy/'metrics/external.md').read_text()
    assert len(EpisodeStore.open(smoke_copy/f'stores/external/{ex.dataset}.zarr')) == 500
    replicas = [EpisodeStore.open(smoke_copy/f'stores/replicates/collection{k}.zarr') for k in range(1, params.replicate.collections)]
    assert replicas and all(len(r) == len(rollouts) for r in replicas)          # the same tasks and shifts ...
    assert all(not set(r.meta()['seed']) & set(rollouts.meta()['seed']) for r in replicas)   # ... with fresh episode seeds
    replicated = json.loads((smoke_copy/'metrics/replicates.json').read_text())
    assert sorted(replicated['by_collection']) == [f'collection{k}' for k in range(1, params.replicate.collections)]

    iv = params.intervene
    records = [json.loads(l) for l in (smoke_copy/'stores/interventions.jsonl').read_text().splitlines()]
    n_tasks = len(iv.tasks) if iv.tasks != 'all' else len(tasks)
    n_episodes = n_tasks * len(params.collect.shifts) * iv.episodes_per_task
    assert len(records) == n_episodes * (1 + len(iv.strategies) * params.predictor.seeds)
    assert {r['condition'] for r in records} == {'none', *iv.strategies}
    by_condition = {}
    for r in records: by_condition.setdefault(r['condition'], []).append((r['index'], r['seed']))
    assert all(v == by_condition['none'] for v in by_condition.values())                # paired: the same episodes
    intervention = json.loads((smoke_copy/'metrics/intervention.json').read_text())
    assert set(intervention['all']) == {'none', *iv.strategies} and intervention['all']['none']['n_episodes'] == n_episodes
    assert set(intervention['latency_ms']) == {'none', *iv.strategies}
    identity = json.loads((smoke_copy/'metrics/policy.json').read_text())['policy']   # the checkpoint every stage used, recorded
    assert identity['backend'] == 'embedded' and rollouts.attrs['policy'] == identity
    assert evaluation['config']['policy'] == intervention['config']['policy'] == replicated['policy']['collection1'] == identity
    assert (smoke_copy/'plots/intervention.csv').read_text().startswith('split,condition,outcome,rate')

    figures = sorted(p.name for p in (smoke_copy/'figures').iterdir())
    stems = ['auroc_by_horizon_and_type', 'intervention', 'lead_time', 'monitor_overhead', 'q_auc', 'roc', 'roc_heldout_tasks',
             'signals_failure_vs_success', 'task_suite']
    assert figures == sorted(f'{s}.{ext}' for s in stems for ext in ('pdf', 'png'))
    for s in stems: assert (smoke_copy/f'figures/{s}.pdf').read_bytes().startswith(b'%PDF') and (smoke_copy/f'figures/{s}.png').stat().st_size > 10_000

def test_two_runs_from_scratch_give_the_same_metrics(smoke_runs):
    smoke_copy, again = smoke_runs
    files = sorted(p.relative_to(smoke_copy) for p in (smoke_copy/'metrics').iterdir())
    assert [str(f) for f in files] == sorted(str(p.relative_to(again)) for p in (again/'metrics').iterdir())
    assert {'metrics/evaluate.json', 'metrics/external.json', 'metrics/intervention.json'} <= set(map(str, files))
    for f in files:
        a, b = (smoke_copy/f).read_bytes(), (again/f).read_bytes()
        if f.name == 'intervention.json':   # measured latencies differ between runs; every other number must not
            a, b = [json.loads(x) for x in (a, b)]
            assert a.pop('latency_ms').keys() == b.pop('latency_ms').keys()
        assert a == b, f
    for f in sorted((smoke_copy/'figures').iterdir()):   # figures too (but the measured monitor overhead)
        if not f.name.startswith('monitor_overhead'): assert f.read_bytes() == (again/'figures'/f.name).read_bytes(), f.name

def test_second_repro_does_nothing_and_status_is_clean(smoke_copy):
    assert ran(smoke_copy) == []
    assert 'up to date' in dvc('status', cwd=smoke_copy, capture=True).stdout

def _outputs(root) -> dict:
    "Every output file of the pipeline, with its bytes' hash."
    import hashlib
    return {str(p.relative_to(root)): hashlib.sha256(p.read_bytes()).hexdigest()
            for d in ('stores', 'checkpoints', 'metrics', 'plots', 'reports', 'figures') for p in sorted((root/d).rglob('*')) if p.is_file()}

@pytest.mark.parametrize('stage,store', [('demos', 'stores/demos.zarr'), ('collect', 'stores/rollouts.zarr')])
def test_a_killed_repro_resumes_the_stage_store_and_ends_with_the_same_bytes(smoke_copy, stage, store):
    "SIGKILL of the whole `dvc repro` (DVC, papermill, the kernel) mid-stage; the next `dvc repro` resumes the store (`persist`)."
    import os, shutil, signal, time
    before = _outputs(smoke_copy)
    shutil.rmtree(smoke_copy/store)                                   # so that the stage must make it again
    proc = subprocess.Popen([_tool('dvc'), 'repro', stage], cwd=smoke_copy, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                            start_new_session=True)
    deadline, kept = time.time() + 900, 0
    while time.time() < deadline and proc.poll() is None and kept < 2:
        try: kept = len(EpisodeStore.open(smoke_copy/store))
        except Exception: pass
        time.sleep(0.2)
    os.killpg(proc.pid, signal.SIGKILL); proc.wait()
    assert kept >= 2, "the stage finished before it could be killed"
    deadline = time.time() + 60   # the kernel runs in its own session: it exits by itself when its parent is gone
    while True:
        try: writer = EpisodeStore.open(smoke_copy/store, mode='a')   # valid after a kill at any point, and its writer gone
        except Exception as e:
            if 'another writer' not in str(e) or time.time() > deadline: raise
            time.sleep(0.5)
        else: break
    killed = len(writer)
    writer.close()
    assert ran(smoke_copy) == [stage]
    report = (smoke_copy/f'reports/{stage}.ipynb').read_text()
    assert f'resuming {store} at {killed} of' in report               # resumed, not restarted
    after = _outputs(smoke_copy)
    assert {k: v for k, v in after.items() if k.startswith(store)} == {k: v for k, v in before.items() if k.startswith(store)}
    assert 'up to date' in dvc('status', cwd=smoke_copy, capture=True).stdout   # nothing downstream sees a change

def test_a_bad_param_is_reported_before_any_output_is_touched(smoke_copy):
    params_file = smoke_copy/'params.yaml'
    text = params_file.read_text()
    before = _outputs(smoke_copy)
    params_file.write_text(text.replace('smoke: {episodes_per_task: 1, workers: 1,', 'smoke: {episodes_per_task: 1, workers: 0,'))
    res = subprocess.run([_tool('salus_repro'), '--root', str(smoke_copy)], capture_output=True, text=True)
    params_file.write_text(text)
    assert res.returncode == 1 and 'collect.profiles.smoke.workers' in res.stderr and 'no output was touched' in res.stderr
    assert _outputs(smoke_copy) == before

def test_changing_one_param_reruns_only_its_readers(smoke_copy):
    params_file = smoke_copy/'params.yaml'
    text = params_file.read_text()
    text = text.replace('episodes_per_task: 1, bootstrap: 20}', 'episodes_per_task: 1, bootstrap: 10}')   # each change keeps the ones before it
    params_file.write_text(text)
    assert ran(smoke_copy) == ['figures', 'intervene']            # its own group: nothing upstream re-runs (figures draw its outputs)
    text = text.replace('smoke: {torch_threads: 1}', 'smoke: {torch_threads: 2}')
    params_file.write_text(text)
    assert ran(smoke_copy) == ['collect', 'evaluate', 'external', 'figures', 'intervene', 'language_check', 'replicate', 'train_policy',
                               'train_predictor']   # the stages that read `runtime`, and the figures of their outputs
    params_file.write_text(text.replace('smoke: {episodes_per_task: 2}', 'smoke: {episodes_per_task: 3}'))
    assert ran(smoke_copy) == ['collect', 'demos', 'evaluate', 'figures', 'intervene', 'language_check', 'replicate', 'train_policy',
                               'train_predictor']   # everything downstream of the demonstrations reruns; `external` does not read them
    assert len(EpisodeStore.open(smoke_copy/'stores/demos.zarr')) == 3 * len(load_params(params_file).envs.seen_tasks)
    assert ran(smoke_copy) == []
