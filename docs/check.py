"""Check the built documentation site in a real headless browser (Debian's chromium).

Every page is loaded and its rendered DOM read back: it must have a title and no error output (tracebacks, Sphinx
warnings shown in the page), and every image it shows must exist. The index is also rendered to a screenshot,
`_docs/screenshot-index.png`, which must show the results table and a figure (enough non-white and coloured pixels).

    python docs/check.py            # after python docs/build.py; exits 1 on the first broken page
"""
import html.parser, shutil, subprocess, sys, tempfile
from pathlib import Path

import numpy as np
from PIL import Image

ROOT = Path(__file__).resolve().parents[1]
SITE = ROOT/'_docs'

def browser() -> str:
    for name in ('chromium', 'chromium-browser', 'google-chrome'):
        if path := shutil.which(name): return path
    sys.exit("docs/check.py: no chromium on PATH (apt-get install chromium; scripts/install.sh does)")

def chrome(*args:str) -> subprocess.CompletedProcess:
    with tempfile.TemporaryDirectory() as profile:
        cmd = [browser(), '--headless', '--no-sandbox', '--disable-gpu', '--hide-scrollbars', f'--user-data-dir={profile}',
               '--virtual-time-budget=5000', *args]
        return subprocess.run(cmd, capture_output=True, text=True, timeout=120)

class Page(html.parser.HTMLParser):
    "What a rendered page holds: its title, image sources, table count and visible text."
    def __init__(self):
        super().__init__()
        self.title, self.images, self.tables, self.text, self._in = '', [], 0, [], None
    def handle_starttag(self, tag, attrs):
        a = dict(attrs)
        if tag == 'title': self._in = 'title'
        elif tag == 'img' and a.get('src'): self.images.append(a['src'])
        elif tag == 'table': self.tables += 1
        elif tag in ('script', 'style'): self._in = 'skip'
    def handle_endtag(self, tag):
        if tag in ('title', 'script', 'style'): self._in = None
    def handle_data(self, data):
        if self._in == 'title': self.title += data
        elif self._in != 'skip': self.text.append(data)

def check_page(path:Path) -> Page:
    out = chrome('--dump-dom', path.as_uri())
    if out.returncode != 0 or '<html' not in out.stdout: raise SystemExit(f"{path}: chromium could not render it:\n{out.stderr[-2000:]}")
    page = Page()
    page.feed(out.stdout)
    text = ' '.join(page.text)
    if not page.title.strip(): raise SystemExit(f"{path}: no title")
    for bad in ('Traceback (most recent call last)', 'WARNING:', 'Error in', 'Exception occurred'):
        if bad in text: raise SystemExit(f"{path}: the rendered page shows {bad!r}")
    for src in page.images:
        if src.startswith(('data:', 'http')): continue
        if not (path.parent/src.split('#')[0]).is_file(): raise SystemExit(f"{path}: image {src} does not exist")
    return page

def main():
    if not (SITE/'index.html').is_file(): sys.exit(f"{SITE}/index.html missing: run python docs/build.py first")
    pages = sorted(p for p in SITE.rglob('*.html') if '_static' not in p.parts and p.name not in ('genindex.html', 'search.html'))
    for p in pages: check_page(p)
    index = check_page(SITE/'index.html')
    if index.tables < 2: raise SystemExit(f"index.html: expected the results tables, found {index.tables} table(s)")
    figures = {p.stem for p in (ROOT/'figures').glob('*.png')}
    if not any(Path(src).stem in figures for src in index.images): raise SystemExit("index.html: shows no figure of figures/")
    shot = SITE/'screenshot-index.png'
    out = chrome(f'--screenshot={shot}', '--window-size=1280,3000', (SITE/'index.html').as_uri())
    if not shot.is_file(): raise SystemExit(f"chromium wrote no screenshot:\n{out.stderr[-2000:]}")
    px = np.asarray(Image.open(shot).convert('RGB'), float)
    ink = (px.min(-1) < 200).mean()                                   # text, lines, figure
    colour = ((px.max(-1) - px.min(-1)) > 60).mean()                  # a figure's colours (text is grey)
    if ink < 0.02 or colour < 0.002: raise SystemExit(f"{shot}: looks blank (ink {ink:.3f}, colour {colour:.4f})")
    print(f"docs/check.py: {len(pages)} pages render in chromium; index screenshot {shot} (ink {ink:.3f}, colour {colour:.4f})")

if __name__ == '__main__':
    main()
