"""JupyterLab, as a researcher starts it: the server comes up headless on localhost, lists the project's notebooks
through its REST API, and a notebook opens with the project's kernel (`salus`), which imports the library."""
import json, os, secrets, socket, subprocess, sys, time, urllib.request
from pathlib import Path

import pytest

from conftest import REPO

def free_port() -> int:
    with socket.socket() as s:
        s.bind(('127.0.0.1', 0))
        return s.getsockname()[1]

def api(base, token, path, method='GET', body=None):
    req = urllib.request.Request(f'{base}{path}', method=method, data=None if body is None else json.dumps(body).encode(),
                                 headers={'Authorization': f'token {token}', 'Content-Type': 'application/json'})
    with urllib.request.urlopen(req, timeout=30) as r: return json.loads(r.read() or b'null')

@pytest.fixture(scope='module')
def lab(tmp_path_factory):
    port, token = free_port(), secrets.token_hex(16)
    log = (tmp_path_factory.mktemp('lab')/'lab.log').open('w')
    jupyter = Path(sys.executable).with_name('jupyter')
    proc = subprocess.Popen([str(jupyter), 'lab', '--no-browser', '--allow-root', '--ip=127.0.0.1', f'--port={port}', f'--IdentityProvider.token={token}',
                             f'--ServerApp.root_dir={REPO}'], stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                            env={**os.environ, 'JUPYTER_PLATFORM_DIRS': '1'})
    base = f'http://127.0.0.1:{port}'
    for _ in range(120):
        try:
            api(base, token, '/api/status')
            break
        except OSError:
            if proc.poll() is not None: pytest.fail(f"jupyter lab exited with {proc.returncode}; see {log.name}")
            time.sleep(0.5)
    else: pytest.fail(f"jupyter lab did not answer on {base} within 60 s; see {log.name}")
    yield base, token
    proc.terminate()
    proc.wait(timeout=30)

def test_lab_lists_the_notebooks(lab):
    base, token = lab
    listed = {c['name'] for c in api(base, token, '/api/contents/nbs')['content'] if c['type'] == 'notebook'}
    assert listed == {p.name for p in (REPO/'nbs').glob('*.ipynb')} and '07_intervene.ipynb' in listed
    pipeline = {c['name'] for c in api(base, token, '/api/contents/nbs/pipeline')['content']}
    assert {p.name for p in (REPO/'nbs/pipeline').glob('*.ipynb')} <= pipeline
    assert 'salus' in api(base, token, '/api/kernelspecs')['kernelspecs']
    html = urllib.request.urlopen(f'{base}/lab?token={token}', timeout=30).read().decode()
    assert 'JupyterLab' in html

def run_in_kernel(base, token, kernel_id, code) -> str:
    "Execute `code` in a running kernel through the server's websocket (as the Lab front end does); return its stdout."
    import asyncio, uuid
    from tornado.websocket import websocket_connect
    async def go():
        ws = await websocket_connect(f"{base.replace('http', 'ws')}/api/kernels/{kernel_id}/channels?token={token}")
        msg_id = uuid.uuid4().hex
        ws.write_message(json.dumps({'header': {'msg_id': msg_id, 'msg_type': 'execute_request', 'username': 'test', 'session': uuid.uuid4().hex,
                                                'version': '5.3'}, 'parent_header': {}, 'metadata': {}, 'channel': 'shell',
                                     'content': {'code': code, 'silent': False, 'store_history': False, 'user_expressions': {},
                                                 'allow_stdin': False, 'stop_on_error': True}}))
        out = []
        while True:
            m = json.loads(await asyncio.wait_for(ws.read_message(), 120))
            if m.get('parent_header', {}).get('msg_id') != msg_id: continue
            kind = m['header']['msg_type']
            if kind == 'stream': out.append(m['content']['text'])
            elif kind == 'error': raise AssertionError('\n'.join(m['content']['traceback']))
            elif kind == 'execute_reply':
                ws.close()
                return ''.join(out)
    return asyncio.run(go())

def test_a_notebook_opens_with_the_project_kernel(lab):
    base, token = lab
    nb = api(base, token, '/api/contents/nbs/07_intervene.ipynb')
    assert nb['content']['metadata']['kernelspec']['name'] == 'salus'
    session = api(base, token, '/api/sessions', 'POST', {'path': 'nbs/07_intervene.ipynb', 'type': 'notebook', 'kernel': {'name': 'salus'}})
    try:
        assert session['kernel']['name'] == 'salus'
        out = run_in_kernel(base, token, session['kernel']['id'], 'import sys, salus.intervene as m; print(sys.executable); print(m.STRATEGIES)')
        executable, strategies = out.strip().splitlines()
        assert Path(executable).parent == Path(sys.executable).parent       # the project's environment
        assert strategies == "('stop', 'slow', 'resample', 'human')"
    finally:
        api(base, token, f"/api/sessions/{session['id']}", 'DELETE')

def test_every_notebook_names_the_project_kernel():
    for p in sorted((REPO/'nbs').rglob('*.ipynb')):
        if '.ipynb_checkpoints' in p.parts: continue
        assert json.loads(p.read_text())['metadata']['kernelspec']['name'] == 'salus', p
