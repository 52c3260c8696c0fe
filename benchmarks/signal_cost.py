"""Per-step cost of the streaming signal extractor on CPU, for one environment: the seed's six, the seed's six plus the
chunk signals, and every signal (with 4 generative samples and a 768-d embedding against 2048 reference embeddings).
Target: ≤ 0.2 ms per step for the seed six + extended at K = 5.

    python benchmarks/signal_cost.py [--members 5] [--steps 2000]     # prints JSON
"""
import argparse, json, time

import numpy as np

from salus.signals import SEED_SIGNALS, SIGNALS, FeatureNovelty, SignalExtractor

def per_step_ms(names, K, steps, novelty=None, samples=None, emb=None):
    rng = np.random.default_rng(0)
    chunks = rng.normal(size=(steps, K, 1, 4, 7)).astype(np.float32)
    ex = SignalExtractor(names, 1, novelty=novelty)
    kw = lambda i: dict(samples=None if samples is None else samples[i], embedding=None if emb is None else emb[i])
    for i in range(20): ex.step(chunks[i], chunks[i, 0, :, 0], **kw(i))
    ex.reset()
    t = time.perf_counter()
    for i in range(steps): ex.step(chunks[i], chunks[i, 0, :, 0], **kw(i))
    return round((time.perf_counter() - t) / steps * 1000, 4)

def main(K, steps):
    rng = np.random.default_rng(1)
    chunk_only = tuple(n for n in SIGNALS if n not in ('sample_dispersion', 'knn_novelty', 'mahalanobis_novelty'))
    novelty = FeatureNovelty(rng.normal(size=(2048, 768)), k=5)
    samples = rng.normal(size=(steps, 4, 1, 4, 7))
    emb = rng.normal(size=(steps, 1, 768))
    out = dict(benchmark='signal_cost', members=K, steps=steps, ms_per_step={
        'seed_six': per_step_ms(SEED_SIGNALS, K, steps),
        'seed_six_plus_chunk_signals': per_step_ms(chunk_only, K, steps),
        'all_with_samples_and_novelty': per_step_ms(tuple(SIGNALS), K, steps, novelty, samples, emb)})
    out['meets_target_0.2ms'] = out['ms_per_step']['seed_six_plus_chunk_signals'] <= 0.2
    return out

if __name__ == '__main__':
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument('--members', type=int, default=5)
    ap.add_argument('--steps', type=int, default=2000)
    a = ap.parse_args()
    print(json.dumps(main(a.members, a.steps), indent=2))
