"""Evaluation metrics agree with scikit-learn, refuse undefined cases, and every scorer is fitted, thresholded and scored
on the same episodes; on a store with known structure the learned baselines find it."""
from dataclasses import replace

import numpy as np
import pytest
from sklearn.metrics import balanced_accuracy_score, f1_score, precision_recall_curve, precision_recall_fscore_support
from sklearn.metrics import roc_curve as sk_roc_curve

from salus.data import EpisodeStore, StoreSchema
from salus.evaluate import (BASELINES, ElapsedScorer, ElapsedTaskPriorScorer, EpisodeScores, EvalData, EvaluationError, LogRegScorer,
                            EvaluationPlan, NoveltyReference, RNDScorer, SafeMLPScorer, SafeScorer, SalusScorer, ScorerFactory, SignalScorer,
                            TaskPriorScorer, Unit, score_units, early_detection_auc,
                            balanced_accuracy, best_f1_threshold, check_novelty, crossfit_splits, episode_metrics, evaluate_seeds,
                            heldout_task_splits, load_eval_data, make_baselines, metrics_json, precision_recall_f1, refit_novelty,
                            results_table, roc_curve, score_crossfit, score_seed, step_metrics)
from salus.predictor import PredictorConfig, TrainConfig, split_episodes, train_predictor
from salus.synthetic import synthetic_signal_episodes, synthetic_store

HORIZONS = [0.5, 1.0, 2.0]
NAMES = ['h0.5s', 'h1s', 'h2s']
FRACTIONS = {'train': 0.5, 'val': 0.2, 'calib': 0.15, 'test': 0.15}

def test_thresholded_metrics_match_scikit_learn():
    rng = np.random.default_rng(0)
    for _ in range(30):
        n = int(rng.integers(4, 200))
        y = rng.random(n) < rng.uniform(0.1, 0.9)
        y[:2] = [True, False]
        pred = rng.random(n) < rng.uniform(0, 1)
        p, r, f, _ = precision_recall_fscore_support(y, pred, average='binary', zero_division=0)
        assert precision_recall_f1(pred, y) == pytest.approx((p, r, f), abs=1e-12)
        assert balanced_accuracy(pred, y)[2] == pytest.approx(balanced_accuracy_score(y, pred), abs=1e-12)
        s = np.round(rng.normal(size=n) + y, 1)  # with ties
        thr = best_f1_threshold(s, y)
        prec, rec, _ = precision_recall_curve(y, s)
        best = np.nanmax(np.where(prec + rec > 0, 2 * prec * rec / np.maximum(prec + rec, 1e-300), 0))
        assert f1_score(y, s >= thr) == pytest.approx(best, abs=1e-12)

def test_roc_curve_matches_scikit_learn():
    rng = np.random.default_rng(2)
    for _ in range(30):
        n = int(rng.integers(3, 300))
        y = rng.random(n) < rng.uniform(0.1, 0.9)
        if y.all() or not y.any(): y[0] = not y[0]
        s = np.round(rng.normal(size=n) + y, 1)                       # ties
        fpr, tpr = roc_curve(s, y)
        ref_fpr, ref_tpr, _ = sk_roc_curve(y, s, drop_intermediate=False)
        assert np.allclose(fpr, ref_fpr) and np.allclose(tpr, ref_tpr)
        thin = roc_curve(s, y, max_points=5)
        assert len(thin[0]) <= 6 and (thin[0][0], thin[1][0], thin[0][-1], thin[1][-1]) == (0, 0, 1, 1)
    with pytest.raises(EvaluationError, match='one class only'): roc_curve([0.1, 0.2], [True, True])
    with pytest.raises(EvaluationError, match='2 scores, 3 labels'): roc_curve([0.1, 0.2], [True, False, True])

def test_undefined_metrics_raise_instead_of_nan():
    with pytest.raises(EvaluationError, match='one class only'): balanced_accuracy([True, False], [True, True])
    with pytest.raises(EvaluationError, match='no samples'): precision_recall_f1([], [])
    with pytest.raises(EvaluationError, match='no positive labels'): precision_recall_f1([True], [False])
    with pytest.raises(EvaluationError, match='2 predictions but 3 labels'): balanced_accuracy([1, 0], [1, 0, 1])
    with pytest.raises(EvaluationError, match='no positive validation steps'): best_f1_threshold([0.1, 0.2], [0, 0])
    empty = EpisodeScores(np.zeros((0, 1)), np.zeros((0, 1), bool), np.zeros(0, np.int64), np.zeros(0, bool), np.zeros(0, np.int64), 10)
    with pytest.raises(EvaluationError, match='no episodes'): episode_metrics(empty, {0.1: 0.5})
    with pytest.raises(EvaluationError, match='non-finite'):
        EpisodeScores(np.array([[np.nan]]), np.zeros((1, 1), bool), np.array([1]), np.array([False]), np.array([-1]), 10)
    one_class = EpisodeScores(np.array([[0.1], [0.9]]), np.array([[0], [1]], bool), np.array([1, 2]), np.array([True, True]), np.array([1, 1]), 10)
    m = episode_metrics(one_class, {0.1: 0.5})
    assert m['roc_auc'] is None and m['balanced_accuracy_alpha_0.1'] is None and m['tpr_alpha_0.1'] == 0.5
    no_positive_steps = step_metrics(EpisodeScores(np.array([[0.1], [0.9]]), np.zeros((2, 1), bool), np.array([2]), np.array([False]),
                                                   np.array([-1]), 10), np.array([0.5]), ['h1s'])
    assert no_positive_steps == {'h1s': dict(auroc=None, auprc=None, precision=None, recall=None, f1=None, false_alarms_per_success=1.0)}

def test_episode_protocol_running_max_alarms_and_lead_time():
    # two failures (fail at their last step + 1), two successes; threshold 0.5
    scores = np.array([.1, .6, .2, .1,   .1, .1, .1,   .9, .1, .1,   .2, .2, .7, .1, .1])[:, None]
    ends = np.array([4, 7, 10, 15])
    es = EpisodeScores(scores, np.zeros_like(scores, bool), ends, np.array([True, False, False, True]), np.array([4, -1, -1, 5]), 10)
    np.testing.assert_array_equal(es.episode_max(), [.6, .1, .9, .7])
    np.testing.assert_array_equal(es.first_alarm(0.5), [1, -1, 0, 2])
    m = episode_metrics(es, {0.2: 0.5})
    assert (m['tpr_alpha_0.2'], m['tnr_alpha_0.2'], m['balanced_accuracy_alpha_0.2']) == (1.0, 0.5, 0.75)
    assert m['lead_time_s_median_alpha_0.2'] == pytest.approx(np.median([(4 - 1) / 10, (5 - 2) / 10]))
    assert m['detection_time_norm_median_alpha_0.2'] == pytest.approx(np.median([1 / 4, 2 / 5]))
    assert m['roc_auc'] == 0.5 and m['n_episodes'] == 4 and m['n_failures'] == 2
    typed = EpisodeScores(scores, np.zeros_like(scores, bool), ends, es.failed, es.failure_step, 10, np.array(['drop', '', '', 'miss'], dtype=object))
    assert episode_metrics(typed, {0.2: 0.75})['tpr_alpha_0.2_by_type'] == {'drop': 0.0, 'miss': 0.0}
    assert episode_metrics(typed, {0.2: 0.65})['tpr_alpha_0.2_by_type'] == {'drop': 0.0, 'miss': 1.0}
    # step level: the score crosses 0.5 upwards once in the success that peaks at 0.9, never in the other
    steps = step_metrics(EpisodeScores(scores, (scores > 0.5), ends, es.failed, es.failure_step, 10), np.array([0.5]), ['h'])
    assert steps['h']['false_alarms_per_success'] == 0.5

def store_with_embeddings(path, seed, structure=True):
    "The predictor's synthetic episodes, plus 16-d embeddings that drift before the failures that show the signal rise."
    rng = np.random.default_rng(seed + 100)
    schema = StoreSchema(data={'signals': ((3,), 'float32'), 'embedding': ((16,), 'float32')},
                         meta={'task': 'str', 'split': 'str', 'outcome': 'str', 'failure_type': 'str', 'failure_step': 'int64'})
    store = EpisodeStore.create(path, schema, dict(signal_names=['disagreement', 'noise_a', 'noise_b'], control_hz=10, budget_steps=60))
    for data, meta in synthetic_signal_episodes(n_episodes=200, structure=structure, seed=seed):
        x = data['signals']
        emb = rng.normal(size=(len(x), 16)).astype(np.float32)
        if structure and meta['outcome'] == 'failure': emb[:, :4] += 1.5  # failing episodes live elsewhere in feature space
        store.append_episode({'signals': x, 'embedding': emb}, meta)
    return store

@pytest.fixture(scope='module')
def scored_seeds(tmp_path_factory):
    data = load_eval_data(store_with_embeddings(tmp_path_factory.mktemp('ev')/'s.zarr', seed=1), HORIZONS)
    out = []
    for seed in range(2):
        sp = split_episodes(data.episodes, FRACTIONS, seed=seed)
        cfg = PredictorConfig(data.episodes.signal_names, HORIZONS, 10.0, window=8)
        model, _ = train_predictor(data.episodes, sp['train'], sp['val'], cfg, TrainConfig(epochs=15, seed=seed), progress=False)
        scorers = [SalusScorer(model), SignalScorer('disagreement'), SignalScorer('noise_a'), LogRegScorer(),
                   RNDScorer(epochs=10), SafeMLPScorer(epochs=15), SafeScorer(epochs=30), ElapsedScorer(), TaskPriorScorer(),
                   ElapsedTaskPriorScorer()]
        out.append([score_seed(data, sp, s, [0.1, 0.2], seed) for s in scorers])
    return data, out

def test_every_scorer_sees_the_same_episodes(scored_seeds):
    data, scored = scored_seeds
    for seed_scores in scored:
        ref = seed_scores[0].splits
        assert set(ref) == {'seen', 'unseen'}
        for s in seed_scores:
            for split, es in s.splits.items():
                np.testing.assert_array_equal(es.episode_ends, ref[split].episode_ends)
                np.testing.assert_array_equal(es.ids, ref[split].ids)
                np.testing.assert_array_equal(es.failed, ref[split].failed)
                assert es.scores.shape == (ref[split].episode_ends[-1], len(HORIZONS)) and np.isfinite(es.scores).all()
                assert set(es.conformal) == {0.1, 0.2} and es.step_thresholds.shape == (es.n_episodes, len(HORIZONS))
            assert set(s.conformal) == {0.1, 0.2}
    assert scored[0][0].splits['seen'].n_episodes != 0

def test_learned_baselines_find_the_structure(scored_seeds):
    _, scored = scored_seeds
    metrics = metrics_json(evaluate_seeds(scored, NAMES, bootstrap=20, progress=False, main_alpha=0.1, paired_horizon='h1s',
                                          paired_metrics=('q_auc_0.25', 'q_auc_1', 'roc_auc')))
    ep = metrics['episode']['seen']
    assert ep['salus']['roc_auc'] > 0.75 and ep['logreg']['roc_auc'] > 0.7
    assert ep['safe_mlp']['q_auc_0.25'] > 0.75 and ep['safe']['q_auc_0.25'] > 0.75   # the embedding separates failing episodes from the start
    assert ep['noise_a']['roc_auc'] < 0.75
    assert ep['elapsed']['q_auc_0.25_survivors'] == 0.5                                 # length-free by construction
    for scorer in ep:
        for key in ('roc_auc', 'pr_auc', 'q_auc_0.25', 'q_auc_0.25_macro', 'q_auc_0.25_survivors', 'q_auc_0.25_taskmax', 'q_auc_1',
                    'balanced_accuracy_alpha_0.1', 'f1_alpha_0.2', 'tpr_alpha_0.1', 'tnr_alpha_0.1', 'detection_time_safe_alpha_0.1',
                    'detection_time_norm_median', 'lead_time_s_median', 'n_episodes', 'n_failures'):
            assert key in ep[scorer], (scorer, key)
        lo, hi = ep[scorer]['roc_auc_ci']
        assert lo <= ep[scorer]['roc_auc'] <= hi
        for h in NAMES: assert set(metrics['step']['seen'][scorer][h]) >= {'auroc', 'auprc', 'f1', 'precision', 'recall', 'auroc_ci'}
    paired = metrics['paired']['seen']
    assert set(paired) == set(ep) - {'salus'} and set(paired['noise_a']) == {'q_auc_0.25', 'q_auc_1', 'roc_auc', 'step_auroc_h1s'}
    d, lo, hi = paired['noise_a']['roc_auc']
    assert lo <= d <= hi and lo > 0                                                      # SALUS beats noise on the same resamples
    table = results_table(metrics, 'seen', 'h1s')
    assert table.splitlines()[2].startswith('| **salus** |') and len(table.splitlines()) == 2 + len(ep)
    assert '*elapsed* (control)' in table
    only_failures = {'episode': {'unseen': {'salus': {'n_episodes': 9.0, 'n_failures': 9.0, 'tpr_alpha_0.1': 0.4, 'roc_auc': None}}},
                     'step': {'unseen': {'salus': {'h1s': {'auroc': 0.7}}}}}
    unseen = results_table(only_failures, 'unseen', 'h1s').splitlines()
    assert unseen[0].startswith('| scorer | alarm rate on failures') and unseen[2].startswith('| **salus** | 0.400 | – | 0.700')   # no ranking

def test_controls_and_oriented_signals(tmp_path):
    data = load_eval_data(store_with_embeddings(tmp_path/'s.zarr', seed=4), HORIZONS)
    e = data.episodes
    sp = split_episodes(e, FRACTIONS, seed=0)
    elapsed = ElapsedScorer().score(data, sp['test'][:2])[:, 0]
    np.testing.assert_array_equal(elapsed, np.r_[np.arange(e.lengths[sp['test'][0]]), np.arange(e.lengths[sp['test'][1]])])
    prior = TaskPriorScorer().fit(data, sp['train'], sp['val'])
    task = np.asarray(e.meta['task'])
    for t, rate in prior.rates.items(): assert rate == e.failed[sp['train']][task[sp['train']] == t].mean()
    assert 'unseen_task0' not in prior.rates                                         # an unseen task gets the overall training rate
    assert prior.prior(data, np.flatnonzero(task == 'unseen_task0'))[0] == e.failed[sp['train']].mean()
    # a signal higher in failing episodes from their first step (the embedding's shifted dimension), and its negative
    early = lambda sign: EvalData(replace(e, signals=np.c_[sign * data.embeddings[:, 0], e.signals[:, 1:]].astype(np.float32)), data.embeddings, data.budget)
    up, down = SignalScorer('disagreement').fit(early(1), sp['train'], sp['val']), SignalScorer('disagreement').fit(early(-1), sp['train'], sp['val'])
    assert (up.sign, down.sign) == (1.0, -1.0)                                        # oriented on the training episodes
    np.testing.assert_allclose(up.score(early(1), sp['test']), down.score(early(-1), sp['test']))
    safe = SafeScorer(epochs=5).fit(data, sp['train'], sp['val'])
    s = safe.score(data, sp['test'][:3])[:, 0]
    for part in np.split(s, np.cumsum(e.lengths[sp['test'][:3]])[:-1]): assert (np.diff(part) >= 0).all()   # a cumulative score

def test_crossfitting_scores_every_seen_episode_once(tmp_path):
    data = load_eval_data(store_with_embeddings(tmp_path/'s.zarr', seed=5), HORIZONS)
    e = data.episodes
    folds = crossfit_splits(e, 3, {'train': 0.6, 'val': 0.2, 'calib': 0.2}, seed=0)
    seen = np.flatnonzero(e.meta['split'] == 'seen')
    np.testing.assert_array_equal(np.sort(np.concatenate([f['test'] for f in folds])), seen)     # a partition of the seen episodes
    task = np.asarray(e.meta['task'])
    for f in folds:
        fitted = np.r_[f['train'], f['val'], f['calib']]
        assert not np.isin(f['test'], fitted).any() and set(np.r_[fitted, f['test']]) == set(seen)
        for t in set(task[seen]):                                                         # stratified by task and outcome
            for y in (False, True):
                n = ((task[seen] == t) & (e.failed[seen] == y)).sum()
                assert abs(((task[f['test']] == t) & (e.failed[f['test']] == y)).sum() - n / 3) <= 1
    make = lambda: [SignalScorer('disagreement'), LogRegScorer()]
    scored = score_crossfit(data, folds, make, [0.1], seed=0)
    np.testing.assert_array_equal(np.sort(scored[1].splits['seen'].ids), e.episode_ids[seen])
    assert len({tuple(f) for f in scored[1].splits['seen'].step_thresholds}) > 1          # each fold's own thresholds
    with pytest.raises(EvaluationError, match='k ≥ 2'): crossfit_splits(e, 1, {'train': 1.0, 'calib': 0.1}, 0)

def novelty_store(path, perturb_withheld:bool):
    "Synthetic episodes whose novelty signals are computed against a reference of per-task 'demonstration' embeddings."
    rng = np.random.default_rng(11)
    offsets = {f'seen_task{i}': rng.normal(0, 2, 16) for i in range(4)} | {f'unseen_task{i}': rng.normal(0, 2, 16) for i in range(4)}
    ref_tasks = np.repeat([f'seen_task{i}' for i in range(4)], 40)
    ref = np.stack([rng.normal(size=16) + offsets[t] for t in ref_tasks])
    if perturb_withheld: ref[ref_tasks == 'seen_task0'] += 7.0
    reference = NoveltyReference(ref, ref_tasks, k=3)
    full = reference.fitted()
    schema = StoreSchema(data={'signals': ((3,), 'float32'), 'embedding': ((16,), 'float32')},
                         meta={'task': 'str', 'split': 'str', 'outcome': 'str', 'failure_type': 'str', 'failure_step': 'int64'})
    store = EpisodeStore.create(path, schema, dict(signal_names=['disagreement', 'knn_novelty', 'mahalanobis_novelty'], control_hz=10, budget_steps=60))
    for data, meta in synthetic_signal_episodes(n_episodes=200, seed=12):
        x = data['signals']
        emb = rng.normal(size=(len(x), 16)) + offsets[meta['task']] + (1.5 if meta['outcome'] == 'failure' else 0)
        if perturb_withheld and meta['task'] == 'seen_task0':   # anything about the withheld task may change ...
            x = x * 3 + 1; emb = emb - 4
            meta = dict(meta, outcome='success', failure_type='', failure_step=-1) if meta['outcome'] == 'failure' else meta
        signals = np.c_[x[:, 0], full.knn(emb), full.mahalanobis(emb)].astype(np.float32)
        store.append_episode({'signals': signals, 'embedding': emb.astype(np.float32)}, meta)
    return store, reference

def fitted_fold(path, perturb_withheld):
    "Every fitted object of one held-out-task fold (seen_task0 withheld), as arrays."
    store, reference = novelty_store(path, perturb_withheld)
    data = load_eval_data(store, HORIZONS)
    check_novelty(data, reference)                                  # the stored signals are the reference's
    data = refit_novelty(data, reference, ['seen_task1', 'seen_task2', 'seen_task3'])
    sp = heldout_task_splits(data.episodes, ['seen_task0'], {'train': 0.6, 'val': 0.2, 'calib': 0.2}, seed=0)
    salus = SalusScorer(config=PredictorConfig(data.episodes.signal_names, HORIZONS, 10.0, window=4), train_config=TrainConfig(epochs=4),
                        architectures=['mlp', 'conv'])
    scorers = [salus, LogRegScorer(), TaskPriorScorer(), SafeScorer(epochs=3), RNDScorer(epochs=2), SignalScorer('knn_novelty')]
    scored = [score_seed(data, sp, s, [0.1], 0, evaluated={'heldout': 'heldout'}) for s in scorers]
    fitted_rows = np.r_[sp['train'], sp['val'], sp['calib']]
    objects = {'split': np.sort(fitted_rows), 'novelty signals of fitted episodes': data.episodes.signals[data.steps(np.sort(fitted_rows))],
               'salus arch': np.array([ord(c) for c in salus.chosen['arch']]),
               **{f'salus {k}': v.numpy() for k, v in salus.model.state_dict().items()},
               **{f'logreg {h}': np.r_[m.coef_.ravel(), m.intercept_] for h, m in enumerate(scorers[1].models) if m is not None},
               'task prior': np.array(sorted(scorers[2].rates.items()), dtype=object)[:, 1].astype(float),
               **{f'safe {k}': v.numpy() for k, v in scorers[3].net.state_dict().items()},
               **{f'rnd {k}': v.numpy() for k, v in scorers[4].net.state_dict().items()},
               'knn sign': np.array([scorers[5].sign]),
               **{f'{s.scorer} thresholds': np.r_[s.step_thresholds, list(s.conformal.values())] for s in scored}}
    withheld_scores = scored[0].splits['heldout']
    return objects, withheld_scores, data, sp

def test_heldout_fold_fitted_objects_ignore_the_withheld_task(tmp_path):
    "SAFE's protocol without leakage: change everything about the withheld task (its episodes, outcomes and demonstration"
    "references) and every fitted object of the fold (novelty reference, normalisation, weights, architecture choice,"
    "thresholds) comes out bit for bit the same."
    a, scores_a, data, sp = fitted_fold(tmp_path/'a.zarr', perturb_withheld=False)
    b, scores_b, _, _ = fitted_fold(tmp_path/'b.zarr', perturb_withheld=True)
    assert set(a) == set(b)
    for k in a: np.testing.assert_array_equal(a[k], b[k], err_msg=k)
    task = np.asarray(data.episodes.meta['task'])
    assert set(task[sp['heldout']]) == {'seen_task0'} and 'seen_task0' not in set(task[np.r_[sp['train'], sp['val'], sp['calib']]])
    assert not np.array_equal(scores_a.scores, scores_b.scores)     # ... while the withheld task's own scores do change
    with pytest.raises(EvaluationError, match='differs from the store'):   # a reference that is not the collection's is refused
        check_novelty(data, NoveltyReference(np.random.default_rng(0).normal(size=(50, 16)), np.repeat(['seen_task1'], 50), 3))

def test_scoring_refuses_leaks_and_unknown_baselines(tmp_path):
    data = load_eval_data(store_with_embeddings(tmp_path/'s.zarr', seed=2), HORIZONS)
    sp = split_episodes(data.episodes, FRACTIONS, seed=0)
    bad = dict(sp, train=np.r_[sp['train'], sp['unseen'][:1]])
    with pytest.raises(EvaluationError, match='seen tasks'): score_seed(data, bad, SignalScorer('disagreement'), [0.1], 0)
    with pytest.raises(EvaluationError, match="unknown baseline"): make_baselines(['epistemic', 'oracle'], data.episodes.signal_names)
    with pytest.raises(EvaluationError, match="epistemic \\(needs epistemic\\)"): make_baselines(['epistemic'], data.episodes.signal_names)
    assert {'epistemic', 'stac', 'dispersion', 'knn', 'mahalanobis', 'rnd', 'safe', 'safe_mlp', 'logreg', 'elapsed', 'task_prior'} <= set(BASELINES)
    no_emb = EvalData(data.episodes, None, data.budget)
    with pytest.raises(EvaluationError, match='needs the VLA embeddings'): RNDScorer(epochs=1).fit(no_emb, sp['train'], sp['val'])
    with pytest.raises(EvaluationError, match='no step budget'): load_eval_data(synthetic_store(tmp_path/'nb.zarr', n_episodes=10), HORIZONS)

def test_salus_v2_chooses_architecture_and_readout_on_validation_and_ranks_episodes_by_it(tmp_path):
    "SALUS v2: one model per architecture; the (architecture, readout) kept is the best by the validation early-detection AUC,"
    "and the kept readout is the overall score every episode metric reads."
    data = load_eval_data(store_with_embeddings(tmp_path/'s.zarr', seed=4), HORIZONS)
    sp = split_episodes(data.episodes, FRACTIONS, seed=0)
    cfg = PredictorConfig(data.episodes.signal_names, HORIZONS, 10.0, window=8, episode_output=True)
    scorer = SalusScorer(config=cfg, train_config=TrainConfig(epochs=8), architectures=['mlp', 'conv'], readouts=['episode', 'horizon'],
                         select_by='pooled', q=1.0)   # these episodes' structure comes just before the failure: the whole budget
    r = score_seed(data, sp, scorer, [0.1], 0)
    val = r.info['val_pooled']
    assert set(val) == {'mlp/episode', 'mlp/horizon', 'conv/episode', 'conv/horizon'}
    assert val[f"{r.info['arch']}/{r.info['readout']}"] == max(val.values())
    horizon, episode = scorer.model.predict_episodes_all(data.episodes.subset(sp['val']))
    assert val[f"{r.info['arch']}/episode"] == pytest.approx(early_detection_auc(episode[:, -1].astype(np.float64), data, sp['val'], 1.0, by='pooled'))
    es = r.splits['seen']
    steps, overall = scorer.score(data, sp['test'])
    np.testing.assert_array_equal(es.scores, steps); np.testing.assert_array_equal(es.overall, overall)
    want = episode if r.info['readout'] == 'episode' else horizon[:, -1]
    np.testing.assert_allclose(scorer.score(data, sp['val'])[1], want[:, -1] if want.ndim == 2 else want, atol=1e-6)
    assert es.summary(qs=[0.25]).early['budget', 0.25].tolist() == es.subset(np.arange(es.n_episodes)).summary(qs=[0.25]).early['budget', 0.25].tolist()
    assert episode_metrics(es, qs=[1.0], main_alpha=0.1)['q_auc_1'] > 0.7   # the structure is found
    with pytest.raises(EvaluationError, match="needs a predictor with episode_output"):
        SalusScorer(config=replace(cfg, episode_output=False), readouts=['episode'], select_by='macro')
    with pytest.raises(EvaluationError, match="choosing a readout needs select_by"): SalusScorer(config=cfg, readouts=['episode', 'horizon'])
    with pytest.raises(EvaluationError, match="select_by must be one of"): SalusScorer(config=cfg, select_by='test')
    with pytest.raises(EvaluationError, match=r"overall scores \(3,\)"):
        EpisodeScores(np.zeros((2, 1)), np.zeros((2, 1), bool), np.array([2]), np.array([False]), np.array([-1]), 10, overall=np.zeros(3))

def test_heldout_task_folds_fit_without_the_withheld_task(tmp_path):
    "SAFE's protocol: SALUS is trained inside the fold like the baselines, never on the withheld task, and scores all of it."
    data = load_eval_data(store_with_embeddings(tmp_path/'s.zarr', seed=3), HORIZONS)
    task = data.episodes.meta['task']
    folds, units = [], []
    for f, withheld in enumerate(['seen_task0', 'seen_task1']):
        sp = heldout_task_splits(data.episodes, [withheld], FRACTIONS, seed=f)
        np.testing.assert_array_equal(sp['heldout'], np.flatnonzero(task == withheld))
        fitted = np.r_[sp['train'], sp['val'], sp['calib'], sp['test']]
        assert withheld not in set(task[fitted]) and set(task[fitted]) == {'seen_task0', 'seen_task1', 'seen_task2', 'seen_task3'} - {withheld}
        salus = SalusScorer(config=PredictorConfig(data.episodes.signal_names, HORIZONS, 10.0, window=8), train_config=TrainConfig(epochs=15))
        folds.append([score_seed(data, sp, s, [0.1], f, evaluated={'heldout': 'heldout'}) for s in (salus, SignalScorer('noise_a'))])
        units.append(Unit(0, 0, f))
        assert set(folds[-1][0].splits) == {'heldout'}
        train_signals = data.episodes.signals[data.steps(sp['train'])]   # SALUS was fitted on the fold's training episodes
        np.testing.assert_allclose(salus.model.centre.numpy(), np.median(train_signals, 0), rtol=1e-5)
        leak = dict(sp, train=np.r_[sp['train'], sp['heldout'][:1]])
        with pytest.raises(EvaluationError, match='share episodes'): score_seed(data, leak, SignalScorer('noise_a'), [0.1], 0, evaluated={'heldout': 'heldout'})
    ep = metrics_json(evaluate_seeds(folds, NAMES, bootstrap=10, progress=False, units=units))['episode']['heldout']
    assert ep['salus']['q_auc_1'] > 0.75 > ep['noise_a']['q_auc_1']       # trained in the fold, it transfers to the withheld task
    assert ep['salus']['n_episodes'] == np.mean([(task == t).sum() for t in ('seen_task0', 'seen_task1')])
    with pytest.raises(EvaluationError, match='not seen tasks'): heldout_task_splits(data.episodes, ['unseen_task0'], FRACTIONS, 0)
    with pytest.raises(EvaluationError, match='call fit'): SalusScorer(config=PredictorConfig(data.episodes.signal_names, HORIZONS, 10.0)).score(data, sp['heldout'])

def test_readme_shows_the_generated_results_table():
    from conftest import REPO
    from salus.report import sync_readme_results
    assert sync_readme_results(REPO/'README.md', REPO/'metrics/results.md', check=True), \
        "README's results table differs from metrics/results.md: run `make repro` (or salus.report.sync_readme_results())"

def test_units_scored_in_worker_processes_equal_the_serial_ones(tmp_path):
    "The evaluate stage's units in 2 spawned processes give the same scores and thresholds as in this process."
    store_with_embeddings(tmp_path/'s.zarr', seed=6)
    factory = ScorerFactory(PredictorConfig(['disagreement', 'noise_a', 'noise_b'], HORIZONS, 10.0, window=4), TrainConfig(epochs=3),
                            ['mlp'], ['elapsed', 'logreg', 'safe'])
    plan = EvaluationPlan([str(tmp_path/'s.zarr')], HORIZONS, factory, {'train': 0.6, 'val': 0.2, 'calib': 0.2}, [0.1], 2,
                          [['seen_task0']], [f'seen_task{i}' for i in range(4)])
    units = [('crossfit', 0, 0, 1, 2), ('heldout', 0, 0, 3, 4)]
    import torch
    threads = torch.get_num_threads()
    torch.set_num_threads(1)                                         # as the workers run
    try: serial = score_units(plan, units, workers=1, progress=False)
    finally: torch.set_num_threads(threads)
    parallel = score_units(plan, units, workers=2, progress=False)
    for a, b in zip(serial, parallel):
        assert [x.scorer for x in a] == [x.scorer for x in b] == ['salus', 'elapsed', 'logreg', 'safe']
        for x, y in zip(a, b):
            assert x.splits.keys() == y.splits.keys() and x.conformal == y.conformal
            for k in x.splits: np.testing.assert_array_equal(x.splits[k].scores, y.splits[k].scores)
    assert set(serial[1][0].splits) == {'heldout'} and set(serial[0][0].splits) == {'seen', 'unseen'}
    with pytest.raises(EvaluationError, match='unknown unit kind'): score_units(plan, [('loo', 0, 0, 1, 2)], progress=False)

def test_baseline_training_stops_at_a_non_finite_loss():
    "The SAFE baselines' shared training loop fails at the first non-finite loss, naming where, instead of keeping NaN weights."
    import torch
    from salus.evaluate import _train_early_stopped
    net = torch.nn.Linear(2, 1)
    x = torch.randn(8, 2); x[5] = float('nan')                       # one damaged input row
    with pytest.raises(FloatingPointError, match=r'non-finite training loss \(nan\) at epoch 0, batch 0'):
        _train_early_stopped(net, torch.optim.SGD(net.parameters(), lr=0.1), 8, lambda b: net(x[b]).pow(2).mean(),
                             lambda: torch.tensor(0.0), True, epochs=2, patience=1, batch_size=8, seed=0)
    assert torch.isfinite(net.weight).all()                           # stopped before the NaN reached the weights

def test_salus_chooses_its_task_context_on_validation_and_scores_with_it():
    "Where failure reads differently per task, the validation early AUC picks the task-conditioned candidate, and the test episodes agree."
    from test_predictor import task_dependent_episodes
    e = task_dependent_episodes(n=240, seed=1)
    data = EvalData(e, None, np.full(e.n_episodes, 30, np.int64))
    sp = split_episodes(e, {'train': 0.5, 'val': 0.25, 'test': 0.25}, seed=1)
    config = PredictorConfig(e.signal_names, e.horizons_s, e.control_hz, failure_types=[], window=4, episode_output=True)
    scorer = SalusScorer(config=config, train_config=TrainConfig(epochs=25), readouts=['episode'], select_by='pooled', task_contexts=[0, 2])
    scorer.fit(data, sp['train'], sp['val'], seed=0)
    val = scorer.chosen['val_pooled']
    assert set(val) == {'mlp/episode/task0', 'mlp/episode/task2'} and scorer.chosen['task_context'] == 2, scorer.chosen
    assert val['mlp/episode/task2'] > val['mlp/episode/task0'] + 0.2, val
    assert scorer.model.config.task_context == 2 and data.episodes.context is not None   # embedded once, kept for scoring
    test_auc = early_detection_auc(scorer.score(data, sp['test'])[1], data, sp['test'], 1.0, 'pooled')
    assert test_auc > 0.9, test_auc
    with pytest.raises(EvaluationError, match='task contexts must be'): SalusScorer(config=config, task_contexts=[-1])
    # a k the training instructions cannot span (4 tasks: at most 3 directions) is skipped, named, and alone it is refused
    with pytest.warns(UserWarning, match='task_context=4 skipped'):
        wide = SalusScorer(config=config, train_config=TrainConfig(epochs=2), readouts=['episode'], select_by='pooled', task_contexts=[0, 4])
        wide.fit(data, sp['train'], sp['val'], seed=0)
    assert wide.chosen['task_contexts_skipped'] == [4] and wide.chosen['task_context'] == 0
    with pytest.raises(EvaluationError, match='no task context'), pytest.warns(UserWarning):
        SalusScorer(config=config, train_config=TrainConfig(epochs=2), task_contexts=[4]).fit(data, sp['train'], sp['val'], seed=0)
