"The library's layers: no import circle (lazy imports included), a leaf that imports no salus module, params that imports only the leaf, and every DVC stage's `deps` naming exactly the library files its notebook runs."
from pathlib import Path

import yaml

from salus.stages import ProjectPaths, _module_file, _salus_imports, find_stage_notebook, stage_module_deps

ROOT = Path(__file__).resolve().parents[1]

def module_name(f:Path) -> str:
    rel = f.relative_to(ROOT).with_suffix('')
    return '.'.join(rel.parts[:-1] if f.name == '__init__.py' else rel.parts)

def import_graph() -> dict[str, set[str]]:
    "salus module -> the salus modules it imports anywhere in its code (inside functions too)."
    files = {module_name(f): f for f in (ROOT/'salus').rglob('*.py') if f.name != '_modidx.py'}
    graph = {}
    for name, f in files.items():
        found = _salus_imports(f.read_text(), name, is_package=f.name == '__init__.py')
        graph[name] = {module_name(m) for n in found if (m := _module_file(ROOT, n))} - {name, 'salus'}
    return graph

def test_the_import_graph_has_no_circle():
    graph, state, path = import_graph(), {}, []
    assert {'salus.base', 'salus.params', 'salus.stages', 'salus.vla', 'salus.vla.smolvla'} <= set(graph)
    def visit(n):
        state[n] = 'open'; path.append(n)
        for m in sorted(graph.get(n, ())):
            assert state.get(m) != 'open', f"import circle: {' -> '.join(path[path.index(m):] + [m])}"
            if m not in state: visit(m)
        state[n] = 'done'; path.pop()
    for n in sorted(graph):
        if n not in state: visit(n)

def test_the_leaf_and_params_import_nothing_above_them():
    graph = import_graph()
    assert graph['salus.base'] == set()
    assert graph['salus.params'] == {'salus.base'}
    assert not any('salus.stages' in deps for name, deps in graph.items() if name != 'salus.stages'), "the stage runner is the top layer"

def test_every_stage_lists_the_library_files_its_notebook_runs():
    paths = ProjectPaths(ROOT)
    stages = yaml.safe_load((ROOT/'dvc.yaml').read_text())['stages']
    problems = []
    for name, stage in stages.items():
        wanted = stage_module_deps(ROOT, find_stage_notebook(paths, stage['cmd'].split()[-1]))
        listed = [d for d in stage['deps'] if d.startswith('salus/')]
        if missing := sorted(set(wanted) - set(listed)): problems.append(f"{name}: deps lack {missing}")
        if extra := sorted(set(listed) - set(wanted)): problems.append(f"{name}: deps name {extra}, which its notebook never runs")
    assert not problems, '\n'.join(problems)
    assert 'salus/language.py' in stages['evaluate']['deps']   # the instruction encoder, imported inside a function
    assert not any(d.startswith('salus/vla/') for d in stages['evaluate']['deps'])  # and no policy code

def test_stage_deps_follow_imports_inside_functions_and_packages(tmp_path):
    (tmp_path/'salus/vla').mkdir(parents=True)
    (tmp_path/'salus/__init__.py').write_text('')
    (tmp_path/'salus/stages.py').write_text('from salus.base import x\ndef repro():\n    from salus.report import sync\n')
    (tmp_path/'salus/base.py').write_text('')
    (tmp_path/'salus/report.py').write_text('')
    (tmp_path/'salus/model.py').write_text('def f():\n    from .vla import smolvla\n')
    (tmp_path/'salus/vla/__init__.py').write_text('from salus.base import x\n')
    (tmp_path/'salus/vla/smolvla.py').write_text('from . import VLAObservation\n')
    import nbformat
    nb = nbformat.v4.new_notebook(cells=[nbformat.v4.new_code_cell('%matplotlib inline\nfrom salus.model import f')])
    nbformat.write(nb, tmp_path/'stage.ipynb')
    assert stage_module_deps(tmp_path, tmp_path/'stage.ipynb') == [
        'salus/base.py', 'salus/model.py', 'salus/stages.py', 'salus/vla/__init__.py', 'salus/vla/smolvla.py']
