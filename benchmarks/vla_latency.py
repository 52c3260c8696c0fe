"""Per-step latency of a VLA ensemble: K = 1, 3, 5 members in one batched forward versus one member after another,
measured side by side in one run. Target: K = 3 batched ≤ 1.5 × one member.

    python benchmarks/vla_latency.py [--backend embedded|smolvla|tinyvla] [--repeats 30] [--threads 2]   # prints JSON

`embedded`: the embedded VLA (members' weights stacked, one vmapped forward). `smolvla`: lerobot's SmolVLA as K
flow-matching noise samples of one checkpoint (the batch repeated K times, one forward); by default a tiny randomly
initialised SmolVLA built offline (`salus.vla.smolvla.tiny_smolvlm`); `--vlm DIR` builds the real-size architecture
from a local SmolVLM2 folder instead, and `--vlm smolvlm2-500m` from SmolVLM2-500M's published architecture written
here (`salus.vla.smolvla.SMOLVLM2_500M`; random weights: latency does not depend on them), `--device cuda` on a GPU.
`tinyvla`: TinyVLA as K diffusion-noise draws of one model (one backbone forward, the draws denoised in one batch;
sequential: one forward per draw); by default the tiny TinyVLA the tests use, `--tinyvla tinyvla-s` the released
TinyVLA-S architecture (`salus.vla.tinyvla.TINYVLA_S`: Pythia-410M, CLIP ViT-B/32 at 224 px, the released head's
widths, 16-action chunks, 10 DDIM steps; random weights).
"""
import argparse, contextlib, json, statistics, sys, time
from pathlib import Path

import numpy as np
import torch

from salus.vla import EmbeddedVLA, EmbeddedVLAConfig, VLAObservation

def latency_ms(fn, repeats):
    for _ in range(3): fn()
    times = []
    for _ in range(repeats):
        t = time.perf_counter(); fn(); times.append((time.perf_counter() - t) * 1000)
    return round(statistics.median(times), 3)

def smolvla_backend(K, vlm, device):
    "SmolVLA as K noise samples of one randomly initialised checkpoint: tiny, or the real architecture on `vlm`."
    import tempfile
    from lerobot.configs.types import FeatureType, PolicyFeature
    from lerobot.policies.smolvla.configuration_smolvla import SmolVLAConfig
    from lerobot.policies.smolvla.modeling_smolvla import SmolVLAPolicy
    from lerobot.policies.smolvla.processor_smolvla import make_smolvla_pre_post_processors
    from salus.vla.smolvla import SMOLVLM2_500M, SmolVLABackend, tiny_smolvla_config, tiny_smolvlm, write_smolvlm
    corpus = ['lift the red cube']  # the benchmark's one instruction (no MuJoCo import for the tokenizer's corpus)
    if vlm is None: config = tiny_smolvla_config(tiny_smolvlm(tempfile.mkdtemp(), corpus=corpus))
    elif vlm == 'smolvlm2-500m': vlm = write_smolvlm(tempfile.mkdtemp(), **SMOLVLM2_500M, corpus=corpus)
    if vlm is not None:  # SmolVLA's released architecture (defaults of SmolVLAConfig) on a SmolVLM2 folder
        config = SmolVLAConfig(vlm_model_name=str(vlm), load_vlm_weights=False,
                               input_features={'observation.images.camera1': PolicyFeature(FeatureType.VISUAL, (3, 96, 96)),
                                               'observation.state': PolicyFeature(FeatureType.STATE, (11,))},
                               output_features={'action': PolicyFeature(FeatureType.ACTION, (7,))})
    config.device = device
    torch.manual_seed(0)
    return SmolVLABackend([SmolVLAPolicy(config).to(device)], [make_smolvla_pre_post_processors(config, None)], members=K), config

def tinyvla_backend(K, size, device):
    "TinyVLA as K noise draws of one randomly initialised model: the tests' tiny one, or TinyVLA-S's architecture."
    import tempfile, warnings
    from transformers import CLIPImageProcessor
    from salus.vla.tinyvla import TINYVLA_S, LlavaPythiaForActions, TinyVLABackend, tinyvla_config, write_tiny_tinyvla, write_tinyvla_tokenizer
    warnings.filterwarnings('ignore', message='.*not normalised')
    corpus = ['lift the red cube']
    if size == 'tiny': return TinyVLABackend.from_pretrained(write_tiny_tinyvla(tempfile.mkdtemp()), members=K, device=device)
    folder = Path(tempfile.mkdtemp())
    tokenizer = write_tinyvla_tokenizer(folder, corpus=corpus)
    torch.manual_seed(0)
    model = LlavaPythiaForActions(tinyvla_config(TINYVLA_S['text'], TINYVLA_S['vision'], action_dim=10, state_dim=8, chunk_size=16))
    side = TINYVLA_S['vision']['image_size']
    processor = CLIPImageProcessor(size={'shortest_edge': side}, crop_size={'height': side, 'width': side})
    return TinyVLABackend(model, tokenizer, processor, members=K, device=device)

def main(repeats, threads, backend='embedded', vlm=None, device='cpu', tinyvla='tiny'):
    torch.set_num_threads(threads)
    rng = np.random.default_rng(0)
    obs = VLAObservation(rng.integers(0, 256, (1, 96, 96, 3), dtype=np.uint8), rng.integers(0, 256, (1, 96, 96, 3), dtype=np.uint8),
                         np.zeros((1, 11)), 'lift the red cube')
    out = dict(benchmark='vla_latency', backend=backend, threads=threads, repeats=repeats, device=device, ms={})
    for K in (1, 3, 5):
        if backend == 'embedded':
            vla = EmbeddedVLA(EmbeddedVLAConfig(), members=K, device=device)
            out['config'] = EmbeddedVLAConfig().__dict__
        elif backend == 'tinyvla':  # one model built once; K is how many noise draws it makes
            if K == 1: tiny_model = tinyvla_backend(K, tinyvla, device)
            vla, tiny_model.members = tiny_model, K
            c = vla.model.config
            out['config'] = dict(size=tinyvla, chunk_size=c['chunk_size'], action_dim=c['action_dim'], ddim_steps=vla.sampling_steps,
                                 image_size=c['vision_config']['vision_tower']['image_size'], parameters=sum(p.numel() for p in vla.model.parameters()))
        else:
            with contextlib.redirect_stdout(sys.stderr): vla, config = smolvla_backend(K, vlm, device)  # lerobot prints
            out['config'] = dict(vlm=str(config.vlm_model_name), chunk_size=config.chunk_size, flow_steps=config.num_steps,
                                 parameters=sum(p.numel() for p in vla.policies[0].parameters()))
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
    ap.add_argument('--backend', choices=['embedded', 'smolvla', 'tinyvla'], default='embedded')
    ap.add_argument('--tinyvla', choices=['tiny', 'tinyvla-s'], default='tiny', help="tinyvla: the tests' tiny model or TinyVLA-S's architecture")
    ap.add_argument('--vlm', help="smolvla: a local SmolVLM2 folder, or 'smolvlm2-500m' (the published architecture, "
                                  "written here); default: a tiny one built here")
    ap.add_argument('--device', default='cpu')
    a = ap.parse_args()
    print(json.dumps(main(a.repeats, a.threads, a.backend, a.vlm, a.device, a.tinyvla), indent=2))
