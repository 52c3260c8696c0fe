"""Episode-store write and read throughput with the commit protocol (commit record, chunk sizes and CRC-32s, writer
lock, damage checks on open) against the plain appends of the store before it (schema 1: the arrays' appends alone,
`meta/episode_ends` last), side by side in one run, on episodes shaped like the default profile's rollouts.

    python benchmarks/store_throughput.py [--episodes 40] [--steps 46]     # prints JSON

`overhead_vs_collection` divides the protocol's extra seconds per episode by one core's collection seconds per episode,
measured in the same run by benchmarks/collect_throughput.py (`--collect-episodes 0` skips it): the goal is ≤ 5 %.
"""
import argparse, json, shutil, tempfile, time
from pathlib import Path

import numpy as np
import zarr

from salus.collect import rollouts_schema
from salus.data import EpisodeStore

def episode(rng, schema, T):
    data = {k: (rng.integers(0, 255, (T, *s), dtype=np.uint8) if d == 'uint8' else
                np.zeros((T, *s), bool) if d == 'bool' else rng.normal(size=(T, *s)).astype(d)) for k, (s, d) in schema.data.items()}
    meta = {k: ('x' if d == 'str' else 1) for k, d in schema.meta.items()}
    return data, meta

def plain_append(g, schema, data, meta):
    "What schema 1 did per episode: each array appended, episode_ends last."
    n = int(g['meta/episode_ends'][-1]) if g['meta/episode_ends'].shape[0] else 0
    for k, v in data.items(): g[f'data/{k}'].append(v.astype(schema.data[k][1], copy=False))
    for k, v in meta.items(): g[f'meta/{k}'].append(np.asarray([v], dtype=object if schema.meta[k] == 'str' else schema.meta[k]))
    g['meta/episode_ends'].append(np.asarray([n + len(next(iter(data.values())))], dtype='int64'))

def main(episodes, steps, collect_episodes=2):
    tmp = Path(tempfile.mkdtemp())
    schema = rollouts_schema(96, 3, 8, 11, 3 * 64)
    rng = np.random.default_rng(0)
    eps = [episode(rng, schema, steps) for _ in range(episodes)]
    timings = {}
    for rep in range(2):  # interleaved, twice: the machine's noise hits both alike
        store = EpisodeStore.create(tmp/f'new{rep}.zarr', schema)
        t = time.perf_counter()
        for d, m in eps: store.append_episode(d, m)
        timings.setdefault('write_protocol', []).append(time.perf_counter() - t)
        store.close()
        EpisodeStore.create(tmp/f'old{rep}.zarr', schema).close()
        g = zarr.open_group(str(tmp/f'old{rep}.zarr'), mode='r+')
        t = time.perf_counter()
        for d, m in eps: plain_append(g, schema, d, m)
        timings.setdefault('write_plain', []).append(time.perf_counter() - t)
        t = time.perf_counter()
        r = EpisodeStore.open(tmp/f'new{rep}.zarr')
        timings.setdefault('open_protocol', []).append(time.perf_counter() - t)
        t = time.perf_counter()
        for k in schema.data: r.data(k)
        timings.setdefault('read_all', []).append(time.perf_counter() - t)
    best = {k: min(v) for k, v in timings.items()}
    extra = (best['write_protocol'] - best['write_plain']) / episodes
    out = dict(benchmark='store_throughput', episodes=episodes, steps_per_episode=steps,
               store_mb=round(sum(f.stat().st_size for f in (tmp/'new0.zarr').rglob('*') if f.is_file()) / 2**20, 1),
               write_ms_per_episode_protocol=round(best['write_protocol'] / episodes * 1e3, 2),
               write_ms_per_episode_plain=round(best['write_plain'] / episodes * 1e3, 2),
               extra_ms_per_episode=round(extra * 1e3, 2),
               open_s=round(best['open_protocol'], 3), read_all_s=round(best['read_all'], 3))
    if collect_episodes:  # the same machine's collection cost, measured in this run (benchmarks/collect_throughput.py)
        import sys
        sys.path.insert(0, str(Path(__file__).parent))
        from collect_throughput import main as collect_main
        c = collect_main(collect_episodes)
        per_episode = c['seconds'] / c['episodes']
        out.update(collection_s_per_episode=round(per_episode, 2), overhead_vs_collection=round(extra / per_episode, 5))
    shutil.rmtree(tmp)
    return out

if __name__ == '__main__':
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument('--episodes', type=int, default=40)
    ap.add_argument('--steps', type=int, default=46)
    ap.add_argument('--collect-episodes', type=int, default=2)
    a = ap.parse_args()
    print(json.dumps(main(a.episodes, a.steps, a.collect_episodes), indent=2))
