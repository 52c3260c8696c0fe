"The stage runner executes a pipeline notebook with papermill, keeps its report, and fails loudly."
import re, subprocess

import nbformat
import pytest

from salus.stages import StageFailed, new_pipeline_notebook, run_stage

DEFAULTS = 'profile = "default"'
READ = 'from salus.params import load_params\np = load_params("params.yaml", profile=profile)'

def stage_cli(root, *args):
    return subprocess.run(['salus_stage', *args], cwd=root, capture_output=True, text=True)

def test_report_holds_the_active_profile_values(mini_project):
    new_pipeline_notebook(mini_project/'nbs/pipeline/10_hello.ipynb', DEFAULTS, READ,
                          'import pathlib\npathlib.Path("out.txt").write_text(f"{profile} {p.seed} {p.runtime.torch_threads}")')
    res = stage_cli(mini_project, 'hello', '--profile', 'smoke')
    assert res.returncode == 0, res.stderr
    assert (mini_project/'out.txt').read_text() == 'smoke 0 1'   # runs in the project root, smoke's torch_threads
    report = nbformat.read(mini_project/'reports/hello.ipynb', as_version=4)
    injected = [c for c in report.cells if 'injected-parameters' in c.metadata.get('tags', [])]
    assert len(injected) == 1 and 'profile = "smoke"' in injected[0].source

def test_a_raising_notebook_fails_the_stage_with_the_error_shown(mini_project):
    new_pipeline_notebook(mini_project/'nbs/pipeline/broken.ipynb', DEFAULTS, 'x = 1', 'def load(): raise KeyError("episode_ends")\nload()')
    res = stage_cli(mini_project, 'broken')
    assert res.returncode == 1
    assert "salus_stage broken: FAILED" in res.stderr
    assert "cell #3 of broken.ipynb raised KeyError: 'episode_ends'" in res.stderr
    assert 'def load(): raise KeyError("episode_ends")' in res.stderr     # the failing cell's traceback
    report = nbformat.read(mini_project/'reports/broken.ipynb', as_version=4)
    assert any(o.get('output_type') == 'error' for c in report.cells for o in c.get('outputs', []))

def test_a_parameters_cell_with_values_salus_stage_does_not_inject_is_refused(mini_project):
    "A notebook's copy of a params value (here a stale `epochs = 12`) would shadow params.yaml: refused before running."
    new_pipeline_notebook(mini_project/'nbs/pipeline/stale.ipynb', 'profile = "default"\nepochs = 12\nseed: int = 0', 'open("ran", "w")')
    res = stage_cli(mini_project, 'stale')
    assert res.returncode == 1 and "the parameters cell sets ['epochs', 'seed'], which salus_stage does not inject" in res.stderr
    assert not (mini_project/'ran').exists()

def test_every_way_of_setting_a_name_in_the_parameters_cell_is_seen(mini_project):
    from salus.stages import _parameters_cell
    for i, (cell, stray) in enumerate([('profile = "default"\nseed, runtime = 0, {}', "['seed', 'runtime']"),
                                       ('profile = "default"\nepochs = 1\nepochs += 1', "['epochs']"),
                                       ('profile = "default"\nfor k in range(2): pass', "['k']")]):
        nb = new_pipeline_notebook(mini_project/f'nbs/pipeline/p{i}.ipynb', cell, 'pass')
        with pytest.raises(StageFailed, match=re.escape(f"the parameters cell sets {stray}")): _parameters_cell(nb)
    nb = new_pipeline_notebook(mini_project/'nbs/pipeline/magic.ipynb', '%matplotlib inline\nprofile = "default"', 'pass')
    with pytest.raises(StageFailed, match='the parameters cell is not plain Python assignments'): _parameters_cell(nb)
    assert _parameters_cell(new_pipeline_notebook(mini_project/'nbs/pipeline/ok.ipynb', 'profile = "default"', 'pass')) == 0

def test_bad_params_fail_the_stage_before_running(mini_project):
    new_pipeline_notebook(mini_project/'nbs/pipeline/hello.ipynb', DEFAULTS, 'open("ran", "w")')
    (mini_project/'params.yaml').write_text((mini_project/'params.yaml').read_text().replace('seed: 0', 'seed: -1'))
    res = stage_cli(mini_project, 'hello')
    assert res.returncode == 1 and 'seed: Input should be greater than or equal to 0' in res.stderr
    assert not (mini_project/'ran').exists()

def test_notebook_without_parameters_cell_is_refused(mini_project):
    nb = nbformat.v4.new_notebook(cells=[nbformat.v4.new_code_cell('seed = 0')])
    (mini_project/'nbs/pipeline').mkdir(parents=True)
    nbformat.write(nb, mini_project/'nbs/pipeline/plain.ipynb')
    with pytest.raises(StageFailed, match="no cell tagged 'parameters'"): run_stage('plain', root=mini_project)

def test_unknown_stage_and_missing_kernel(mini_project):
    new_pipeline_notebook(mini_project/'nbs/pipeline/20_hello.ipynb', DEFAULTS)
    with pytest.raises(StageFailed, match=r"no pipeline notebook for stage 'demo'.*stages: hello"): run_stage('demo', root=mini_project)
    with pytest.raises(StageFailed, match="Jupyter kernel 'no-such-kernel' is not installed"):
        run_stage('hello', root=mini_project, kernel='no-such-kernel', progress=False)
