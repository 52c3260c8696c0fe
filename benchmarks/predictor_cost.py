"""Per-step cost on CPU of the SALUS monitor's inputs and model, for one environment: the signal extractor (the default
profile's signals: K=3 members, 4 generative samples, a 768-d embedding against 2048 reference embeddings) plus one
streaming predictor step, for each architecture, without and with the v2 episode-outcome output (`step` vs `step_all`),
and with both and a task context (k = 4: the instruction's MiniLM embedding, looked up in the encoder's cache and
projected when an episode starts, as the monitor does; episodes of 60 steps), timed side by side in one run. Target: signals + predictor ≤ 0.5 ms
per step.

    python benchmarks/predictor_cost.py [--steps 2000] [--checkpoint checkpoints/predictor/seed0]     # prints JSON

Architectures are timed at the default params' size (window 8, hidden 32); a trained checkpoint, when given or present,
is timed as well. Torch runs on one thread, as in rollouts.
"""
import argparse, json, time
from pathlib import Path

import numpy as np
import torch

from salus.params import load_params
from salus.envs import get_task
from salus.predictor import ARCHITECTURES, FailurePredictor, PredictorConfig, PredictorStream, load_predictor
from salus.signals import FeatureNovelty, SignalExtractor
from salus.language import instruction_encoder

def timed(fn, steps:int, warmup:int=50) -> float:
    "Median-free mean ms per call of fn(i) over `steps` calls, after `warmup` calls."
    for i in range(warmup): fn(i)
    t = time.perf_counter()
    for i in range(steps): fn(i)
    return (time.perf_counter() - t) / steps * 1000

def main(steps:int, checkpoint:str|None):
    torch.set_num_threads(1)
    params = load_params(Path(__file__).parents[1]/'params.yaml')
    names = tuple(params.signals.active)
    K, T, A = params.policy.members, params.policy.chunk_size, 7
    rng = np.random.default_rng(0)
    chunks = rng.normal(size=(steps + 50, K, 1, T, A)).astype(np.float32)
    samples = rng.normal(size=(steps + 50, params.signals.samples, 1, T, A)).astype(np.float32)
    emb = rng.normal(size=(steps + 50, 1, K * 256)).astype(np.float32)
    novelty = FeatureNovelty(rng.normal(size=(params.signals.novelty_reference, K * 256)), k=params.signals.novelty_k)
    extractor = SignalExtractor(names, 1, params.signals.trend_window, novelty=novelty)
    signals = np.stack([extractor.step(chunks[i], chunks[i, 0, :, 0], samples=samples[i], embedding=emb[i]) for i in range(steps + 50)])
    extractor.reset()
    signal_ms = timed(lambda i: extractor.step(chunks[i], chunks[i, 0, :, 0], samples=samples[i], embedding=emb[i]), steps)
    p = params.predictor
    make = lambda arch, episode, k=0: FailurePredictor(PredictorConfig(list(names), p.horizons_s, params.envs.control_hz, window=p.window,
                                                                       arch=arch, hidden=p.hidden, dropout=p.dropout, episode_output=episode,
                                                                       task_context=k)).eval()
    encoder = instruction_encoder()
    instructions = [get_task(t).instruction(k) for t in params.envs.seen_tasks for k in range(len(get_task(t).phrasings))]
    models = {}
    for arch in ARCHITECTURES:
        models[arch], models[f'{arch} + episode output'] = make(arch, False), make(arch, True)
        models[f'{arch} + episode output + task context'] = make(arch, True, 4)
        models[f'{arch} + episode output + task context'].set_task_context(encoder(instructions))
    if checkpoint and Path(checkpoint).is_dir():
        trained = load_predictor(checkpoint)
        models[f"trained ({trained.config.arch}{' + episode output' if trained.config.episode_output else ''})"] = trained
    predictor_ms = {}
    for name, model in models.items():
        stream = PredictorStream(model)
        step = stream.step_all if model.config.episode_output else stream.step
        def one(i, stream=stream, step=step, k=model.config.task_context):
            if i % 60 == 0: stream.reset()   # 6 s episodes; with a task context the monitor embeds the instruction when one starts
            return step(signals[i], encoder(instructions[:1]) if k and (stream.steps == 0).any() else None) if k else step(signals[i])
        predictor_ms[name] = round(timed(one, steps), 4)
    total = {k: round(signal_ms + v, 4) for k, v in predictor_ms.items()}
    return dict(benchmark='predictor_cost', steps=steps, members=K, signals=list(names), torch_threads=1,
                ms_per_step=dict(signals=round(signal_ms, 4), predictor=predictor_ms, signals_plus_predictor=total),
                meets_target_0_5ms={k: v <= 0.5 for k, v in total.items()})

if __name__ == '__main__':
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument('--steps', type=int, default=2000)
    ap.add_argument('--checkpoint', default='checkpoints/predictor/seed0')
    a = ap.parse_args()
    print(json.dumps(main(a.steps, a.checkpoint), indent=2))
