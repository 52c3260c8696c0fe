"The embedded task suite on real physics: experts succeed, failures are typed and timed, seeds reproduce, bad input fails."
import numpy as np
import pytest

from salus.envs import FAILURE_TYPES, TASKS, EnvConfig, FrankaTabletopEnv, ScriptedExpert, Shift, get_task, make_env, run_episode

@pytest.mark.parametrize('task', list(TASKS))
def test_expert_succeeds_without_noise(task):
    env = make_env(task, render=False)
    expert = ScriptedExpert(env)
    outcomes = []
    for seed in range(20):
        expert.reset()
        outcomes.append(run_episode(env, lambda obs, info: expert.act(), seed)['outcome'])
    assert outcomes.count('success') >= 19, outcomes     # ≥ 95 %

def act_until_done(task, policy, seed=0):
    env = make_env(task, render=False)
    env.reset(seed=seed)
    t = 0
    while True:
        _, _, terminated, truncated, info = env.step(policy(env, t))
        t += 1
        if terminated or truncated: return info, t, env

INTO_TABLE = lambda env, t: np.array([0, 0, -1, 0, 0, 0, -1.])
CLOSE_ON_AIR = lambda env, t: np.array([0, 0, 0.3, 0, 0, 0, 1.])
IDLE = lambda env, t: np.zeros(7)

@pytest.mark.parametrize('task', ['lift_red', 'push_blue_to_marker', 'open_drawer'])
def test_collision_driving_into_the_table(task):
    info, t, env = act_until_done(task, INTO_TABLE)
    assert (info['outcome'], info['failure_type'], info['failure_step']) == ('failure', 'collision', t)
    assert env.ee_pos[2] < 0.02          # the gripper is down at the table when the collision is called
    assert 5 <= t < 20

@pytest.mark.parametrize('task', ['lift_red', 'place_green_in_bowl', 'open_drawer'])
def test_miss_closing_on_air(task):
    info, t, env = act_until_done(task, CLOSE_ON_AIR)
    assert (info['failure_type'], info['failure_step']) == ('miss', t)
    assert env.gripper_width < 0.006

def test_no_miss_on_a_push_task():
    info, t, _ = act_until_done('push_blue_to_marker', CLOSE_ON_AIR)
    assert info['failure_type'] == 'timeout'

@pytest.mark.parametrize('task', ['lift_red', 'open_drawer'])
def test_timeout_when_idle(task):
    info, t, env = act_until_done(task, IDLE)
    assert (info['failure_type'], info['failure_step'], t) == ('timeout', env.max_steps, env.max_steps)

class OpenMidCarry:
    "The expert, except that it opens the gripper once it carries the object (or has started pulling the drawer)."
    def __init__(self): self.expert = None
    def __call__(self, env, t):
        if self.expert is None: self.expert = ScriptedExpert(env)
        a = self.expert.act()
        carrying = self.expert.phase >= 4 if env.task.skill != 'open_drawer' else self.expert.phase >= 3 and env.drawer_opening > 0.03
        if carrying: a[6] = -1
        return a

@pytest.mark.parametrize('task', ['place_red_in_bowl', 'stack_red_on_blue', 'open_drawer'])
def test_drop_opening_mid_carry(task):
    policy = OpenMidCarry()
    info, t, env = act_until_done(task, policy)
    assert (info['failure_type'], info['failure_step']) == ('drop', t)
    if env.task.skill != 'open_drawer': assert env.cube_pos(env.task.target)[2] > 0.035   # released in the air

def test_same_seed_same_episode():
    def trace(seed):
        env = make_env('stack_red_on_blue', shift=Shift(pose=0.02, colour=0.1, light=0.3, distractors=2, camera=0.01,
                                                       dynamics=0.2, state_noise=0.001, image_noise=3))
        ex = ScriptedExpert(env, action_noise=0.1, rng=np.random.default_rng(seed))
        frames = []
        info = run_episode(env, lambda obs, info: ex.act(), seed, on_step=lambda obs, a, i: frames.append(obs))
        return info, frames
    (i1, f1), (i2, f2), (i3, f3) = trace(5), trace(5), trace(6)
    plain = lambda i: {k: v for k, v in i.items() if k != 'goal_positions'}
    assert plain(i1) == plain(i2) and np.array_equal(i1['goal_positions'], i2['goal_positions']) and len(f1) == len(f2)
    assert all(np.array_equal(a[k], b[k]) for a, b in zip(f1, f2) for k in ('state', 'front', 'wrist'))
    assert not np.array_equal(f1[0]['front'], f3[0]['front'])

def test_shifts_change_the_scene():
    env0, env1 = make_env('lift_red'), make_env('lift_red', shift=Shift(colour=0.3, light=0.8, distractors=3, camera=0.05))
    o0, _ = env0.reset(seed=1)
    o1, _ = env1.reset(seed=1)
    assert np.abs(o0['front'].astype(int) - o1['front'].astype(int)).mean() > 2
    assert (env1.data.qpos[env1._distractor_qpos[2]] < 1.0)          # third distractor is on the table
    assert np.array_equal(o0['state'], o1['state'])                  # no sensor noise asked for

def test_observation_and_action_spaces():
    env = make_env('open_drawer', shift=Shift(state_noise=0.01))
    obs, info = env.reset(seed=0)
    assert env.observation_space.contains(obs)
    assert env.action_space.shape == (7,)
    assert info['instruction'] in [get_task('open_drawer').instruction(k) for k in range(3)]

def test_bad_inputs_fail_clearly():
    with pytest.raises(KeyError, match="unknown task 'lift_purple'"): make_env('lift_purple')
    env = make_env('lift_red', render=False)
    with pytest.raises(RuntimeError, match=r'call reset\(\) before step\(\)'): env.step(np.zeros(7))
    env.reset(seed=0)
    with pytest.raises(ValueError, match=r'shape \(7,\)'): env.step(np.zeros((1, 7)))
    with pytest.raises(ValueError, match=r'non-finite values at \[6\]'): env.step([0, 0, 0, 0, 0, 0, np.inf])
    with pytest.raises(ValueError): Shift(distractors=9)
    with pytest.raises(ValueError): EnvConfig(image_size=0)
    env = make_env('lift_red', render=False)
    env.reset(seed=0)
    while True:
        *_, terminated, truncated, info = env.step(np.zeros(7))
        if terminated or truncated: break
    with pytest.raises(RuntimeError, match='episode already ended'): env.step(np.zeros(7))

def test_failure_types_are_the_designed_four():
    assert FAILURE_TYPES == ('collision', 'drop', 'miss', 'timeout')
    assert len(TASKS) >= 8

def test_run_episode_stops_where_it_is_told_and_refuses_a_bad_limit():
    env = make_env('lift_red', render=False)
    seen = []
    info = run_episode(env, lambda obs, info: np.zeros(7), seed=0, max_steps=3,
                       on_reset=lambda obs, info: seen.append('reset'), on_step=lambda obs, a, info: seen.append(info['step']))
    assert (info['outcome'], info['step'], seen) == ('running', 3, ['reset', 1, 2, 3])
    info = run_episode(env, lambda obs, info: None if info['step'] == 2 else np.zeros(7), seed=0)   # `act` ends it
    assert (info['outcome'], info['step']) == ('running', 2)
    for bad in (0, -1, 2.5, True):
        with pytest.raises(ValueError, match='max_steps must be None or an integer ≥ 1'): run_episode(env, lambda o, i: np.zeros(7), 0, max_steps=bad)
    env.close()
