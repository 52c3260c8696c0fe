"`load_params` accepts a valid file, resolves profiles, and refuses bad files with a message naming the key."
import re

import pytest

from salus.params import PROFILES, ParamsError, load_params, set_profile
from conftest import REPO

def test_repo_params_load_under_every_profile():
    for p in PROFILES:
        params = load_params(REPO/'params.yaml', profile=p)
        assert params.profile == p

def test_profile_overrides_apply(params_file):
    assert load_params(params_file).runtime.torch_threads == 2
    assert load_params(params_file, profile='smoke').runtime.torch_threads == 1
    assert load_params(params_file, profile='gpu').runtime.torch_threads == 2   # no gpu overrides: base values

def edited(params_file, old, new):
    text = params_file.read_text()
    assert old in text
    params_file.write_text(text.replace(old, new))
    return params_file

@pytest.mark.parametrize('old,new,message', [
    ('seed: 0', 'seed: 0\nseeed: 1', 'seeed: unknown key (allowed here: profile, seed, runtime, envs, demos, policy, signals, collect, replicate, predictor, evaluate, external, intervene, figures)'),
    ('  device: cpu', '  device: cpu\n  threads: 4', 'runtime.threads: unknown key (allowed here: profiles, device, torch_threads)'),
    ('seed: 0', 'seed: zero', "seed: Input should be a valid integer"),
    ('torch_threads: 2', 'torch_threads: [2]', 'runtime.torch_threads: Input should be a valid integer'),
    ('torch_threads: 2', 'torch_threads: 0', 'runtime.torch_threads: Input should be greater than or equal to 1 (got 0)'),
    ('seed: 0', 'seed: -3', 'seed: Input should be greater than or equal to 0 (got -3)'),
    ('device: cpu', 'device: tpu', "runtime.device: Input should be 'cpu' or 'cuda' (got 'tpu')"),
    ('profile: default', 'profile: fast', "profile: Input should be 'default', 'smoke', 'gpu', 'smolvla_smoke' or 'tinyvla_smoke' (got 'fast')"),
    ('seed: 0\n', '', 'seed: required key is missing'),
    ('{torch_threads: 1}', '{torch_threads: -1}', 'runtime.profiles.smoke.torch_threads: Input should be greater than or equal to 1'),
    ('{torch_threads: 1}', '{torch_thread: 1}', 'runtime.profiles.smoke.torch_thread: unknown key'),
    ('    smoke:', '    quick:', "runtime.profiles.quick: Input should be 'default', 'smoke', 'gpu', 'smolvla_smoke' or 'tinyvla_smoke'"),
    ('unseen_tasks: [lift_blue]', 'unseen_tasks: [lift_purple]', "envs: unseen_tasks: unknown task(s) ['lift_purple']; tasks: lift_red"),
    ('unseen_tasks: [lift_blue]', 'unseen_tasks: [lift_red]', "envs: tasks both seen and unseen: ['lift_red']"),
    ('seen_tasks: [lift_red, open_drawer]', 'seen_tasks: []', 'envs.seen_tasks: List should have at least 1 item'),
    ('episodes_per_task: 1', 'episodes_per_task: 0', 'demos.episodes_per_task: Input should be greater than or equal to 1'),
    ('eval_shift: {pose: 0.02}', 'eval_shift: {pose: 0.02, gravity: 2}', 'policy: eval_shift: gravity: Extra inputs are not permitted'),
    ('eval_shift: {pose: 0.02}', 'eval_shift: {pose: 5}', 'policy: eval_shift: pose: Input should be less than or equal to 0.1'),
    ('active: [epistemic, smoothness, sample_dispersion]', 'active: [epistemic, vibes]', "signals: unknown signal(s) ['vibes']"),
    ('samples: 2', 'samples: 1', 'signals: sample_dispersion needs samples ≥ 2'),
    ('backend: serial', 'backend: mpi', "collect.backend: Input should be 'serial', 'local' or 'ray' (got 'mpi')"),
    ('shifts: {nominal: {}}', 'shifts: {nominal: {pose: 9}}', 'collect: shifts.nominal: pose: Input should be less than or equal to 0.1'),
    ('collections: 2', 'collections: 0', 'replicate.collections: Input should be greater than or equal to 1'),
    ('architectures: [mlp]', 'architectures: [lstm]', "predictor.architectures.0: Input should be 'mlp', 'gru' or 'conv'"),
    ('calib: 0.2, test: 0.1', 'calib: 0.2, holdout: 0.1', 'predictor: splits must name exactly train, val, calib and test'),
    ('alphas: [0.1]', 'alphas: [1.5]', 'predictor: alphas must be in (0, 1)'),
    ('episode_output: true', 'episode_output: false', "external.salus_readout: 'episode' needs predictor.episode_output: true"),
    ('salus_readout: horizon', 'salus_readout: h2s', "evaluate.salus_readout: Input should be 'horizon' or 'episode'"),
    ('salus_select_by: auroc', 'salus_select_by: test', "evaluate.salus_select_by: Input should be 'auroc', 'macro' or 'pooled'"),
    ('salus_task_context: [0, 2]', 'salus_task_context: [0, 400]', 'external: salus_task_context: each k must be in 0..384, got [400]'),
    ('salus_task_context: [0]', 'salus_task_context: [0, 0]', 'evaluate: salus_task_context repeats: [0, 0]'),
    ('salus_task_context: [0]', 'salus_task_context: []', 'evaluate.salus_task_context: List should have at least 1 item'),
    ('horizons_s: [0.2, 0.5, 1.0, 2.0]', 'horizons_s: [0.5, -1]', 'predictor: horizons_s must be positive seconds'),
    ('baselines: [elapsed, task_prior, epistemic, logreg]', 'baselines: [elapsed, epistemic, oracle]', "evaluate: unknown baseline(s) ['oracle']"),
    ('main_alpha: 0.1', 'main_alpha: 0.3', 'evaluate: main_alpha 0.3 is not one of alphas [0.05, 0.1]'),
    ('crossfit_folds: 2', 'crossfit_folds: 1', 'evaluate.crossfit_folds: Input should be greater than or equal to 2'),
    ('headline_q: 0.25', 'headline_q: 0.5', 'evaluate: headline_q 0.5 is not one of qs [0.25, 1.0]'),
    ('qs: [0.25, 1.0]', 'qs: [0.25, 1.5]', 'evaluate: qs must be in (0, 1], got [1.5]'),
    ('baselines: [elapsed, actprobe]', 'baselines: [elapsed, rnd]', "external: baselines ['rnd'] cannot run on logged features"),
    ('baselines: [elapsed, actprobe]', 'baselines: [elapsed, stac]', "external: baselines ['stac'] cannot run on logged features"),
    ('control_hz: 4, horizons_s: [1.0, 2.0]', 'control_hz: 4, horizons_s: [1.0, 1.1]', 'external: horizons_s: horizons [1.0, 1.1] s give steps [4, 4] at 4 Hz: two horizons would be the same'),
    ('horizons_s: [0.2, 0.5, 1.0, 2.0]', 'horizons_s: [0.01, 0.02]', 'predictor.horizons_s: horizons [0.01, 0.02] s are shorter than one control step (0.1 s at 10 Hz) (envs.control_hz)'),
    ('epochs: 1', 'epochs: true', 'policy.epochs: Input should be a valid integer (got True)'),
    ('goal_weight: 1.0', 'goal_weight: .inf', 'policy.goal_weight: Input should be a finite number'),
    ('seed: 0', 'seed: 0.0', 'seed: Input should be a valid integer (got 0.0)'),
    ('protocols: [allseen]', 'protocols: [allseen, leave_one_out]', "external.protocols.1: Input should be 'allseen' or 'unseen'"),
    ('dataset: pi0_libero', 'dataset: π0 LIBERO', 'external.dataset: String should match pattern'),
    ('external_scorers: [salus, actprobe]', 'external_scorers: [salus, oracle]', "figures.external_scorers: ['oracle'] are neither 'salus', nor in external.baselines"),
    ('table_horizon_s: 1.0', 'table_horizon_s: 3.0', 'evaluate.table_horizon_s: 3.0 is not one of predictor.horizons_s'),
    ('heldout_tasks: [[lift_red]]', 'heldout_tasks: [[lift_blue]]', "evaluate.heldout_tasks: ['lift_blue'] are not envs.seen_tasks"),
    ('heldout_tasks: [[lift_red]]', 'heldout_tasks: [[lift_red, open_drawer]]', "evaluate.heldout_tasks: fold ['lift_red', 'open_drawer'] leaves no seen task"),
    ('heldout_tasks: [[lift_red]]', 'heldout_tasks: [[]]', 'evaluate: heldout_tasks: each fold needs one or more distinct tasks'),
    ('strategies: [stop, slow, resample, human]', 'strategies: [stop, pray]', "intervene.strategies.1: Input should be 'stop', 'slow', 'resample' or 'human'"),
    ('strategies: [stop, slow, resample, human]', 'strategies: [stop, stop]', 'intervene: strategies repeat'),
    ('alpha: 0.1, trigger', 'alpha: 0.2, trigger', 'intervene.alpha: 0.2 is not one of predictor.alphas [0.1]'),
    ('trigger_horizons_s: [1.0]', 'trigger_horizons_s: [1.0, 5.0]', 'intervene.trigger_horizons_s: [5.0] not in predictor.horizons_s'),
    ('trigger_outputs: [any]', 'trigger_outputs: [any, fire]', "intervene: unknown trigger output(s) ['fire']"),
    ('tasks: all', 'tasks: [lift_red, fly]', "intervene: tasks: unknown or none ['fly']"),
    ('tasks: all', 'tasks: [stack_red_on_blue]', "intervene.tasks: ['stack_red_on_blue'] are neither envs.seen_tasks nor envs.unseen_tasks"),
    ('slow_factor: 0.5', 'slow_factor: 1.5', 'intervene.slow_factor: Input should be less than 1'),
    ('scorers: [salus, logreg]', 'scorers: [salus, rnd]', "figures.scorers: ['rnd'] are neither 'salus' nor in evaluate.baselines"),
    ('example_task: lift_red', 'example_task: lift_blue', "figures.example_task: 'lift_blue' is not one of envs.seen_tasks"),
    ('signals: [epistemic, smoothness]}', 'signals: [epistemic, knn_novelty]}', "figures.signals: ['knn_novelty'] are not in signals.active"),
])
def test_bad_key_or_value_is_named(params_file, old, new, message):
    with pytest.raises(ParamsError) as err: load_params(edited(params_file, old, new))
    assert message in str(err.value)
    assert str(params_file) in str(err.value)

def test_override_of_inactive_profile_is_still_checked(params_file):
    edited(params_file, '{torch_threads: 1}', '{torch_threads: 0}')
    with pytest.raises(ParamsError, match='runtime.profiles.smoke.torch_threads'): load_params(params_file, profile='default')

def test_every_problem_is_reported_at_once(params_file):
    edited(params_file, 'seed: 0', 'seed: -1\nsed: 2')
    with pytest.raises(ParamsError, match=r'2 problem\(s\)'): load_params(params_file)

def test_missing_file(tmp_path):
    with pytest.raises(ParamsError, match='params file not found'): load_params(tmp_path/'params.yaml')

@pytest.mark.parametrize('text,message', [('profile: [default', 'not valid YAML'), ('- a\n- b\n', 'expected a mapping'), ('', 'expected a mapping')])
def test_unreadable_file(tmp_path, text, message):
    p = tmp_path/'params.yaml'
    p.write_text(text)
    with pytest.raises(ParamsError, match=message): load_params(p)

def test_set_profile_keeps_the_rest_of_the_file(params_file):
    before = params_file.read_text()
    set_profile(params_file, 'smoke')
    after = params_file.read_text()
    assert after == before.replace('profile: default', 'profile: smoke')
    with pytest.raises(ParamsError, match='unknown profile'): set_profile(params_file, 'fast')

def test_a_key_given_twice_is_refused(params_file):
    edited(params_file, 'seed: 0', 'seed: 0\nseed: 1')
    with pytest.raises(ParamsError, match="duplicate key 'seed'"): load_params(params_file)

def test_library_defaults_are_the_default_profile():
    "A library config's defaults are params.yaml's default-profile values (one source: no default contradicts it)."
    import inspect
    from salus.intervene import MonitorConfig
    from salus.predictor import PredictorConfig, TrainConfig
    from salus.vla import EmbeddedVLAConfig, train_ensemble
    params = load_params(REPO/'params.yaml', profile='default')
    p = params.predictor
    assert TrainConfig.from_params(p) == TrainConfig()
    assert PredictorConfig.from_params(p, ['epistemic'], 10.0) == PredictorConfig(['epistemic'], p.horizons_s, 10.0)
    assert MonitorConfig.from_params(params.intervene, params.signals) == MonitorConfig()
    vla = params.policy
    assert EmbeddedVLAConfig(image_size=vla.image_size, chunk_size=vla.chunk_size) == EmbeddedVLAConfig()
    defaults = {k: v.default for k, v in inspect.signature(train_ensemble).parameters.items() if v.default is not inspect.Parameter.empty}
    assert {k: defaults[k] for k in ('epochs', 'batch_size', 'lr', 'goal_weight', 'shift_pixels')} == \
           {k: getattr(vla, k) for k in ('epochs', 'batch_size', 'lr', 'goal_weight', 'shift_pixels')}

def test_a_profile_can_start_from_another():
    "smolvla_smoke / tinyvla_smoke are smoke with SmolVLA / TinyVLA: every group takes smoke's overrides, then its own."
    smoke, sv = load_params(REPO/'params.yaml', profile='smoke'), load_params(REPO/'params.yaml', profile='smolvla_smoke')
    assert (sv.policy.backend, smoke.policy.backend) == ('smolvla', 'embedded')
    assert sv.collect == smoke.collect and sv.evaluate == smoke.evaluate and sv.policy.members == smoke.policy.members
    tv = load_params(REPO/'params.yaml', profile='tinyvla_smoke')
    assert tv.policy.backend == 'tinyvla' and tv.collect == smoke.collect and tv.policy.members == smoke.policy.members

@pytest.mark.parametrize('value,message', [
    ('/opt/smolvla_base', "checkpoint: '/opt/smolvla_base' must be a folder under data/"),
    ('checkpoints/policy', "checkpoint: 'checkpoints/policy' must be a folder under data/"),
    ('data/../secrets', "checkpoint: 'data/../secrets' must be a folder under data/")])
def test_a_policy_checkpoint_lives_under_data(params_file, value, message):
    with pytest.raises(ParamsError, match=re.escape(message)):
        load_params(edited(params_file, 'checkpoint: null', f'checkpoint: {value}'))
    load_params(edited(params_file, f'checkpoint: {value}', 'checkpoint: data/smolvla_base'))   # under data/: fine (its contents are the stage's to check)
