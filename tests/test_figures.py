"""Paper figures from small real data: frames from a real rollout store, byte-stable PNG and PDF files, episode picks,
scaled signal traces, plot tables that may be empty on tiny profiles, and clear errors."""
import numpy as np
import pandas as pd
import pytest
from PIL import Image

from salus.collect import RolloutConfig, collect_rollouts, episode_specs
from salus.figures import (FigureError, auroc_by_horizon_figure, intervention_figure, lead_time_figure, montage_frames,
                           overhead_figure, paper_style, pick_episodes, q_auc_figure, read_table, roc_figure, save_figure, signal_traces,
                           signals_figure, task_montage)
from salus.vla import EmbeddedVLA, EmbeddedVLAConfig

ENVS = dict(image_size=32, control_hz=10, collision_force=60.0, seen_tasks=['lift_red'], unseen_tasks=['open_drawer'])

@pytest.fixture(scope='module')
def store(tmp_path_factory):
    tmp = tmp_path_factory.mktemp('figures')
    EmbeddedVLA(EmbeddedVLAConfig(image_size=32, channels=8, keypoints=4, hidden=16, flow_steps=2), members=2).save(tmp/'policy')
    cfg = RolloutConfig(str(tmp/'policy'), ENVS, ('epistemic', 'smoothness'), samples=0)
    return collect_rollouts(tmp/'r.zarr', episode_specs(['lift_red'], ['open_drawer'], {'nominal': {}}, 1, seed=3), cfg, 'serial', progress=False)

def test_montage_shows_the_first_frames_and_saves_stable_files(store, tmp_path):
    paper_style()
    frames = montage_frames(store, ['lift_red', 'open_drawer'])
    assert np.array_equal(frames['open_drawer'], store.data('front')[store.episode_slice(1).start])
    first = save_figure(task_montage(frames, unseen=['open_drawer']), tmp_path/'a/montage')
    second = save_figure(task_montage(frames, unseen=['open_drawer']), tmp_path/'b/montage')
    assert [p.suffix for p in first] == ['.png', '.pdf']
    for a, b in zip(first, second): assert a.read_bytes() == b.read_bytes()           # no timestamps
    assert Image.open(first[0]).size[0] > 1000 and first[1].read_bytes().startswith(b'%PDF')
    with pytest.raises(FigureError, match="no 'shifted' episode of task 'lift_red'"): montage_frames(store, ['lift_red'], 'shifted')

def test_pick_episodes_prefers_typed_nominal_failures_and_a_success():
    meta = {'task': np.array(['a', 'a', 'a', 'a', 'b']), 'shift_name': np.array(['shifted', 'nominal', 'nominal', 'nominal', 'nominal']),
            'outcome': np.array(['failure', 'failure', 'failure', 'success', 'failure']),
            'failure_type': np.array(['drop', 'timeout', 'miss', '', 'drop']), 'steps': np.array([30, 30, 25, 40, 30])}
    assert pick_episodes(meta, 'a') == (2, 3)                       # nominal, not a timeout; the success
    assert pick_episodes(meta, 'b') == (4, None)                    # no success of this task
    with pytest.raises(FigureError, match="no episode of task 'c'"): pick_episodes(meta, 'c')

def test_signal_traces_are_scaled_by_the_success_episode():
    rng = np.random.default_rng(0)
    traces = signal_traces({'failure': rng.normal(0, 5, (20, 2)), 'success': rng.normal(0, 3, (30, 2))}, ['x', 'y'])
    ok = traces[traces.outcome == 'success']
    assert np.allclose(ok.groupby('signal').value.std(ddof=0), 1.0) and len(traces) == 100
    fig = signals_figure(traces, failure_step=20)
    assert len([a for a in fig.axes if a.get_title()]) == 2

def test_tables_may_be_empty_but_not_malformed(tmp_path):
    (tmp_path/'empty.csv').write_text('\n')
    empty = read_table(tmp_path/'empty.csv', ['split', 'scorer', 'lead_time_s'])
    assert list(empty.columns) == ['split', 'scorer', 'lead_time_s'] and not len(empty)
    lead_time_figure(empty, ['salus'])                              # says "no alarmed failure" instead of failing
    roc_figure(pd.DataFrame(columns=['panel', 'scorer', 'fpr', 'tpr']), ['salus'])
    (tmp_path/'bad.csv').write_text('a,b\n1,2\n')
    with pytest.raises(FigureError, match=r"missing column\(s\) \['split', 'scorer', 'lead_time_s'\]"): read_table(tmp_path/'bad.csv', ['split', 'scorer', 'lead_time_s'])
    with pytest.raises(FileNotFoundError, match='no such plot table'): read_table(tmp_path/'nope.csv', ['a'])
    with pytest.raises(FigureError, match='no outcomes'): intervention_figure(pd.DataFrame(columns=['split', 'condition', 'outcome', 'rate']))
    with pytest.raises(FigureError, match='no AUROC values'): auroc_by_horizon_figure({'seen': {'salus': {'h1s': {'any': None}}}})
    with pytest.raises(FigureError, match='no latencies'): overhead_figure({})

def test_outcome_bars_add_up(tmp_path):
    rows = [dict(split='seen', condition=c, outcome=o, rate=r) for c, rates in (('none', (0.5, 0.0, 0.5)), ('stop', (0.4, 0.5, 0.1)))
            for o, r in zip(('success', 'abort', 'collision'), rates)]
    fig = intervention_figure(pd.DataFrame(rows))
    heights = {}
    for bar in fig.axes[0].patches: heights[round(bar.get_x(), 3)] = heights.get(round(bar.get_x(), 3), 0) + bar.get_height()
    assert np.allclose(sorted(heights.values()), [1.0, 1.0])

def test_roc_panels_wrap_and_q_auc_curves_draw_controls_dashed(tmp_path):
    paper_style()
    roc = pd.DataFrame([dict(panel=f'task {i}', scorer=s, fpr=f, tpr=f ** (0.5 if s == 'salus' else 1)) for i in range(5)
                        for s in ('salus', 'elapsed') for f in np.linspace(0, 1, 11)])
    fig = roc_figure(roc, ['salus', 'elapsed'], columns=3)
    shown = [ax for ax in fig.axes if ax.get_visible() and ax.axison]
    assert len(fig.axes) == 6 and len(shown) == 5 and [ax.get_title() for ax in shown] == [f'task {i}' for i in range(5)]
    curves = pd.DataFrame([dict(panel=p, scorer=s, q=q, q_auc=0.5 + (0.2 if s == 'salus' else 0.4 * q * (p == 'b')), low=None, high=None)
                           for p in ('a', 'b') for s in ('salus', 'elapsed') for q in (0.1, 0.25, 1.0)])
    fig = q_auc_figure(curves, ['salus', 'elapsed'])
    lines = {l.get_label(): l for l in fig.axes[0].get_lines() if not l.get_label().startswith('_')}
    assert lines['elapsed'].get_linestyle() == '--' and lines['salus'].get_linestyle() == '-'
    assert np.allclose(lines['salus'].get_ydata(), 0.7)
    png, pdf = save_figure(fig, tmp_path/'q_auc')
    assert png.stat().st_size > 10_000 and pdf.read_bytes().startswith(b'%PDF')
    with pytest.raises(FigureError, match="missing column"): q_auc_figure(curves.drop(columns='q_auc'), ['salus'])
