"""Per-step latency of the embedded VLA ensemble on CPU: K = 1, 3, 5 members in one batched (vmapped) forward versus
one member after another, measured side by side in one run. Target: K = 3 batched ≤ 1.5 × one member.

    python benchmarks/vla_latency.py [--repeats 30] [--threads 2]      # prints JSON
"""
import argparse, json, statistics, time

import numpy as np
import torch

from salus.vla import EmbeddedVLA, EmbeddedVLAConfig, VLAObservation

def latency_ms(fn, repeats):
    for _ in range(3): fn()
    times = []
    for _ in range(repeats):
        t = time.perf_counter(); fn(); times.append((time.perf_counter() - t) * 1000)
    return round(statistics.median(times), 3)

def main(repeats, threads):
    torch.set_num_threads(threads)
    rng = np.random.default_rng(0)
    obs = VLAObservation(rng.integers(0, 256, (1, 96, 96, 3), dtype=np.uint8), rng.integers(0, 256, (1, 96, 96, 3), dtype=np.uint8),
                         np.zeros((1, 11)), 'lift the red cube')
    out = dict(benchmark='vla_latency', backend='embedded', config=EmbeddedVLAConfig().__dict__, threads=threads, repeats=repeats, ms={})
    for K in (1, 3, 5):
        vla = EmbeddedVLA(EmbeddedVLAConfig(), members=K)
        g = torch.Generator().manual_seed(0)
        out['ms'][f'K{K}'] = {'batched': latency_ms(lambda: vla.member_chunks(obs, g), repeats),
                              'sequential': latency_ms(lambda: vla.member_chunks(obs, g, batched=False), repeats)}
    one = min(out['ms']['K1'].values())  # one member, by its fastest path (a plain call; vmap adds overhead at K=1)
    out['one_member_ms'] = one
    out['K3_batched_over_one_member'] = round(out['ms']['K3']['batched'] / one, 3)
    out['K3_sequential_over_one_member'] = round(out['ms']['K3']['sequential'] / one, 3)
    out['meets_target_1.5x'] = out['K3_batched_over_one_member'] <= 1.5
    return out

if __name__ == '__main__':
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument('--repeats', type=int, default=30)
    ap.add_argument('--threads', type=int, default=2)
    a = ap.parse_args()
    print(json.dumps(main(a.repeats, a.threads), indent=2))
