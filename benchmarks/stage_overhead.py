"""Fixed cost of one pipeline stage: `salus_stage` on a notebook that does nothing, next to a bare `python -c pass`,
measured side by side in one run. This is the price each DVC stage pays before its own work starts.

    python benchmarks/stage_overhead.py [--repeats 5]      # prints JSON
"""
import argparse, json, shutil, statistics, subprocess, sys, tempfile, time
from pathlib import Path

from salus.stages import new_pipeline_notebook

def timed(cmd, cwd, repeats):
    out = []
    for _ in range(repeats):
        t = time.perf_counter()
        subprocess.run(cmd, cwd=cwd, check=True, capture_output=True)
        out.append(time.perf_counter() - t)
    return out

def main(repeats:int):
    root = Path(tempfile.mkdtemp(prefix='salus-bench-'))
    repo = Path(__file__).resolve().parents[1]
    for f in ('settings.ini', 'params.yaml', 'dvc.yaml'): shutil.copy(repo/f, root/f)
    new_pipeline_notebook(root/'nbs/pipeline/empty.ipynb', 'profile = "default"', 'pass')
    stage = timed([str(Path(sys.executable).parent/'salus_stage'), 'empty'], root, repeats)
    python = timed([sys.executable, '-c', 'pass'], root, repeats)
    shutil.rmtree(root)
    return dict(benchmark='stage_overhead', repeats=repeats,
                salus_stage_empty_s=dict(median=statistics.median(stage), min=min(stage)),
                python_startup_s=dict(median=statistics.median(python), min=min(python)),
                overhead_s_median=statistics.median(stage) - statistics.median(python))

if __name__ == '__main__':
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument('--repeats', type=int, default=5)
    print(json.dumps(main(ap.parse_args().repeats), indent=2))
