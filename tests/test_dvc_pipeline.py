"""DVC behaves as researchers expect, on a real pipeline of notebook stages run by `salus_stage`:
a finished run is cached, `dvc status` is clean, and a param change re-runs only the stages that read it.
Every stage lists `profile` among its params (the project's convention), so switching profile re-runs them."""
import re, shutil, subprocess

import pytest
import yaml

from salus.params import set_profile
from salus.stages import StageFailed, dvc, new_pipeline_notebook, prepare_external_data
from conftest import REPO, git

DEFAULTS = 'profile = "default"'
READ = 'from salus.params import load_params\np = load_params("params.yaml", profile=profile)'

def ran(root, *args) -> list[str]:
    "The stages `dvc repro` ran."
    out = dvc('repro', *args, cwd=root, capture=True).stdout
    return sorted(re.findall(r"Running stage '([^']+)'", out))

def write_pipeline(root):
    # `seeded` reads `seed`; `threads` reads `runtime`; `summary` reads `seeded`'s output; all read `profile`.
    new_pipeline_notebook(root/'nbs/pipeline/10_seeded.ipynb', DEFAULTS, READ,
                          'import pathlib\npathlib.Path("out").mkdir(exist_ok=True)\npathlib.Path("out/seeded.txt").write_text(str(p.seed * 10))')
    new_pipeline_notebook(root/'nbs/pipeline/20_threads.ipynb', DEFAULTS, READ,
                          'import pathlib\npathlib.Path("out").mkdir(exist_ok=True)\npathlib.Path("out/threads.txt").write_text(str(p.runtime.torch_threads))')
    new_pipeline_notebook(root/'nbs/pipeline/30_summary.ipynb', DEFAULTS,
                          'import pathlib\npathlib.Path("out/summary.txt").write_text("seeded=" + pathlib.Path("out/seeded.txt").read_text())')
    stage = lambda name, nb, params, deps=(), outs=(): {name: dict(
        cmd=f'salus_stage {name}', deps=[f'nbs/pipeline/{nb}', *deps], params=params, outs=[*outs, f'reports/{name}.ipynb'])}
    (root/'dvc.yaml').write_text(yaml.safe_dump({'stages': {
        **stage('seeded', '10_seeded.ipynb', ['profile', 'seed'], outs=['out/seeded.txt']),
        **stage('threads', '20_threads.ipynb', ['profile', 'runtime'], outs=['out/threads.txt']),
        **stage('summary', '30_summary.ipynb', ['profile'], deps=['out/seeded.txt'], outs=['out/summary.txt'])}}, sort_keys=False))
    git('add', '-A', cwd=root)
    git('commit', '-qm', 'pipeline', cwd=root)

def test_cached_clean_and_param_changes_rerun_only_dependents(mini_project):
    root = mini_project
    write_pipeline(root)
    assert ran(root) == ['seeded', 'summary', 'threads']
    assert (root/'out/summary.txt').read_text() == 'seeded=0'
    # right after a finished run: nothing to do, status clean
    assert ran(root) == []
    assert 'up to date' in dvc('status', cwd=root, capture=True).stdout
    # a param only `threads` reads
    (root/'params.yaml').write_text((root/'params.yaml').read_text().replace('torch_threads: 2', 'torch_threads: 3'))
    assert ran(root) == ['threads']
    assert (root/'out/threads.txt').read_text() == '3'
    # `seed` re-runs `seeded`, and `summary` because its input changed, but not `threads`
    (root/'params.yaml').write_text((root/'params.yaml').read_text().replace('seed: 0', 'seed: 4'))
    assert ran(root) == ['seeded', 'summary']
    assert (root/'out/summary.txt').read_text() == 'seeded=40'
    # switching profile re-runs every stage (they all read it)
    set_profile(root/'params.yaml', 'smoke')
    assert ran(root) == ['seeded', 'summary', 'threads']
    assert (root/'out/threads.txt').read_text() == '1'
    # a profile's override is part of its group: only `threads` reads `runtime`
    (root/'params.yaml').write_text((root/'params.yaml').read_text().replace('{torch_threads: 1}', '{torch_threads: 5}'))
    assert ran(root) == ['threads']
    assert (root/'out/threads.txt').read_text() == '5'
    assert 'up to date' in dvc('status', cwd=root, capture=True).stdout

def test_failing_stage_stops_repro_and_records_nothing(mini_project):
    root = mini_project
    write_pipeline(root)
    nb = root/'nbs/pipeline/20_threads.ipynb'
    new_pipeline_notebook(nb, DEFAULTS, 'raise RuntimeError("simulated crash in threads")')
    res = subprocess.run(['dvc', 'repro', 'threads'], cwd=root, capture_output=True, text=True)
    assert res.returncode != 0
    assert 'simulated crash in threads' in res.stdout + res.stderr
    assert not (root/'dvc.lock').exists() or 'threads' not in yaml.safe_load((root/'dvc.lock').read_text())['stages']

def test_external_data_recorded_empty_is_prepared(mini_project):
    root = mini_project
    shutil.copy(REPO/'data.dvc', root/'data.dvc')
    assert 'created' in prepare_external_data(root)
    assert (root/'data').is_dir()
    assert 'up to date' in dvc('status', cwd=root, capture=True).stdout
    assert (root/'data.dvc').read_text() == (REPO/'data.dvc').read_text()

def test_external_data_missing_without_remote_fails_and_changes_nothing(mini_project):
    root = mini_project
    (root/'data').mkdir()
    (root/'data/episodes_from_robot.txt').write_text('recorded elsewhere')
    dvc('add', 'data', cwd=root, capture=True)
    record = (root/'data.dvc').read_text()
    shutil.rmtree(root/'data'); shutil.rmtree(root/'.dvc/cache')          # a fresh clone: no data, empty cache
    with pytest.raises(StageFailed, match=r'data.dvc records 1 file\(s\) in data/, but there is no DVC remote'):
        prepare_external_data(root)
    assert (root/'data.dvc').read_text() == record
