"Shared fixtures: small real SALUS projects made in temporary folders."
import shutil, subprocess, textwrap
from pathlib import Path

import pytest

from salus.stages import ProjectPaths

REPO = ProjectPaths.find(Path(__file__).parent).root

PARAMS = textwrap.dedent("""\
    profile: default   # default | smoke | gpu
    seed: 0
    runtime:
      device: cpu
      torch_threads: 2
      profiles:
        smoke: {torch_threads: 1}
    envs: {image_size: 64, control_hz: 10, collision_force: 60, seen_tasks: [lift_red, open_drawer], unseen_tasks: [lift_blue]}
    demos: {episodes_per_task: 1, action_noise: 0.0, grasp_noise: 0.0}
    policy: {members: 2, image_size: 32, chunk_size: 4, epochs: 1, batch_size: 8, lr: 0.001, goal_weight: 1.0, shift_pixels: 2,
             eval_episodes_per_task: 1, eval_shift: {pose: 0.02}, backend: embedded, checkpoint: null, smolvla_vlm: null,
             smolvla_ensemble: noise, smolvla_steps: 10, smolvla_batch_size: 8, smolvla_lr: 0.0001, tinyvla_steps: 10,
             tinyvla_batch_size: 8, tinyvla_lr: 0.0001}
    signals: {active: [epistemic, smoothness, sample_dispersion], trend_window: 5, samples: 2, novelty_k: 3, novelty_reference: 16}
    collect: {episodes_per_task: 1, shifts: {nominal: {}}, backend: serial, workers: 1}
    replicate: {collections: 2}
    predictor: {horizons_s: [0.2, 0.5, 1.0, 2.0], window: 4, architectures: [mlp], episode_output: true, hidden: 8, dropout: 0.0, epochs: 2, patience: 2,
                batch_size: 64, lr: 0.003, weight_decay: 0.0, splits: {train: 0.5, val: 0.2, calib: 0.2, test: 0.1},
                alphas: [0.1], seeds: 1}
    evaluate: {baselines: [elapsed, task_prior, epistemic, logreg], crossfit_folds: 2, qs: [0.25, 1.0], headline_q: 0.25, alphas: [0.05, 0.1],
               main_alpha: 0.1, bootstrap: 5, confidence: 0.95, table_horizon_s: 1.0, heldout_tasks: [[lift_red]], salus_readout: horizon, salus_select_by: auroc,
               salus_task_context: [0], workers: 1}
    external: {logs: external/actprobe_pi0_libero, dataset: pi0_libero, budget_steps: 104, control_hz: 4, horizons_s: [1.0, 2.0],
               protocols: [allseen], seeds: 1, unseen_tasks: 3, alpha: 0.15, baselines: [elapsed, actprobe], salus_readout: episode, salus_select_by: pooled,
               salus_task_context: [0, 2], epochs: 2, bootstrap: 5,
               confidence: 0.95}
    intervene: {strategies: [stop, slow, resample, human], tasks: all, episodes_per_task: 1, alpha: 0.1, trigger_horizons_s: [1.0],
                trigger_outputs: [any], slow_factor: 0.5, resample_samples: 2, human_steps: 5, max_help_requests: 2,
                bootstrap: 5, confidence: 0.95}
    figures: {scorers: [salus, logreg], external_scorers: [salus, actprobe], example_task: lift_red, signals: [epistemic, smoothness]}
    """)

@pytest.fixture
def params_file(tmp_path) -> Path:
    "A valid params file in a temporary folder."
    p = tmp_path/'params.yaml'
    p.write_text(PARAMS)
    return p

def git(*args, cwd):
    subprocess.run(['git', '-c', 'user.name=t', '-c', 'user.email=t@t', *args], cwd=cwd, check=True, capture_output=True)

@pytest.fixture
def mini_project(tmp_path) -> Path:
    "An empty SALUS project (settings.ini, params.yaml, an empty dvc.yaml, DVC initialised with analytics off)."
    root = tmp_path/'proj'
    root.mkdir()
    shutil.copy(REPO/'settings.ini', root/'settings.ini')
    (root/'params.yaml').write_text(PARAMS)
    (root/'dvc.yaml').write_text('stages: {}\n')
    git('init', '-q', cwd=root)
    subprocess.run(['dvc', 'init', '-q'], cwd=root, check=True)
    subprocess.run(['dvc', 'config', 'core.analytics', 'false'], cwd=root, check=True)
    return root

@pytest.fixture(scope='module')
def demos(tmp_path_factory):
    "Two scripted demonstrations of one task (32 px), and the envs params they were recorded with."
    from salus.data import EpisodeStore
    from salus.demos import record_demonstrations
    from salus.params import DemosParams, EnvsParams
    tmp = tmp_path_factory.mktemp('demos')
    envs = EnvsParams(image_size=32, control_hz=10, collision_force=60, seen_tasks=['lift_red'], unseen_tasks=[])
    record_demonstrations(tmp/'demos.zarr', envs, DemosParams(episodes_per_task=2, action_noise=0.05, grasp_noise=0.003), seed=0, progress=False)
    return EpisodeStore.open(tmp/'demos.zarr'), envs
