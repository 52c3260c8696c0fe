"""Closed-loop success of the embedded VLA ensemble against the number of demonstrations per task (and optionally a
wider network): how `demos.episodes_per_task` in params.yaml was chosen.

    python benchmarks/policy_data_sweep.py [--demos 40 80 120] [--wide] [--device cuda] [--episodes 10]   # prints JSON

Records `max(--demos)` demonstrations per seen task once (the first N of each task are the same episodes a run with
N would record: seeds are derived per task and attempt), trains one K=3 ensemble per N on the first N of each task
with the default params' policy settings, and runs each closed-loop on the seen and unseen tasks. Training dominates:
about 20 min per 40 demonstrations per task on a 2-core CPU, about 1.5 min on a GPU (`--device cuda`). The measured
run (H200 for training, this CPU for the episodes, 10 seen / 6 unseen episodes per task) gave seen success 0.42, 0.60,
0.80 for 40, 80, 120 and 0.82 for 120 with `--wide`; unseen 0 throughout.
"""
import argparse, json, tempfile, time

import numpy as np
import torch

from salus.base import derive_seed
from salus.params import load_params
from salus.demos import record_demonstrations
from salus.data import EpisodeStore
from salus.rollout import evaluate_policy
from salus.vla import DemoTensors, EmbeddedVLA, EmbeddedVLAConfig, demo_tensors, train_ensemble

WIDE = dict(channels=64, hidden=512, keypoints=32)

def first_per_task(data:DemoTensors, tasks:list[str], n:int) -> DemoTensors:
    "The steps of the first `n` demonstrations of each task."
    keep = [i for i, t in enumerate(tasks) if tasks[:i].count(t) < n]
    m = np.isin(data.episode, keep)
    return DemoTensors(data.front[torch.from_numpy(m)], data.wrist[torch.from_numpy(m)], data.state[m], data.chunks[m],
                       data.text[m], data.episode[m], None if data.goal is None else data.goal[m])

def main(demos, wide, device, episodes, threads):
    torch.set_num_threads(threads)
    params = load_params('params.yaml', profile='default')
    p = params.policy
    folder = tempfile.mkdtemp()
    record_demonstrations(f'{folder}/demos.zarr', params.envs, params.demos.model_copy(update={'episodes_per_task': max(demos)}),
                          seed=params.seed)
    store = EpisodeStore.open(f'{folder}/demos.zarr')
    tasks = [str(t) for t in store.meta()['task']]
    out = dict(benchmark='policy_data_sweep', device=device, episodes_per_task=episodes, runs=[])
    every = demo_tensors(store, EmbeddedVLAConfig(image_size=p.image_size, chunk_size=p.chunk_size))  # read once, cut per N
    for n in demos:
        for overrides in ([{}, WIDE] if wide and n == max(demos) else [{}]):
            config = EmbeddedVLAConfig(image_size=p.image_size, chunk_size=p.chunk_size, **overrides)
            data = first_per_task(every, tasks, n)
            vla = EmbeddedVLA(config, members=p.members, seed=derive_seed(params.seed, 'policy_init'), device=device)
            t = time.perf_counter()
            history = train_ensemble(vla, data, epochs=p.epochs, batch_size=p.batch_size, lr=p.lr, goal_weight=p.goal_weight,
                                     shift_pixels=p.shift_pixels, seed=derive_seed(params.seed, 'policy_train'))
            run = dict(demos_per_task=n, wide=bool(overrides), train_s=round(time.perf_counter() - t, 1),
                       final_loss=round(float(np.mean([h['loss'] for h in history if h['epoch'] == p.epochs - 1])), 4))
            vla = EmbeddedVLA.load(vla.save(f'{folder}/policy'))  # episodes run on the CPU, as in the pipeline
            for split, split_tasks in (('seen', params.envs.seen_tasks), ('unseen', params.envs.unseen_tasks)):
                records = evaluate_policy(vla, split_tasks, params.envs, episodes=episodes, seed=derive_seed(params.seed, 'sweep', split))
                run[f'{split}_success'] = round(float(np.mean([r['outcome'] == 'success' for r in records])), 4)
                run[f'{split}_per_task'] = {t: round(float(np.mean([r['outcome'] == 'success' for r in records if r['task'] == t])), 4)
                                            for t in split_tasks}
            out['runs'].append(run)
    return out

if __name__ == '__main__':
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument('--demos', type=int, nargs='+', default=[40, 80, 120])
    ap.add_argument('--wide', action='store_true', help='also train a wider network on the largest demonstration set')
    ap.add_argument('--device', default='cpu')
    ap.add_argument('--episodes', type=int, default=10, help='closed-loop episodes per task')
    ap.add_argument('--threads', type=int, default=2)
    a = ap.parse_args()
    print(json.dumps(main(a.demos, a.wide, a.device, a.episodes, a.threads), indent=2))
