"""Early-detection metrics agree with a brute-force loop over episodes under every cutoff rule; the hierarchical and
paired bootstrap give the answers a case built to have one must give."""
import math

import numpy as np
import pytest
from hypothesis import given, settings, strategies as st

from salus.metrics import (CUTOFF_RULES, EvaluationError, RankedScores, Unit, bootstrap_draws, early_cutoffs, hierarchical_bootstrap,
                           summarise_episodes)

def brute_cutoff(lengths, tasks, budgets, q, rule):
    "Each rule written out per episode, from its definition."
    out = []
    for e, T in enumerate(lengths):
        same = [lengths[i] for i in range(len(lengths)) if tasks[i] == tasks[e]]
        if rule == 'budget': c = math.ceil(round(q * budgets[e], 9))
        elif rule == 'taskmax': c = min(math.ceil(round(q * max(same), 9)), T)
        elif rule == 'taskmin': c = math.floor((min(same) - 1) * q + 0.5) + 1
        else: c = math.ceil(round(q * T, 9))
        out.append(max(c, 1))
    return out

def brute_auc(scores, failed):
    "P(failure > success) over every pair, ties half."
    pos = [s for s, f in zip(scores, failed) if f]
    neg = [s for s, f in zip(scores, failed) if not f]
    if not pos or not neg: return None
    return sum((p > n) + 0.5 * (p == n) for p in pos for n in neg) / (len(pos) * len(neg))

def random_episodes(rng, n):
    lengths = rng.integers(1, 30, n)
    tasks = rng.choice(['a', 'b', 'c'], n)
    budgets = np.array([{'a': 20, 'b': 31, 'c': 7}[t] for t in tasks])
    failed = rng.random(n) < 0.4
    scores = np.round(rng.normal(size=lengths.sum()), 1)   # ties on purpose
    return lengths, tasks, budgets, failed, scores

@pytest.mark.parametrize('rule', CUTOFF_RULES)
@pytest.mark.parametrize('q', [0.1, 0.25, 0.5, 1.0])
def test_cutoff_rules_match_their_definitions(rule, q):
    rng = np.random.default_rng(7)
    for _ in range(20):
        lengths, tasks, budgets, *_ = random_episodes(rng, int(rng.integers(1, 25)))
        assert early_cutoffs(lengths, q, rule, tasks, budgets).tolist() == brute_cutoff(lengths, tasks, budgets, q, rule)

def test_q_auc_macro_survivors_and_detection_time_match_a_loop():
    rng = np.random.default_rng(3)
    qs = (0.1, 0.25, 0.5, 1.0)
    for _ in range(40):
        lengths, tasks, budgets, failed, scores = random_episodes(rng, int(rng.integers(4, 40)))
        ends = np.cumsum(lengths)
        thr = float(rng.normal())
        m = summarise_episodes(scores, ends, failed, tasks, budgets, {0.1: thr}, qs=qs).metrics()
        per_episode = np.split(scores, ends[:-1])
        for rule in CUTOFF_RULES:
            for q in (qs if rule == 'budget' else (0.25,)):
                cut = brute_cutoff(lengths, tasks, budgets, q, rule)
                early = [max(x[:c]) for x, c in zip(per_episode, cut)]
                name = f'q_auc_{q:g}' + ('' if rule == 'budget' else f'_{rule}')
                assert m[name] == pytest.approx(brute_auc(early, failed)) if m[name] is not None else brute_auc(early, failed) is None
                if rule != 'budget': continue
                per_task = [brute_auc([early[i] for i in range(len(early)) if tasks[i] == t], [failed[i] for i in range(len(early)) if tasks[i] == t])
                            for t in sorted(set(tasks))]
                per_task = [a for a in per_task if a is not None]
                assert m[f'{name}_macro'] == (pytest.approx(np.mean(per_task)) if per_task else None)
                alive = [i for i in range(len(early)) if lengths[i] > cut[i]]
                want = brute_auc([early[i] for i in alive], [failed[i] for i in alive])
                assert m[f'{name}_survivors'] == (pytest.approx(want) if want is not None else None)
        assert m['roc_auc'] == (pytest.approx(brute_auc([max(x) for x in per_episode], failed)) if m['roc_auc'] is not None else None)
        firsts = [next((t for t, v in enumerate(x) if v > thr), -1) for x in per_episode]
        detect = [f / T if f >= 0 else 1.0 for f, T, y in zip(firsts, lengths, failed) if y]
        assert m['detection_time_safe_alpha_0.1'] == (pytest.approx(np.mean(detect)) if detect else None)
        alarmed = [f >= 0 for f in firsts]
        if failed.any() and (~failed).any():
            tpr = np.mean([a for a, y in zip(alarmed, failed) if y]); tnr = np.mean([not a for a, y in zip(alarmed, failed) if not y])
            assert m['balanced_accuracy_alpha_0.1'] == pytest.approx((tpr + tnr) / 2)

@settings(max_examples=60, deadline=None)
@given(st.lists(st.tuples(st.floats(-3, 3, allow_nan=False), st.booleans(), st.integers(0, 3)), min_size=2, max_size=40))
def test_weighted_auc_is_the_auc_of_the_repeated_sample(rows):
    s, y, w = map(np.array, zip(*rows))
    rep = np.repeat(np.arange(len(s)), w)
    assert RankedScores(s, y).auc(w) == (pytest.approx(brute_auc(s[rep], y[rep])) if brute_auc(s[rep], y[rep]) is not None else None)

def test_bootstrap_resamples_collections_then_seeds_then_shared_episodes():
    "Collections perfect (AUC 1) or useless (0.5) for every episode weight: only resampling collections moves the mean."
    y = np.r_[np.ones(20, bool), np.zeros(20, bool)]
    units = [Unit(c, s) for c in (0, 1) for s in (0, 1)]
    score = {0: np.where(y, 1.0, 0.0), 1: np.zeros(40)}
    ramp = np.linspace(0, 0.3, 40)   # b = a + a ramp that ranks successes higher: equal where a is perfect, AUC 0 where a ties
    stat = lambda i, w: {'a': {'auc': RankedScores(score[units[i].collection], y).auc(w)},
                         'b': {'auc': RankedScores(score[units[i].collection] + ramp, y).auc(w)}}
    res = hierarchical_bootstrap(units, [np.arange(40)] * 4, stat, n_boot=400, seed=0, reference='a')
    assert res['estimate']['a']['auc'] == 0.75 and res['estimate']['a']['auc_ci'] == [0.5, 1.0]
    assert res['paired']['b']['auc'] == [0.25, 0.0, 0.5]
    # an episode-only bootstrap (one collection) cannot move a perfect or a tied ranking
    one = hierarchical_bootstrap(units[:2], [np.arange(40)] * 2, stat, n_boot=100, seed=0, reference='a')
    assert one['estimate']['a']['auc_ci'] == [1.0, 1.0] and one['paired']['b']['auc'] == [0.0, 0.0, 0.0]

def test_paired_interval_of_a_known_difference_in_means():
    "b alarms on exactly the episodes a alarms on, minus a fixed 10 %: the paired difference is 0.1 in every resample."
    rng = np.random.default_rng(0)
    a = rng.random(200) < 0.5
    b = a.copy(); b[np.flatnonzero(a)[:20]] = False
    rate = lambda x, w: float(np.average(x, weights=np.ones(len(x)) if w is None else w))
    stat = lambda i, w: {'a': {'rate': rate(a, w)}, 'b': {'rate': rate(b, w)}}
    res = hierarchical_bootstrap([Unit(0)], [np.arange(200)], stat, n_boot=300, seed=1, reference='a')
    d, lo, hi = res['paired']['b']['rate']
    lo_a, hi_a = res['estimate']['a']['rate_ci']
    binomial = lambda p: 2 * 1.96 * np.sqrt(p * (1 - p) / 200)         # the width of a 95 % interval of a rate over 200 episodes
    assert d == pytest.approx(0.1) and hi - lo == pytest.approx(binomial(0.1), rel=0.25)   # the 20 differing episodes' rate
    assert hi_a - lo_a == pytest.approx(binomial(a.mean()), rel=0.25) and hi - lo < hi_a - lo_a

def test_draws_share_episode_weights_within_a_collection_and_keep_every_stratum():
    rng = np.random.default_rng(0)
    # one collection, two seeds that score the same episodes: both see the same episode weights
    for entries in bootstrap_draws([Unit(0, 0), Unit(0, 1)], [np.arange(10)] * 2, 100, rng):
        assert len(entries) == 2 and np.array_equal(entries[0][1], entries[1][1]) and entries[0][1].sum() == 10
    # one collection, two folds (strata) with their own episodes: both folds every time, each resampled to its size
    for entries in bootstrap_draws([Unit(0, 0, 0), Unit(0, 0, 1)], [np.arange(5), np.arange(5, 12)], 100, rng):
        assert sorted((i, w.sum()) for i, w in entries) == [(0, 5), (1, 7)]
    # two collections, one with one seed and one with two: a resample holds 2, 3 or 4 units as collections are redrawn
    sizes = {len(e) for e in bootstrap_draws([Unit(0, 0), Unit(1, 0), Unit(1, 1)], [np.arange(4)] * 3, 200, rng)}
    assert sizes == {2, 3, 4}

def test_bad_input_is_refused():
    with pytest.raises(EvaluationError, match='q must be in'): early_cutoffs([3], 1.5, 'episode')
    with pytest.raises(EvaluationError, match="needs each episode's task"): early_cutoffs([3], 0.5, 'taskmax')
    with pytest.raises(EvaluationError, match='non-finite'): RankedScores([np.nan, 1], [0, 1])
    with pytest.raises(EvaluationError, match='do not match'):
        summarise_episodes(np.zeros(5), [2, 4], [True, False], ['a', 'a'], [4, 4], {})
    with pytest.raises(EvaluationError, match='share'): bootstrap_draws([Unit(0), Unit(0)], [np.arange(2)] * 2, 1, np.random.default_rng(0))
    with pytest.raises(EvaluationError, match='confidence'):
        hierarchical_bootstrap([Unit(0)], [np.arange(2)], lambda i, w: {'a': {'x': 1.0}}, confidence=1.5)
