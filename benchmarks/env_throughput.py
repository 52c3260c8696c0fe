"""Control steps per second of the embedded MuJoCo task suite on one core: physics alone, and with both cameras
rendered (Mesa llvmpipe, one thread), measured side by side in one run. Target: ≥ 100 steps/s with rendering.

    python benchmarks/env_throughput.py [--steps 300] [--image-size 96]    # prints JSON
"""
import os
os.environ['LP_NUM_THREADS'] = '1'   # one llvmpipe thread: the per-core number parallel workers see
os.environ.setdefault('MUJOCO_GL', 'egl')
import argparse, json, time

import numpy as np

from salus.envs import EnvConfig, FrankaTabletopEnv, ScriptedExpert

def steps_per_second(task, render, steps, image_size):
    env = FrankaTabletopEnv(task, EnvConfig(render=render, image_size=image_size))
    expert = ScriptedExpert(env)
    done, n, seed = True, 0, 0
    t = time.perf_counter()
    while n < steps:
        if done:
            env.reset(seed=seed); expert.reset(); seed += 1
        *_, terminated, truncated, _ = env.step(expert.act())
        done, n = terminated or truncated, n + 1
    rate = steps / (time.perf_counter() - t)
    env.close()
    return rate

def main(steps, image_size, tasks=('place_red_in_bowl', 'open_drawer')):
    os.sched_setaffinity(0, {min(os.sched_getaffinity(0))})   # one core
    out = dict(benchmark='env_throughput', steps=steps, image_size=image_size, cameras=2, control_hz=10, cores=1)
    for task in tasks:
        out[task] = {'physics_steps_per_s': round(steps_per_second(task, False, steps, image_size), 1),
                     'rendered_steps_per_s': round(steps_per_second(task, True, steps, image_size), 1)}
    out['rendered_steps_per_s_min'] = min(out[t]['rendered_steps_per_s'] for t in tasks)
    out['meets_target_100'] = out['rendered_steps_per_s_min'] >= 100
    return out

if __name__ == '__main__':
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument('--steps', type=int, default=300)
    ap.add_argument('--image-size', type=int, default=96)
    a = ap.parse_args()
    print(json.dumps(main(a.steps, a.image_size), indent=2))
