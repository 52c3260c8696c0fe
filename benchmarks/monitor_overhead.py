"""Per-step cost on CPU of the SALUS runtime monitor (signals + streaming predictor + decision), next to the policy's own
forward passes, for one environment and every strategy. Target: the monitor adds ≤ 0.5 ms per step.

    python benchmarks/monitor_overhead.py [--steps 300]     # prints JSON

Uses the pipeline's trained ensemble, novelty reference and seed-0 predictor with its conformal thresholds when they
exist (after `dvc repro`), else a default-size untrained ensemble and predictor (the cost does not depend on training).
Observations come from one real episode of the task suite; torch runs on one thread, as in rollouts. Each strategy is
timed twice: with the calibrated thresholds (alarms as they come) and with every step alarmed (the worst case: for
`resample`, one extra batched forward pass per alarmed step).
"""
import argparse, json
from dataclasses import replace
from pathlib import Path

import numpy as np
import torch

from salus.params import EnvsParams, load_params
from salus.envs import make_env
from salus.intervene import CONDITIONS, Monitor, MonitorConfig
from salus.predictor import ConformalThresholds, FailurePredictor, PredictorConfig, load_predictor
from salus.signals import FeatureNovelty
from salus.vla import EmbeddedVLA, EmbeddedVLAConfig, VLAObservation, ensemble_step

ROOT = Path(__file__).parents[1]

def models(params):
    "The trained models if the pipeline made them, else untrained ones of the default size."
    ckpt = ROOT/'checkpoints'
    if (ckpt/'predictor/seed0/thresholds.json').is_file() and (ckpt/'novelty').is_dir():
        predictor = load_predictor(ckpt/'predictor/seed0')
        return ('trained', EmbeddedVLA.load(ckpt/'policy'), predictor, ConformalThresholds.load(ckpt/'predictor/seed0/thresholds.json'),
                FeatureNovelty.load(ckpt/'novelty'))
    p, s = params.predictor, params.signals
    vla = EmbeddedVLA(EmbeddedVLAConfig(image_size=params.policy.image_size, chunk_size=params.policy.chunk_size), members=params.policy.members)
    predictor = FailurePredictor(PredictorConfig(list(s.active), p.horizons_s, params.envs.control_hz, window=p.window, arch='gru', hidden=p.hidden)).eval()
    H, K1 = predictor.config.output_shape
    z = np.zeros((len(p.alphas), H, K1))
    thresholds = ConformalThresholds(p.alphas, p.horizons_s, predictor.config.output_names, z + 0.5, z[:1], z[:1], z, 0)
    emb = vla.config.hidden * params.policy.members
    return 'untrained', vla, predictor, thresholds, FeatureNovelty(np.random.default_rng(0).normal(size=(s.novelty_reference, emb)), k=s.novelty_k)

def main(steps:int):
    torch.set_num_threads(1)
    params = load_params(ROOT/'params.yaml')
    kind, vla, predictor, thresholds, novelty = models(params)
    iv, s = params.intervene, params.signals
    env = make_env('place_red_in_bowl', EnvsParams(**params.envs.values()))
    obs, info = env.reset(seed=0)
    observations = []
    for t in range(40):  # a real episode's observations, driven by the policy itself
        o = VLAObservation(obs['front'], obs['wrist'], obs['state'], info['instruction'])
        observations.append(o)
        obs, _, term, trunc, info = env.step(ensemble_step(vla, o).action[0])
        if term or trunc: obs, info = env.reset(seed=t + 1)
    base = MonitorConfig.from_params(iv, s)
    always = ConformalThresholds(thresholds.alphas, thresholds.horizons_s, thresholds.output_names, thresholds.constant * 0 - 1,
                                 thresholds.band_mean, thresholds.band_std, thresholds.band_scale, 0)
    out = {}
    for label, thr in (('calibrated', thresholds), ('every_step_alarmed', always)):
        out[label] = {}
        for strategy in CONDITIONS:  # all in one run, side by side
            m = Monitor(vla, predictor, thr, replace(base, strategy=strategy), novelty=novelty, seed=0)
            for i in range(20): m.step(observations[i % len(observations)])  # warm-up
            m.reset()
            d = [m.step(observations[i % len(observations)]) for i in range(steps)]
            out[label][strategy] = dict(policy_ms=round(1e3 * float(np.mean([x.policy_s for x in d])), 4),
                                        monitor_ms=round(1e3 * float(np.mean([x.monitor_s for x in d])), 4),
                                        alarm_fraction=round(float(np.mean([x.alarm[0] for x in d])), 4))
    watch = out['calibrated']['none']['monitor_ms']
    return dict(benchmark='monitor_overhead', models=kind, steps=steps, members=vla.members, signals=predictor.config.signal_names,
                predictor_arch=predictor.config.arch, torch_threads=1, ms_per_step=out,
                monitor_over_policy=round(watch / out['calibrated']['none']['policy_ms'], 4),
                meets_target_0_5ms={k: v['monitor_ms'] <= 0.5 for k, v in out['calibrated'].items()})

if __name__ == '__main__':
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument('--steps', type=int, default=300)
    print(json.dumps(main(ap.parse_args().steps), indent=2))
