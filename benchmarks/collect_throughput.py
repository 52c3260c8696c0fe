"""Rollout collection throughput on CPU: control steps per second per core of `salus.collect` (rendering both 96×96
cameras, the K = 3 embedded ensemble at its default size, 4 generative samples, every signal), in this process on one
core. The ensemble is randomly initialised: cost per step does not depend on the weights.

    python benchmarks/collect_throughput.py [--episodes 4]     # prints JSON
"""
import argparse, json, tempfile, time
from pathlib import Path

import numpy as np

from salus.collect import RolloutConfig, collect_rollouts, episode_specs
from salus.signals import SIGNALS, FeatureNovelty
from salus.vla import EmbeddedVLA, EmbeddedVLAConfig

def main(episodes):
    tmp = Path(tempfile.mkdtemp())
    vla = EmbeddedVLA(EmbeddedVLAConfig(), members=3)
    vla.save(tmp/'policy')
    FeatureNovelty(np.random.default_rng(0).normal(size=(2048, 3 * vla.config.hidden)), k=5).save(tmp/'novelty')
    envs = dict(image_size=96, control_hz=10, collision_force=60.0, seen_tasks=['lift_red'], unseen_tasks=['open_drawer'])
    cfg = RolloutConfig(str(tmp/'policy'), envs, tuple(SIGNALS), samples=4, novelty_path=str(tmp/'novelty'))
    specs = episode_specs(['lift_red'], ['open_drawer'], {'nominal': {}}, max(1, episodes // 2), seed=0)
    collect_rollouts(tmp/'warm.zarr', specs[:1], cfg, backend='serial', progress=False)  # load the policy and encoder once
    t = time.perf_counter()
    store = collect_rollouts(tmp/'r.zarr', specs, cfg, backend='serial', progress=False)
    seconds = time.perf_counter() - t
    return dict(benchmark='collect_throughput', episodes=len(store), steps=store.n_steps, seconds=round(seconds, 2),
                steps_per_second_per_core=round(store.n_steps / seconds, 1), members=3, image_size=96, signals=len(SIGNALS))

if __name__ == '__main__':
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument('--episodes', type=int, default=4)
    a = ap.parse_args()
    print(json.dumps(main(a.episodes), indent=2))
