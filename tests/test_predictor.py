"""The SALUS predictor on episode stores the tests make: it finds a real pre-failure structure and finds nothing in noise,
its conformal thresholds hold their false-alarm rate on fresh successes, its splits cannot leak, and bad input fails
clearly."""
import json, re
from dataclasses import replace

import numpy as np
import pytest
from sklearn.metrics import average_precision_score, roc_auc_score

from salus.data import EpisodeStore, StoreError, StoreSchema
from salus.metrics import average_precision, roc_auc
from salus.predictor import (ARCHITECTURES, ConformalThresholds, PredictorConfig, PredictorError, PredictorStream, TrainConfig,
                             conformal_thresholds, fit_temperature, load_predictor, load_signal_episodes,
                             save_predictor, signal_windows, split_episodes, train_predictor,
                             FailurePredictor, SignalEpisodes)
from salus.synthetic import synthetic_store

HORIZONS = [0.2, 0.5, 1.0, 2.0]

def mem(tmp_path, name) -> str:
    "An in-memory store URL unique to this test (fsspec's memory filesystem: the same code path, no disk)."
    return f"memory://{tmp_path.name}/{name}"
FRACTIONS = {'train': 0.5, 'val': 0.2, 'calib': 0.15, 'test': 0.15}

def fit(store, arch='mlp', seed=0, epochs=30, episode_output=False):
    data = load_signal_episodes(store, HORIZONS)
    sp = split_episodes(data, FRACTIONS, seed=seed)
    cfg = PredictorConfig(data.signal_names, HORIZONS, data.control_hz, window=8, arch=arch, episode_output=episode_output)
    model, _ = train_predictor(data, sp['train'], sp['val'], cfg, TrainConfig(epochs=epochs, seed=seed), progress=False)
    return model, data, sp

def held_out_auroc(model, data, sp, horizon=2):
    test = data.subset(np.r_[sp['test'], sp['unseen']])
    return roc_auc(model.predict_episodes(test)[:, horizon, -1], test.labels[:, horizon, -1])

@pytest.mark.parametrize('arch', ARCHITECTURES)
def test_learns_pre_failure_structure_and_not_noise(tmp_path, arch):
    structured = synthetic_store(mem(tmp_path, 'structure'), structure=True, n_episodes=240, seed=1)
    noise = synthetic_store(mem(tmp_path, 'noise'), structure=False, n_episodes=240, seed=1)
    auc_structure = held_out_auroc(*fit(structured, arch))
    auc_noise = held_out_auroc(*fit(noise, arch))
    assert auc_structure > 0.75, auc_structure
    assert abs(auc_noise - 0.5) < 0.1, auc_noise

def test_episode_output_learns_the_outcome_and_not_noise(tmp_path):
    "v2's episode-outcome output: its targets are each episode's outcome at every step, and it ranks held-out episodes by outcome."
    aucs = {}
    for structure in (True, False):
        model, data, sp = fit(synthetic_store(mem(tmp_path, str(structure)), structure=structure, n_episodes=240, seed=1), episode_output=True)
        y = data.episode_labels
        assert y.shape == (data.n_episodes, len(data.failure_types) + 1)
        np.testing.assert_array_equal(y[:, -1], data.failed)
        for k, kind in enumerate(data.failure_types): np.testing.assert_array_equal(y[:, k], data.failed & (data.meta['failure_type'] == kind))
        fit_temperature(model, data, sp['val'])
        test = data.subset(np.r_[sp['test'], sp['unseen']])
        horizon, episode = model.predict_episodes_all(test)
        np.testing.assert_array_equal(horizon, model.predict_episodes(test))   # the horizon outputs are what they were
        aucs[structure] = roc_auc(np.maximum.reduceat(episode[:, -1], test.starts), test.failed)
    assert aucs[True] > 0.75 and abs(aucs[False] - 0.5) < 0.15, aucs

def test_conformal_thresholds_hold_false_alarm_rate_on_fresh_successes(tmp_path):
    model, _, _ = fit(synthetic_store(mem(tmp_path, 'train'), n_episodes=240, seed=1))
    # calibration and fresh episodes come from the same distribution, with many successes
    calib = load_signal_episodes(synthetic_store(mem(tmp_path, 'calib'), n_episodes=600, unseen_fraction=0, seed=2), HORIZONS)
    fresh = load_signal_episodes(synthetic_store(mem(tmp_path, 'fresh'), n_episodes=600, unseen_fraction=0, seed=3), HORIZONS)
    ok = np.flatnonzero(~calib.failed)
    half = len(ok) // 2
    th = conformal_thresholds(model, calib, ok[:half], ok[half:], alphas=[0.1, 0.2])
    n = th.n_calibration
    assert n == half
    succ = fresh.subset(np.flatnonzero(~fresh.failed))
    curves = np.split(model.predict_episodes(succ), succ.episode_ends[:-1])
    m = len(curves)
    for alpha in (0.1, 0.2):
        sd = np.sqrt(alpha * (1 - alpha) / m)
        for kind in ('constant', 'functional'):
            for h in range(len(HORIZONS)):
                rate = np.mean([th.alarms(c, alpha, kind)[:, h, -1].any() for c in curves])
                # conformal: alpha - 1/(n+1) <= E[rate] <= alpha; allow 3.5 binomial sds for the fresh sample
                assert alpha - 1 / (n + 1) - 3.5 * sd <= rate <= alpha + 3.5 * sd, (kind, alpha, h, rate)

def test_too_few_calibration_successes_give_no_alarms_and_a_warning(tmp_path):
    model, data, sp = fit(synthetic_store(mem(tmp_path, 's'), n_episodes=120, seed=4), epochs=2)
    two = np.flatnonzero(~data.failed & (data.meta['split'] == 'seen'))[:2]
    with pytest.warns(UserWarning, match='too few for alpha=0.1'):
        th = conformal_thresholds(model, data, two, [], alphas=[0.1])
    assert np.isinf(th.constant).all()

def test_splits_are_disjoint_and_unseen_tasks_never_train(tmp_path):
    data = load_signal_episodes(synthetic_store(mem(tmp_path, 's'), n_episodes=200, seed=5), HORIZONS)
    for seed in range(5):
        sp = split_episodes(data, FRACTIONS, seed=seed)
        sets = {k: set(v.tolist()) for k, v in sp.items()}
        names = list(sets)
        for i, a in enumerate(names):
            for b in names[i + 1:]: assert not sets[a] & sets[b], (a, b)
        assert set().union(*sets.values()) == set(range(data.n_episodes))
        unseen_tasks = set(data.meta['task'][data.meta['split'] == 'unseen'])
        assert unseen_tasks and set(data.meta['task'][sp['unseen']]) == unseen_tasks
        for name in ('train', 'val', 'calib', 'test'):
            assert not set(data.meta['task'][sp[name]]) & unseen_tasks, name
            assert data.failed[sp[name]].any() and (~data.failed[sp[name]]).any(), name   # stratified by outcome
    cfg = PredictorConfig(data.signal_names, HORIZONS, data.control_hz, window=4)
    with pytest.raises(PredictorError, match='seen tasks only'):
        train_predictor(data, np.r_[sp['train'], sp['unseen'][:1]], sp['val'], cfg, TrainConfig(epochs=1), progress=False)
    with pytest.raises(PredictorError, match='overlap'):
        train_predictor(data, sp['train'], sp['train'][:3], cfg, TrainConfig(epochs=1), progress=False)
    model, _ = train_predictor(data, sp['train'], sp['val'], cfg, TrainConfig(epochs=1), progress=False)
    with pytest.raises(PredictorError, match='seen-task episodes only'):
        conformal_thresholds(model, data, sp['unseen'], sp['val'], [0.1])

def test_labels_follow_the_failure_step(tmp_path):
    data = load_signal_episodes(synthetic_store(mem(tmp_path, 's'), n_episodes=30, seed=6), HORIZONS)
    assert data.horizons == [2, 5, 10, 20]
    np.testing.assert_array_equal(data.labels[..., -1], data.labels[..., :-1].max(-1))
    for e in range(data.n_episodes):
        y = data.subset([e]).labels[:, :, -1]
        if not data.failed[e]: assert not y.any()
        else:
            T = data.lengths[e]
            for j, h in enumerate(data.horizons): assert y[:, j].sum() == min(h, T) and y[-min(h, T):, j].all()

@pytest.mark.parametrize('episode_output', [False, True])
@pytest.mark.parametrize('arch', ARCHITECTURES)
def test_streaming_matches_batch_and_checkpoint_round_trips(tmp_path, arch, episode_output):
    model, data, sp = fit(synthetic_store(mem(tmp_path, 's'), n_episodes=60, seed=7), arch, epochs=3, episode_output=episode_output)
    fit_temperature(model, data, sp['val'])
    two = data.subset(sp['test'][:2])
    stream = PredictorStream(model, n_envs=2)
    a, b = two.subset([0]).signals, two.subset([1]).signals
    T = min(len(a), len(b))
    steps = [stream.step_all(np.stack([a[t], b[t]])) for t in range(T)]
    streamed = np.stack([h for h, _ in steps], 1)  # (2, T, H, K+1)
    for i in range(2):
        horizon, episode = model.predict_episodes_all(two.subset([i]))
        np.testing.assert_allclose(streamed[i], horizon[:T], atol=1e-6)
        if episode_output: np.testing.assert_allclose(np.stack([e for _, e in steps], 1)[i], episode[:T], atol=1e-6)
        else: assert episode is None and steps[0][1] is None
    stream.reset(np.array([True, False]))
    np.testing.assert_allclose(stream.step(np.stack([a[0], b[T]]))[0], streamed[0, 0], atol=1e-6)
    save_predictor(model, tmp_path/'ckpt')
    again = load_predictor(tmp_path/'ckpt')
    for x, y in zip(again.predict_episodes_all(two), model.predict_episodes_all(two)): np.testing.assert_array_equal(x, y)
    assert again.config == model.config
    th = conformal_thresholds(model, data, sp['calib'], sp['val'], [0.1, 0.2])
    th.save(tmp_path/'th.json')
    back = ConformalThresholds.load(tmp_path/'th.json')
    np.testing.assert_array_equal(back.constant, th.constant)
    np.testing.assert_array_equal(back.threshold(0.1, np.arange(5), 'functional'), th.threshold(0.1, np.arange(5), 'functional'))

def test_ranking_metrics_match_scikit_learn():
    rng = np.random.default_rng(0)
    for trial in range(20):
        n = int(rng.integers(5, 300))
        y = rng.random(n) < rng.uniform(0.1, 0.9)
        if y.all() or not y.any(): y[0] = not y[0]
        s = rng.normal(size=n) + y * rng.uniform(0, 2)
        if trial % 2: s = np.round(s, 1)  # ties
        assert roc_auc(s, y) == pytest.approx(roc_auc_score(y, s), abs=1e-12)
        assert average_precision(s, y) == pytest.approx(average_precision_score(y, s), abs=1e-12)
    with pytest.raises(ValueError, match='one class only'): roc_auc([0.1, 0.2], [0, 0])
    with pytest.raises(ValueError, match='non-finite'): average_precision([np.nan, 0.2], [0, 1])

def test_bad_input_is_named(tmp_path):
    store = synthetic_store(mem(tmp_path, 's'), n_episodes=20, seed=8)
    with pytest.raises(PredictorError, match=r"no signal\(s\) \['vibes'\]"): load_signal_episodes(store, HORIZONS, ['vibes'])
    with pytest.raises(ValueError, match='horizons must be positive'): load_signal_episodes(store, [0.5, -1])
    bare = EpisodeStore.create(tmp_path/'bare.zarr', StoreSchema(data={'x': ((2,), 'float32')}, meta={'task': 'str'}))
    bare.append_episode({'x': np.zeros((3, 2), np.float32)}, {'task': 'a'})
    with pytest.raises(PredictorError, match='not a rollout store with signals'): load_signal_episodes(bare, HORIZONS)
    with pytest.raises(StoreError, match='no episode store here'): load_signal_episodes(tmp_path/'nothing.zarr', HORIZONS)
    data = load_signal_episodes(store, HORIZONS)
    with pytest.raises(PredictorError, match="'unseen' is not a split"): split_episodes(data, {'train': 1, 'unseen': 1}, 0)
    model = train_predictor(data, split_episodes(data, FRACTIONS, 0)['train'], [],
                            PredictorConfig(data.signal_names, HORIZONS, 10, window=4), TrainConfig(epochs=1), progress=False)[0]
    with pytest.raises(PredictorError, match=r'\(B, 4, 3\)'): model.predict_proba(np.zeros((2, 5, 3)))
    with pytest.raises(PredictorError, match=r"non-finite value at index \[0, 0, 1\] \(signal 'noise_a'\)"):
        model.predict_proba(np.where(np.arange(3) == 1, np.inf, 0.0) * np.ones((1, 4, 3)))
    with pytest.raises(PredictorError, match='non-finite'): PredictorStream(model).step(np.array([[0, np.nan, 0]]))
    with pytest.raises(PredictorError, match='unknown architecture'): PredictorConfig(['a'], HORIZONS, 10, arch='transformer')
    with pytest.raises(FileNotFoundError, match='not a predictor checkpoint'): load_predictor(tmp_path)
    with pytest.raises(PredictorError, match='no thresholds for alpha=0.3'):
        ConformalThresholds([0.1], HORIZONS, ['any'], np.zeros((1, 4, 1)), np.zeros((2, 4, 1)), np.ones((2, 4, 1)),
                            np.zeros((1, 4, 1)), 1).threshold(0.3)

def test_windows_repeat_the_first_step_and_stay_inside_the_episode():
    x = np.arange(7, dtype=np.float32)[:, None]
    w = signal_windows(x, np.array([3, 7]), 2)[..., 0]
    np.testing.assert_array_equal(w, [[0, 0], [0, 1], [1, 2], [3, 3], [3, 4], [4, 5], [5, 6]])

def test_thresholds_arrays_must_fit_their_alphas_and_outputs(tmp_path):
    z = lambda *s: np.zeros(s)
    with pytest.raises(PredictorError, match=r'constant must be \(alphas=2, horizons=4, outputs=1\) = \(2, 4, 1\), got \(1, 4, 1\)'):
        ConformalThresholds([0.1, 0.2], HORIZONS, ['any'], z(1, 4, 1), z(2, 4, 1), z(2, 4, 1), z(2, 4, 1), 1)
    with pytest.raises(PredictorError, match=r'band_scale must be .* = \(1, 4, 2\), got \(1, 4, 1\)'):
        ConformalThresholds([0.1], HORIZONS, ['collision', 'any'], z(1, 4, 2), z(2, 4, 2), z(2, 4, 2), z(1, 4, 1), 1)
    with pytest.raises(PredictorError, match=r'band_mean and band_std must be \(L ≥ 1, 4, 1\), got \(2, 3, 1\) and \(2, 4, 1\)'):
        ConformalThresholds([0.1], HORIZONS, ['any'], z(1, 4, 1), z(2, 3, 1), z(2, 4, 1), z(1, 4, 1), 1)
    with pytest.raises(PredictorError, match=r'alphas must be in \(0, 1\), got \[1.5\]'):
        ConformalThresholds([1.5], HORIZONS, ['any'], z(1, 4, 1), z(2, 4, 1), z(2, 4, 1), z(1, 4, 1), 1)
    good = ConformalThresholds([0.1], HORIZONS, ['any'], z(1, 4, 1), z(2, 4, 1), z(2, 4, 1), z(1, 4, 1), 1)
    good.save(tmp_path/'th.json')
    d = json.loads((tmp_path/'th.json').read_text())
    json.dump({**d, 'alphas': [0.1, 0.2]}, (tmp_path/'bad.json').open('w'))
    with pytest.raises(PredictorError, match=r'bad\.json: .*constant must be \(alphas=2'): ConformalThresholds.load(tmp_path/'bad.json')
    json.dump({k: v for k, v in d.items() if k != 'band_std'}, (tmp_path/'short.json').open('w'))
    with pytest.raises(PredictorError, match=r"short\.json: not a thresholds file; missing \['band_std'\]"): ConformalThresholds.load(tmp_path/'short.json')
    with pytest.raises(PredictorError, match=r'no thresholds for alpha=0.3; calibrated for \[0.1\]'): good.threshold(0.3)

def test_signal_episodes_refuse_names_dtypes_and_values_that_do_not_fit(tmp_path):
    from dataclasses import replace
    data = load_signal_episodes(synthetic_store(mem(tmp_path, 's'), n_episodes=10, seed=9), HORIZONS)
    with pytest.raises(PredictorError, match='3 signal columns but 2 signal_names'): replace(data, signal_names=data.signal_names[:2])
    with pytest.raises(PredictorError, match='3 signal columns but 4 signal_names'): replace(data, signal_names=data.signal_names + ['x'])
    with pytest.raises(PredictorError, match='signals must be floating point, got int16'): replace(data, signals=data.signals.astype(np.int16))
    bad = data.signals.copy(); bad[5, 2] = np.nan
    with pytest.raises(PredictorError, match=r"signals: non-finite value nan at index \[5, 2\]"): replace(data, signals=bad)
    with pytest.raises(PredictorError, match=r'labels must be \(N=\d+, H=4, K\+1=\d+\)'): replace(data, labels=data.labels[:, :2])
    store = EpisodeStore.create(mem(tmp_path, 'int'), StoreSchema(data={'signals': ((3,), 'int16')},
                                meta={'task': 'str', 'split': 'str', 'outcome': 'str', 'failure_type': 'str', 'failure_step': 'int64'}),
                                dict(signal_names=['a', 'b', 'c'], control_hz=10))
    store.append_episode({'signals': np.ones((4, 3), np.int16)}, dict(task='t', split='seen', outcome='success', failure_type='', failure_step=-1))
    with pytest.raises(PredictorError, match=r'data/signals must be floating point, got int16'): load_signal_episodes(store, HORIZONS)

def test_training_stops_at_a_non_finite_loss(tmp_path):
    "A diverging run (here: a far too large learning rate) fails at the first non-finite loss instead of returning NaN weights."
    data = load_signal_episodes(synthetic_store(mem(tmp_path, 's'), n_episodes=30, seed=6), HORIZONS)
    sp = split_episodes(data, {'train': 0.6, 'val': 0.4}, 0)
    cfg = PredictorConfig(data.signal_names, HORIZONS, data.control_hz, window=4)
    with pytest.raises(FloatingPointError, match=r'non-finite training loss \((nan|inf)\) at epoch 0, batch [1-9]\d*: check the inputs .* or lower lr \(1e\+10\)'):
        train_predictor(data, sp['train'], sp['val'], cfg, TrainConfig(epochs=3, lr=1e10, batch_size=64), progress=False)

def test_train_config_refuses_values_training_cannot_use():
    for bad, message in [(dict(batch_size=0), 'TrainConfig.batch_size must be ≥ 1, got 0'), (dict(lr=0.0), 'TrainConfig.lr must be finite and > 0'),
                         (dict(epochs=0), 'TrainConfig.epochs must be ≥ 1'), (dict(weight_decay=-1.0), 'TrainConfig.weight_decay must be finite and ≥ 0')]:
        with pytest.raises(PredictorError, match=re.escape(message)): TrainConfig(**bad)

def task_dependent_episodes(n=240, seed=0) -> SignalEpisodes:
    "Episodes of 4 tasks whose failure shows as a high signal in two tasks and a low one in the other two: ambiguous without the task."
    rng = np.random.default_rng(seed)
    tasks = {'lift the red cube': 0.0, 'open the drawer': 0.0, 'push the blue block to the marker': 2.0, 'stack the red cube on the blue one': 2.0}
    names = list(tasks)
    signals, ends, meta = [], [], {k: [] for k in ('split', 'task', 'instruction', 'outcome', 'failure_type', 'failure_step')}
    for e in range(n):
        instruction, T, failed = names[e % 4], int(rng.integers(20, 31)), bool(rng.random() < 0.5)
        base = tasks[instruction]
        level = base + (2.0 if base == 0 else -2.0) * failed
        signals.append(np.c_[level + 0.3 * rng.normal(size=T), rng.normal(size=T)].astype(np.float32))
        ends.append(sum(len(s) for s in signals))
        for k, v in dict(split='seen', task=f'task{e % 4}', instruction=instruction, outcome='failure' if failed else 'success',
                         failure_type='', failure_step=T if failed else -1).items(): meta[k].append(v)
    x, ends = np.concatenate(signals), np.asarray(ends, np.int64)
    horizons = [2, 5]
    labels = np.zeros((len(x), len(horizons), 1), np.uint8)
    for s, end, outcome in zip(np.r_[0, ends[:-1]], ends, meta['outcome']):
        if outcome == 'success': continue
        lead = (end - s) - np.arange(end - s)
        for j, h in enumerate(horizons): labels[s:end, j, 0] = lead <= h
    meta = {k: np.asarray(v, dtype=np.int64 if k == 'failure_step' else object) for k, v in meta.items()}
    return SignalEpisodes(x, labels, ends, meta, ['s0', 's1'], [0.2, 0.5], horizons, 10.0, [], np.arange(n))

def test_task_context_resolves_a_task_dependent_failure_and_streams_exactly(tmp_path):
    "With the instruction's principal components as inputs the predictor separates what the signals alone cannot; streaming = batch."
    from salus.language import instruction_encoder
    data = task_dependent_episodes().with_context(instruction_encoder())
    assert data.context.shape == (data.n_episodes, 384) and data.subset([3, 1]).context.shape == (2, 384)
    sp = split_episodes(data, FRACTIONS, seed=0)
    test = data.subset(sp['test'])
    aucs, models = {}, {}
    for k in (0, 2):
        cfg = PredictorConfig(data.signal_names, [0.2, 0.5], 10.0, failure_types=[], window=4, episode_output=True, task_context=k)
        model, _ = train_predictor(data, sp['train'], sp['val'], cfg, TrainConfig(epochs=25, seed=0), progress=False)
        fit_temperature(model, data, sp['val'])
        episode = model.predict_episodes_all(test)[1][:, -1]
        aucs[k], models[k] = roc_auc(episode[test.episode_ends - 1], test.failed), model
    assert aucs[2] > 0.9 and aucs[0] < 0.75, aucs
    model = models[2]
    assert model.config.input_names == ['s0', 's1', 'task_pc0', 'task_pc1']
    training = np.unique(data.subset(sp['train']).context, axis=0)   # the basis comes from the training instructions only
    np.testing.assert_allclose(model.context_mean.numpy(), training.mean(0), atol=1e-6)
    two = test.subset([0, 1])
    stream = PredictorStream(model, n_envs=2)
    a, b = two.subset([0]).signals, two.subset([1]).signals
    T = min(len(a), len(b))
    steps = [stream.step_all(np.stack([a[t], b[t]]), two.context if t == 0 else None) for t in range(T)]   # the task is read at the start
    for i in range(2):
        horizon, episode = model.predict_episodes_all(two.subset([i]))
        np.testing.assert_allclose(np.stack([h for h, _ in steps], 1)[i], horizon[:T], atol=1e-6)
        np.testing.assert_allclose(np.stack([e for _, e in steps], 1)[i], episode[:T], atol=1e-6)
    save_predictor(model, tmp_path/'ckpt')
    again = load_predictor(tmp_path/'ckpt')
    for x, y in zip(again.predict_episodes_all(two), model.predict_episodes_all(two)): np.testing.assert_array_equal(x, y)
    # what it needs and does not get is named
    with pytest.raises(PredictorError, match='instruction embeddings'): model.predict_episodes(replace(two, context=None))
    with pytest.raises(PredictorError, match='task context'): PredictorStream(model, 2).step(np.stack([a[0], b[0]]))
    with pytest.raises(PredictorError, match='no task context'): PredictorStream(models[0], 2).step(np.stack([a[0], b[0]]), two.context)
    with pytest.raises(PredictorError, match='distinct training instructions'):
        train_predictor(data, sp['train'][data.meta['task'][sp['train']] == 'task0'], [], replace(model.config, task_context=2),
                        TrainConfig(epochs=1), progress=False)
    with pytest.raises(PredictorError, match='meta'): replace(two, meta={k: v for k, v in two.meta.items() if k != 'instruction'}).with_context(instruction_encoder())
    with pytest.raises(PredictorError, match='context must be'): replace(two, context=np.zeros((3, 384), np.float32))
    with pytest.raises(PredictorError, match='shape'): two.with_context(lambda texts: np.zeros((len(texts) - 1, 384)))
    with pytest.raises(PredictorError, match='not fitted'): FailurePredictor(model.config).task_coordinates(two.context)
    with pytest.raises(PredictorError, match='float array'): PredictorStream(model, 2).step(np.stack([a[0], b[0]]), ['lift', 'open'])

def test_the_predictor_group_builds_the_library_configs():
    "One place turns `params.predictor` into `TrainConfig` / `PredictorConfig` (stages 40, 50 and 55 all call it)."
    from salus.params import load_params
    from conftest import REPO
    p = load_params(REPO/'params.yaml', profile='smoke').predictor
    assert TrainConfig.from_params(p, seed=7) == TrainConfig(epochs=p.epochs, patience=p.patience, batch_size=p.batch_size,
                                                             lr=p.lr, weight_decay=p.weight_decay, seed=7)
    cfg = PredictorConfig.from_params(p, ['a', 'b'], 10, arch='gru')
    assert (cfg.horizons_s, cfg.window, cfg.hidden, cfg.dropout, cfg.episode_output, cfg.arch) == \
           (p.horizons_s, p.window, p.hidden, p.dropout, p.episode_output, 'gru')
    assert PredictorConfig.from_params(p, ['a'], 4.0, horizons_s=[1.0, 2.0], failure_types=[]).failure_types == []
