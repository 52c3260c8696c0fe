"""The runtime monitor and the intervention runs on a real (small, untrained) ensemble and a real trained predictor:
paired episodes, each strategy's effect when alarms never or always fire, crash-safe resume, metrics, clear errors."""
import json, re
from dataclasses import replace

import numpy as np
import pytest
import torch

from salus.collect import RolloutConfig, collect_rollouts, episode_specs, rollout_episode
from salus.base import derive_seed
from salus.params import EnvsParams
from salus.envs import ScriptedExpert, make_env
from salus.intervene import (STRATEGIES, InterventionConfig, InterventionError, Monitor, MonitorConfig,
                             consensus_action, intervention_metrics, intervention_specs, monitored_episode, run_interventions)
from salus.predictor import (ConformalThresholds, PredictorConfig, PredictorError, TrainConfig, load_signal_episodes, save_predictor,
                             train_predictor)
from salus.signals import FeatureNovelty
from salus.vla import EmbeddedVLA, EmbeddedVLAConfig, VLAObservation

ENVS = dict(image_size=32, control_hz=10, collision_force=60.0, seen_tasks=['lift_red'], unseen_tasks=['open_drawer'])
SIGNALS = ('epistemic', 'smoothness', 'chunk_disagreement', 'sample_dispersion', 'knn_novelty')
HORIZONS = [0.5, 1.0]

def thresholds_at(model, value:float) -> ConformalThresholds:
    "Thresholds of one value everywhere: 1.0 never alarms (probabilities are ≤ 1), -1 always does."
    H, K1 = model.config.output_shape
    z = np.zeros((1, H, K1))
    return ConformalThresholds([0.1], HORIZONS, model.config.output_names, np.full((1, H, K1), value), z, z, z, 0)

@pytest.fixture(scope='module')
def world(tmp_path_factory):
    "An untrained two-member ensemble, a novelty reference, and a predictor trained on three of its rollouts."
    tmp = tmp_path_factory.mktemp('intervene')
    vla = EmbeddedVLA(EmbeddedVLAConfig(image_size=32, channels=8, keypoints=4, hidden=16, flow_steps=2), members=2, seed=5)
    vla.save(tmp/'policy')
    FeatureNovelty(np.random.default_rng(0).normal(size=(64, 32)), k=3).save(tmp/'novelty')
    rollout_cfg = RolloutConfig(str(tmp/'policy'), ENVS, SIGNALS, samples=2, novelty_path=str(tmp/'novelty'))
    store = collect_rollouts(tmp/'rollouts.zarr', episode_specs(['lift_red'], [], {'nominal': {}}, 3, seed=0), rollout_cfg,
                             backend='serial', progress=False)
    data = load_signal_episodes(store, HORIZONS)
    model = train_predictor(data, [0, 1], [2], PredictorConfig(list(SIGNALS), HORIZONS, 10, window=4, arch='mlp', hidden=8),
                            TrainConfig(epochs=2), progress=False)[0]
    for name, value in (('never', 1.0), ('always', -1.0)):
        save_predictor(model, tmp/name/'seed0')
        thresholds_at(model, value).save(tmp/name/'seed0'/'thresholds.json')
    monitor = MonitorConfig(samples=2, resample_samples=3, human_steps=3, max_help_requests=2)
    cfg = lambda name: InterventionConfig(str(tmp/'policy'), str(tmp/name), ENVS, monitor, str(tmp/'novelty'))
    episodes = episode_specs(['lift_red'], ['open_drawer'], {'nominal': {}, 'shifted': {'pose': 0.03, 'distractors': 1}}, 1, seed=11)
    return dict(tmp=tmp, vla=vla, model=model, cfg=cfg, rollout_cfg=rollout_cfg, episodes=episodes,
                novelty=FeatureNovelty.load(tmp/'novelty'))

def run(world, name, condition, episode):
    from salus.intervene import InterventionSpec
    return monitored_episode(InterventionSpec(episode, condition, 0), world['cfg'](name))

def observation(task='lift_red', seed=0):
    obs, info = make_env(task, EnvsParams(**ENVS)).reset(seed=seed)
    return VLAObservation(obs['front'], obs['wrist'], obs['state'], info['instruction'])

def test_unmonitored_run_is_the_collected_episode(world):
    "Same seed, same noise: the monitor's policy steps are collection's, so conditions are paired."
    for e in world['episodes']:
        r = run(world, 'always', 'none', e)              # alarms everywhere, but 'none' never acts
        data, meta = rollout_episode(e, world['rollout_cfg'])
        assert (r['outcome'], r['failure_type'], r['steps']) == (meta['outcome'], meta['failure_type'], meta['steps'])
        assert r['alarm_steps'] == r['steps'] and r['first_alarm'] == 0 and r['help_requests'] == 0

@pytest.mark.parametrize('strategy', STRATEGIES)
def test_no_alarm_no_intervention(world, strategy):
    for e in world['episodes'][:2]:
        base, r = run(world, 'never', 'none', e), run(world, 'never', strategy, e)
        assert (r['outcome'], r['failure_type'], r['steps']) == (base['outcome'], base['failure_type'], base['steps'])
        assert r['alarm_steps'] == r['first_alarm'] + 1 == 0
        assert r['help_requests'] == r['slowed_steps'] == r['resampled_steps'] == 0

def test_every_step_alarmed(world):
    e = world['episodes'][0]
    base = run(world, 'always', 'none', e)
    stop = run(world, 'always', 'stop', e)
    assert (stop['outcome'], stop['steps'], stop['failure_type']) == ('abort', 0, '')
    slow = run(world, 'always', 'slow', e)
    assert slow['slowed_steps'] == slow['steps'] > 0
    resample = run(world, 'always', 'resample', e)
    assert resample['resampled_steps'] == resample['steps'] > 0
    human = run(world, 'always', 'human', e)
    assert human['help_requests'] == 2 and human['help_steps'] == min(6, human['steps'])   # 2 requests × 3 steps, then no more
    assert base['outcome'] != 'abort'

def test_slow_and_resample_actions(world):
    o = observation()
    never, always = thresholds_at(world['model'], 1.0), thresholds_at(world['model'], -1.0)
    cfg = MonitorConfig(samples=2, resample_samples=3)
    d0 = Monitor(world['vla'], world['model'], never, replace(cfg, strategy='slow'), world['novelty'], seed=3).step(o)
    d = Monitor(world['vla'], world['model'], always, replace(cfg, strategy='slow'), world['novelty'], seed=3).step(o)
    assert np.array_equal(d0.proposed, d.proposed) and np.array_equal(d0.action, d0.proposed)   # same seed, same proposal
    assert list(d.kind) == ['slow'] and np.allclose(d.action[:, :6], 0.5 * d.proposed[:, :6]) and d.action[0, 6] == d.proposed[0, 6]
    r = Monitor(world['vla'], world['model'], always, replace(cfg, strategy='resample'), world['novelty'], seed=3).step(o)
    fresh = world['vla'].member_chunks(o, torch.Generator().manual_seed(derive_seed(3, 'resample')), samples=3)[0]  # (3, K, 1, T, A)
    candidates = fresh.reshape(-1, 1, *fresh.shape[-2:])[:, :, 0]
    assert list(r.kind) == ['resample'] and np.allclose(r.action, np.clip(consensus_action(candidates), -1, 1))
    assert any(np.allclose(r.action[0], np.clip(c[0], -1, 1)) for c in candidates)   # an action some member proposed (clipped)
    assert np.array_equal(r.proposed, d.proposed)                               # resampling leaves the policy's noise alone
    assert d.risk.shape == (1, 2, 5) and np.isfinite(d.risk).all() and d.signals.shape == (1, len(SIGNALS))

def test_consensus_is_the_medoid():
    rng = np.random.default_rng(1)
    for _ in range(20):
        c = rng.normal(size=(int(rng.integers(1, 9)), 2, 3))
        got = consensus_action(c)
        for b in range(2):
            cost = lambda x: np.linalg.norm(c[:, b] - x, axis=-1).sum()
            assert cost(got[b]) <= min(cost(x) for x in c[:, b]) + 1e-5
    with pytest.raises(InterventionError, match='candidates must be'): consensus_action(np.zeros((3, 4)))

def test_expert_takes_over_a_held_object():
    env = make_env('lift_red', render=False)
    env.reset(seed=3)
    expert = ScriptedExpert(env)
    while not env.object_held: env.step(expert.act())
    helper = ScriptedExpert(env)
    helper.take_over()
    assert helper.phase == 3                                    # carries on lifting, does not open the gripper to re-approach
    while env.outcome == 'running': env.step(helper.act())
    assert env.outcome == 'success'
    fresh = make_env('lift_red', render=False)
    fresh.reset(seed=3)
    helper = ScriptedExpert(fresh)
    helper.take_over()
    assert helper.phase == 0 and not fresh.object_held

def test_run_resumes_and_refuses_other_specs(world):
    tmp, cfg = world['tmp'], world['cfg']('never')
    specs = intervention_specs(world['episodes'][:2], ['stop', 'slow'], 1)
    assert [s.condition for s in specs] == ['none', 'none', 'stop', 'stop', 'slow', 'slow']
    whole = run_interventions(tmp/'whole.jsonl', specs, cfg, backend='serial', progress=False)
    run_interventions(tmp/'part.jsonl', specs[:3], cfg, backend='serial', progress=False)          # killed after 3
    resumed = run_interventions(tmp/'part.jsonl', specs, cfg, backend='local', workers=2, progress=False)
    strip = lambda rs: [{k: v for k, v in r.items() if not k.endswith('_ms')} for r in rs]
    assert strip(resumed) == strip(whole)
    assert strip(json.loads(l) for l in (tmp/'part.jsonl').read_text().splitlines()) == strip(whole)
    with pytest.raises(InterventionError, match='not the first'):
        run_interventions(tmp/'part.jsonl', intervention_specs(world['episodes'][2:], ['stop', 'slow'], 1), cfg, 'serial', progress=False)
    (tmp/'bad.jsonl').write_text('{"index": 0\n')
    with pytest.raises(InterventionError, match='line 1 is not JSON'): run_interventions(tmp/'bad.jsonl', specs, cfg, 'serial', progress=False)
    with pytest.raises(FileNotFoundError, match=r'no predictor .* for seed\(s\) \[1\]'):
        run_interventions(tmp/'x.jsonl', intervention_specs(world['episodes'][:1], ['stop'], 2), cfg, 'serial', progress=False)
    with pytest.raises(InterventionError, match='unknown strategies'): intervention_specs(world['episodes'], ['pray'], 1)

def rec(i, c, outcome, seed=0, split='seen', help_requests=0):
    return dict(index=i, condition=c, predictor_seed=seed, outcome=outcome, failure_type='' if outcome != 'failure' else 'collision',
                help_requests=help_requests, first_alarm=-1 if outcome == 'success' else 2, split=split, steps=10, policy_ms=1.0, monitor_ms=0.1)

def test_metrics_average_seeds_and_pair_episodes():
    n = 40
    base = [rec(i, 'none', 'success' if i % 2 else 'failure') for i in range(n)]
    stop0 = [rec(i, 'stop', 'abort' if i % 4 == 0 else r['outcome'], seed=0) for i, r in enumerate(base)]    # stops half the failures
    stop1 = [rec(i, 'stop', 'abort' if i % 2 == 0 or i % 10 == 1 else 'success', seed=1) for i in range(n)]  # all failures, some successes
    m = intervention_metrics(base + stop0 + stop1, bootstrap=200, seed=0)['all']
    assert m['none']['failure_rate'] == 0.5 and m['none']['success_change'] == 0 and m['none']['seeds'] == 1
    s = m['stop']
    assert s['seeds'] == 2 and s['n_episodes'] == n
    assert s['failure_reduction'] == pytest.approx((0.5 + 1.0) / 2)
    assert s['false_stop_rate'] == pytest.approx((0 + 4 / 20) / 2) and s['false_stops'] == pytest.approx(2.0)
    assert s['success_change'] == pytest.approx((0 + -0.1) / 2)
    for k in ('failure_reduction', 'success_rate', 'abort_rate'):
        lo, hi = s[k + '_ci']
        assert lo <= s[k] <= hi and hi - lo < 0.6
    assert set(intervention_metrics(base + stop0, bootstrap=5)) == {'all', 'seen'}
    with pytest.raises(InterventionError, match='confidence'): intervention_metrics(base, confidence=1.5)
    with pytest.raises(InterventionError, match='no intervention records'): intervention_metrics([])

def test_bad_monitor_setup_is_named(world):
    m, vla = world['model'], world['vla']
    with pytest.raises(InterventionError, match="unknown strategy 'hope'"): MonitorConfig('hope')
    with pytest.raises(InterventionError, match='slow_factor'): MonitorConfig('slow', slow_factor=1.5)
    with pytest.raises(InterventionError, match='needs samples ≥ 2'): Monitor(vla, m, thresholds_at(m, 1), MonitorConfig(samples=1), world['novelty'])
    other = ConformalThresholds([0.1], [0.2, 1.0], m.config.output_names, np.ones((1, 2, 5)), *[np.zeros((1, 2, 5))] * 3, 0)
    with pytest.raises(InterventionError, match='thresholds are for horizons'): Monitor(vla, m, other, MonitorConfig(samples=2), world['novelty'])
    with pytest.raises(ValueError, match='need a fitted FeatureNovelty'): Monitor(vla, m, thresholds_at(m, 1), MonitorConfig(samples=2))
    mon = Monitor(vla, m, thresholds_at(m, 1), MonitorConfig(samples=2), world['novelty'], n_envs=2)
    with pytest.raises(InterventionError, match='batch of 1 observations'): mon.step(observation())
    with pytest.raises(FileNotFoundError, match='no policy checkpoint'):
        run_interventions(world['tmp']/'y.jsonl', [], replace(world['cfg']('never'), policy_path=str(world['tmp']/'nope')), 'serial')

def test_readme_shows_the_generated_intervention_table():
    from conftest import REPO
    from salus.report import sync_readme_results
    assert sync_readme_results(REPO/'README.md', REPO/'metrics/intervention.md', check=True), \
        "README's intervention table differs from metrics/intervention.md: run `make repro`"

def test_monitor_refuses_thresholds_that_do_not_fit(world):
    "Thresholds of another shape, NaN in a watched output, thresholds arrays shorter than their alphas: named, never broadcast."
    m, vla, nov, cfg = world['model'], world['vla'], world['novelty'], MonitorConfig(samples=2)
    H, K1 = m.config.output_shape
    for shape in [(1, H, K1 - 1), (1,), (1, 1, 1), (1, H, K1, 1)]:   # an output missing; the last three used to broadcast
        th = thresholds_at(m, 1.0)
        th.constant = np.ones(shape)
        got = str(shape[1:]).replace(',)', ')')
        with pytest.raises(InterventionError, match=rf'thresholds at alpha=0.1 are {re.escape(got)}, the predictor predicts \({H}, {K1}\)'):
            Monitor(vla, m, th, cfg, nov)
    th = thresholds_at(m, 1.0)
    th.constant[0, 1, -1] = np.nan                                   # the watched output: h = 1.0 s, 'any'
    with pytest.raises(InterventionError, match=r"threshold at alpha=0.1 is NaN for horizon 1 s, output 'any'"): Monitor(vla, m, th, cfg, nov)
    th = thresholds_at(m, 1.0)
    th.constant[0, 0, 0] = np.nan                                    # unwatched: never alarms, no error
    Monitor(vla, m, th, cfg, nov)
    th = thresholds_at(m, 1.0)
    th.constant[0, 1, -1] = np.inf                                   # inf is legitimate (too few successes): a warning
    with pytest.warns(UserWarning, match='no alarm can fire'): Monitor(vla, m, th, cfg, nov)
    th = thresholds_at(m, 1.0)
    th.alphas = [0.1, 0.2]                                           # more alphas than thresholds
    with pytest.raises(PredictorError, match=r'calibrated for alphas \[0.1, 0.2\] but constant thresholds has 1'):
        Monitor(vla, m, th, replace(cfg, alpha=0.2), nov)
    with pytest.raises(PredictorError, match=r'no thresholds for alpha=0.3; calibrated for \[0.1\]'):
        Monitor(vla, m, thresholds_at(m, 1.0), replace(cfg, alpha=0.3), nov)

def test_monitor_refuses_bad_sizes_and_rates(world):
    m, vla, nov = world['model'], world['vla'], world['novelty']
    for n in (0, -1, 1.5, True):
        with pytest.raises(InterventionError, match=rf'n_envs must be an integer ≥ 1, got {n!r}'):
            Monitor(vla, m, thresholds_at(m, 1.0), MonitorConfig(samples=2), nov, n_envs=n)
    for a in (0, 1, 1.5, -0.1, float('nan')):
        with pytest.raises(InterventionError, match=r'alpha must be in \(0, 1\)'): MonitorConfig(alpha=a)
    with pytest.raises(InterventionError, match='samples must be ≥ 0, got -1'): MonitorConfig(samples=-1)

def _strip(records): return [{k: v for k, v in r.items() if not k.endswith('_ms')} for r in records]

def test_run_drops_a_torn_last_line_and_resumes(world):
    "A crash mid-write leaves a partial last line: it is cut off (with a warning) and that spec runs again."
    tmp, cfg = world['tmp'], world['cfg']('never')
    specs = intervention_specs(world['episodes'][:2], [], 1)
    whole = run_interventions(tmp/'torn_whole.jsonl', specs, cfg, backend='serial', progress=False)
    lines = (tmp/'torn_whole.jsonl').read_text().splitlines(keepends=True)
    torn = tmp/'torn.jsonl'
    torn.write_text(lines[0] + lines[1][:len(lines[1]) // 2])     # killed while writing the second record
    with pytest.warns(UserWarning, match=r'torn\.jsonl: its last line is incomplete .* dropped it'):
        resumed = run_interventions(torn, specs, cfg, backend='serial', progress=False)
    assert _strip(resumed) == _strip(whole)
    assert _strip(json.loads(l) for l in torn.read_text().splitlines()) == _strip(whole) and torn.read_text().endswith('\n')
    torn.write_text(lines[0] + lines[1].rstrip('\n'))             # complete, only the newline lost: kept, newline restored
    assert _strip(run_interventions(torn, specs, cfg, backend='serial', progress=False)) == _strip(whole)
    assert torn.read_text() == lines[0] + lines[1]
    torn.write_text(lines[0][:10] + '\n' + lines[1])               # a broken line that is not the last: still an error
    with pytest.raises(InterventionError, match='line 1 is not JSON'): run_interventions(torn, specs, cfg, 'serial', progress=False)

def test_run_restarts_on_mismatch_only_when_asked(world):
    tmp, cfg = world['tmp'], world['cfg']('never')
    first, other = intervention_specs(world['episodes'][:1], [], 1), intervention_specs(world['episodes'][1:2], [], 1)
    path = tmp/'mismatch.jsonl'
    run_interventions(path, first, cfg, backend='serial', progress=False)
    with pytest.raises(InterventionError, match='not the first 1 of this run'): run_interventions(path, other, cfg, 'serial', progress=False)
    with pytest.warns(UserWarning, match=r'not the first 1 of this run .*; deleted it and started over'):
        got = run_interventions(path, other, cfg, 'serial', progress=False, on_mismatch='restart')
    assert [r['index'] for r in got] == [other[0].episode.index] and len(path.read_text().splitlines()) == 1
    with pytest.raises(InterventionError, match='more than the 0 asked for'): run_interventions(path, [], cfg, 'serial', progress=False)
    with pytest.warns(UserWarning, match='more than the 0 asked for'):
        assert run_interventions(path, [], cfg, 'serial', progress=False, on_mismatch='restart') == []
    assert not path.exists() or path.read_text() == ''
    with pytest.raises(InterventionError, match="on_mismatch must be 'raise' or 'restart', got 'ignore'"):
        run_interventions(path, first, cfg, 'serial', progress=False, on_mismatch='ignore')

def test_records_of_another_run_are_not_resumed(world):
    "Records keep the run they belong to (the stage's fingerprint); the same specs under another run mismatch."
    tmp, cfg = world['tmp'], world['cfg']('never')
    specs = intervention_specs(world['episodes'][:1], [], 1)
    path = tmp/'runs.jsonl'
    assert run_interventions(path, specs, cfg, backend='serial', progress=False, run='a')[0]['run'] == 'a'
    assert len(run_interventions(path, specs, cfg, backend='serial', progress=False, run='a')) == 1   # same run: resumed, nothing to do
    with pytest.raises(InterventionError, match=r'belong to another run \(a, this is b\)'):
        run_interventions(path, specs, cfg, backend='serial', progress=False, run='b')
    with pytest.warns(UserWarning, match='another run'):
        assert run_interventions(path, specs, cfg, backend='serial', progress=False, run='b', on_mismatch='restart')[0]['run'] == 'b'

def test_monitor_feeds_the_instruction_to_a_task_conditioned_predictor(world):
    "A predictor with a task context reads each environment's instruction embedding: the monitor's risk is the stream's with it."
    from salus.predictor import FailurePredictor, PredictorStream
    from salus.language import instruction_encoder
    base = world['model'].config
    model = FailurePredictor(replace(base, task_context=1)).eval()
    model.set_task_context(instruction_encoder()(['lift the red cube', 'open the drawer', 'place the red cube in the bowl']))
    o = observation()
    d = Monitor(world['vla'], model, thresholds_at(model, 1.0), MonitorConfig(samples=2), world['novelty'], seed=3).step(o)
    want = PredictorStream(model).step(d.signals, instruction_encoder()(o.instructions))
    np.testing.assert_allclose(d.risk, want, atol=1e-6)
    other = PredictorStream(model).step(d.signals, instruction_encoder()(['open the drawer']))
    assert not np.allclose(other, want)   # the instruction does reach the prediction

def test_the_intervene_group_builds_the_monitor_config():
    from salus.params import load_params
    from conftest import REPO
    params = load_params(REPO/'params.yaml', profile='smoke')
    iv, s = params.intervene, params.signals
    m = MonitorConfig.from_params(iv, s, strategy='slow')
    assert (m.strategy, m.alpha, m.trigger_horizons_s, m.trigger_outputs, m.samples, m.trend_window) == \
           ('slow', iv.alpha, tuple(iv.trigger_horizons_s), tuple(iv.trigger_outputs), s.samples, s.trend_window)
    assert (m.slow_factor, m.resample_samples, m.human_steps, m.max_help_requests) == \
           (iv.slow_factor, iv.resample_samples, iv.human_steps, iv.max_help_requests)
