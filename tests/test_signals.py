"Property tests of the streaming signals: zero for identical members, finite for finite input, documented invariances."
import warnings

import numpy as np
import pytest
from hypothesis import given, settings, strategies as st
from hypothesis.extra.numpy import arrays

from salus.signals import SEED_SIGNALS, SIGNALS, FeatureNovelty, SignalExtractor

EXTRA_INPUTS = ('sample_dispersion', 'knn_novelty', 'mahalanobis_novelty')   # need samples / embeddings at step()
ALL = tuple(n for n in SIGNALS if n not in EXTRA_INPUTS)
DISAGREEMENT = ('epistemic', 'action_variance', 'max_variance', 'chunk_disagreement')
finite = st.floats(-50, 50, allow_nan=False, width=32)

def chunks_strategy(K=3, B=2, T=4, A=7):
    return arrays(np.float64, (K, B, T, A), elements=finite)

@settings(max_examples=40, deadline=None)
@given(one=arrays(np.float64, (1, 2, 4, 7), elements=finite), steps=st.integers(1, 4))
def test_identical_members_give_zero_disagreement(one, steps):
    ex = SignalExtractor(ALL, batch_size=2)
    chunks = np.repeat(one, 3, 0)
    for _ in range(steps): out = ex.step(chunks, one[0, :, 0])
    for name in DISAGREEMENT: assert np.allclose(out[:, ex.names.index(name)], 0, atol=1e-5), name
    assert np.allclose(out[:, ex.names.index('uncertainty_trend')], 0, atol=1e-5)

@settings(max_examples=40, deadline=None)
@given(seq=st.lists(chunks_strategy(), min_size=1, max_size=5))
def test_signals_are_finite_for_finite_input_from_the_first_step(seq):
    ex = SignalExtractor(ALL, batch_size=2)
    for chunks in seq:
        out = ex.step(chunks, chunks.mean(0)[:, 0])
        assert out.shape == (2, len(ALL)) and np.isfinite(out).all()

@settings(max_examples=30, deadline=None)
@given(chunks=chunks_strategy(), offset=st.floats(-5, 5), scale=st.floats(0.1, 10), perm=st.permutations([0, 1, 2]))
def test_invariances(chunks, offset, scale, perm):
    base = SignalExtractor(ALL, batch_size=2).step(chunks, chunks.mean(0)[:, 0])
    permuted = SignalExtractor(ALL, batch_size=2).step(chunks[list(perm)], chunks.mean(0)[:, 0])
    assert np.allclose(base, permuted, rtol=1e-4, atol=1e-4)                  # member order does not matter
    shifted = SignalExtractor(DISAGREEMENT, batch_size=2).step(chunks + offset, chunks.mean(0)[:, 0] + offset)
    assert np.allclose(base[:, [ALL.index(n) for n in DISAGREEMENT]], shifted, rtol=1e-3, atol=1e-3)
    scaled = SignalExtractor(('epistemic', 'action_variance'), batch_size=2).step(chunks * scale, chunks.mean(0)[:, 0] * scale)
    assert np.allclose(scaled[:, 0], base[:, ALL.index('epistemic')] * scale, rtol=1e-3, atol=1e-3)
    assert np.allclose(scaled[:, 1], base[:, ALL.index('action_variance')] * scale ** 2, rtol=1e-3, atol=1e-3)

def test_known_values():
    chunks = np.zeros((2, 1, 2, 2)); chunks[1, 0, :, 0] = 2.0        # members 0 and 2 apart in dim 0 of both chunk steps
    ex = SignalExtractor(ALL, batch_size=1)
    s = dict(zip(ex.names, ex.step(chunks, np.array([[1.0, 0.0]]))[0]))
    assert s['epistemic'] == pytest.approx(0.5)          # std over members: [1, 0] -> mean 0.5
    assert s['action_variance'] == pytest.approx(0.5)    # var [1, 0] -> mean 0.5
    assert s['max_variance'] == pytest.approx(1.0)
    assert s['action_magnitude'] == pytest.approx(1.0)   # mean action (1, 0)
    assert s['smoothness'] == 0 and s['chunk_consistency'] == 0 and s['uncertainty_trend'] == 0
    s2 = dict(zip(ex.names, ex.step(np.zeros((2, 1, 2, 2)), np.array([[0.0, 0.0]]))[0]))
    assert s2['smoothness'] == pytest.approx(1.0)
    assert s2['uncertainty_trend'] == pytest.approx(-0.5)
    assert s2['chunk_consistency'] == pytest.approx(1.0)  # the plan for the next step moved from (1, 0) to (0, 0)

def test_reset_restarts_only_masked_environments():
    ex = SignalExtractor(('smoothness',), batch_size=2)
    c = np.zeros((2, 2, 1, 1))
    ex.step(c, np.zeros((2, 1)))
    ex.reset(np.array([True, False]))
    out = ex.step(c, np.ones((2, 1)))
    assert out[:, 0].tolist() == [0.0, 1.0]

def test_bad_input():
    with pytest.raises(KeyError, match='unknown signal'): SignalExtractor(('epistemic', 'nope'))
    ex = SignalExtractor(SEED_SIGNALS, batch_size=2)
    with pytest.raises(ValueError, match=r'chunks must be \(K, B=2, T, A\)'): ex.step(np.zeros((3, 1, 4, 7)), np.zeros((1, 7)))
    with pytest.raises(ValueError, match='not finite'): ex.step(np.full((3, 2, 4, 7), np.inf), np.zeros((2, 7)))
    with pytest.raises(ValueError, match='executed must be'): ex.step(np.zeros((3, 2, 4, 7)), np.zeros((2, 6)))


@settings(max_examples=30, deadline=None)
@given(one=arrays(np.float64, (1, 2, 4, 7), elements=finite), n=st.integers(2, 6))
def test_identical_samples_give_zero_dispersion(one, n):
    ex = SignalExtractor(('sample_dispersion',), batch_size=2)
    out = ex.step(np.repeat(one, 3, 0), one[0, :, 0], samples=np.repeat(one, n, 0))
    assert np.allclose(out, 0, atol=1e-5)

@settings(max_examples=25, deadline=None)
@given(ref=arrays(np.float64, (40, 5), elements=st.floats(-20, 20, allow_nan=False, width=32)),
       emb=arrays(np.float64, (2, 5), elements=finite), shift=st.floats(-10, 10))
def test_novelty_is_finite_nonnegative_and_translation_invariant(ref, emb, shift):
    base = FeatureNovelty(ref, k=3)
    moved = FeatureNovelty(ref + shift, k=3)
    well_conditioned = np.linalg.svd(ref - ref.mean(0), compute_uv=False).min() > 1e-2  # else null directions are arbitrary
    for a, b in [(base.knn(emb), moved.knn(emb + shift)), (base.mahalanobis(emb), moved.mahalanobis(emb + shift))]:
        assert np.isfinite(a).all() and (a >= 0).all() and np.isfinite(b).all()
        if well_conditioned: assert np.allclose(a, b, rtol=1e-3, atol=1e-3)

def test_novelty_of_mostly_identical_references_does_not_divide_by_rounding_noise():
    # found by hypothesis: most references coincide, so their median kNN distance is 0 up to rounding
    ref = np.full((40, 5), 2.0)
    ref[0, 1], ref[5, 3], ref[8, 0], ref[12, 4], ref[25, 2] = 1.0, 0.0, 0.0, 0.0, 0.0
    emb = np.zeros((2, 5))
    for shift in (1.0, 0.5, 3.0, -7.25):
        np.testing.assert_allclose(FeatureNovelty(ref, k=3).knn(emb), FeatureNovelty(ref + shift, k=3).knn(emb + shift), rtol=1e-6)

def test_novelty_ranks_in_distribution_below_out_of_distribution():
    rng = np.random.default_rng(0)
    nov = FeatureNovelty(rng.normal(size=(2000, 16)), k=5)
    inside, outside = rng.normal(size=(200, 16)), rng.normal(size=(200, 16)) + 3.0
    assert np.median(nov.knn(inside)) == pytest.approx(1.0, abs=0.2)     # scaled to the references' median
    assert nov.knn(outside).min() > nov.knn(inside).max() * 0.9 and nov.mahalanobis(outside).mean() > 2 * nov.mahalanobis(inside).mean()

def test_novelty_save_load_and_bad_input(tmp_path):
    rng = np.random.default_rng(1)
    nov = FeatureNovelty(rng.normal(size=(50, 4)), k=3)
    nov.save(tmp_path/'novelty')
    emb = rng.normal(size=(3, 4))
    again = FeatureNovelty.load(tmp_path/'novelty')
    assert np.array_equal(again.knn(emb), nov.knn(emb)) and np.array_equal(again.mahalanobis(emb), nov.mahalanobis(emb))
    with pytest.raises(ValueError, match=r'embedding must be \(B, 4\)'): nov.knn(np.zeros((3, 5)))
    with pytest.raises(ValueError, match='not finite'): nov.mahalanobis(np.full((1, 4), np.inf))
    with pytest.raises(ValueError, match='k must be'): FeatureNovelty(np.zeros((3, 4)), k=3)
    ex = SignalExtractor(('knn_novelty',), batch_size=2, novelty=nov)
    with pytest.raises(ValueError, match='needs embedding'): ex.step(np.zeros((2, 2, 4, 7)), np.zeros((2, 7)))
    with pytest.raises(ValueError, match='B=2 rows'): ex.step(np.zeros((2, 2, 4, 7)), np.zeros((2, 7)), embedding=np.zeros((3, 4)))

def test_batch_size_must_be_a_positive_integer():
    for b in (0, -1, 2.0, None):
        with pytest.raises(ValueError, match=rf'batch_size must be an integer ≥ 1 \(environments\), got {b!r}'): SignalExtractor(SEED_SIGNALS, batch_size=b)

def test_signals_that_overflow_are_an_error_naming_the_environment():
    chunks = np.zeros((3, 2, 4, 7))
    chunks[:, 1, 0, 0] = [0.0, 1e30, -1e30]                  # finite, but a variance of 1e60 is not a float32
    ex = SignalExtractor(SEED_SIGNALS, batch_size=2)
    with warnings.catch_warnings():
        warnings.simplefilter('error')
        with pytest.raises(ValueError, match=r"signals are non-finite at env 1 \('action_variance', 'max_variance'\): inputs out of range \(\|chunks\| up to 1e\+30\)"):
            ex.step(chunks, np.zeros((2, 7)))
    assert (ex.steps == 0).all()                              # the failed step left the history alone
