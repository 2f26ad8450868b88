"""Tests of ppo_atari.py: each Atari wrapper on a real game, the game statistics, fire and no-op resets, the
network, episode boundaries and truncation values of a rollout, GAE and the losses on hand-computed numbers,
logging, determinism, saved agents, evaluation and bad input. Real ALE emulators throughout; the runs are tiny
(CPU). What its copies share with it runs over them too: the training envs, rollouts and runs over
ppo_atari_ale_vector.py (its C++ env's own tests: tests/test_ppo_atari_ale_vector.py), the network, GAE and losses
over both copies. (Checkpoints, resume, signals and videos: tests/test_checkpoints.py.)"""

import importlib
import os
import signal
import sys

import cv2
import gymnasium as gym
import numpy as np
import pytest
import torch
from conftest import ROOT, TAGS, read_scalars, read_text, run_script, start_training

import ppo_atari
import ppo_run

BREAKOUT = "BreakoutNoFrameskip-v4"
SPACE_INVADERS = "SpaceInvadersNoFrameskip-v4"  # 5 to 30 points per alien: clipped and real scores differ
ATARI = ["ppo_atari", "ppo_atari_ale_vector", "ppo_atari_multigpu"]  # this file and its copies
ENVS = ["ppo_atari", "ppo_atari_ale_vector"]  # the two kinds of training envs: the gymnasium wrappers', the C++ env
# the frames of a game that short_breakout cuts: 200 (the C++ env: its limit counts the agent's frames only, the
# reset's 0-29 no-op frames come on top)
CUT_GAME_FRAMES = range(200, 230)


def training_envs(script: str, env_id: str, num_envs: int):
    """The envs that `script` trains on (ppo_atari.py's stepped in this process), and its module."""
    module = importlib.import_module(script)
    if script == "ppo_atari":
        return module.make_envs(env_id, num_envs, "sync"), module
    return module.make_envs(env_id, num_envs), module


def short_breakout() -> str:
    """Breakout cut after 200 frames (about 50 steps), so that tiny runs see whole games end (truncated)."""
    ppo_atari.register_atari_envs()
    env_id = "BreakoutShort-v4"
    if env_id not in gym.registry:
        gym.register(
            env_id,
            entry_point="ale_py.env:AtariEnv",
            kwargs={**gym.spec(BREAKOUT).kwargs, "max_num_frames_per_episode": 200},
        )
    return env_id


pytestmark = pytest.mark.usefixtures("one_torch_thread")  # (conftest) torch on one thread, as the script runs


class ActionLog(gym.Wrapper):
    """Records the actions that reach the env below."""

    def __init__(self, env):
        super().__init__(env)
        self.actions = []

    def step(self, action):
        self.actions.append(int(action))
        return self.env.step(action)


class RewardLog(gym.Wrapper):
    """Records the raw rewards of every emulator frame."""

    def __init__(self, env):
        super().__init__(env)
        self.rewards = []

    def step(self, action):
        obs, reward, terminated, truncated, info = self.env.step(action)
        self.rewards.append(reward)
        return obs, reward, terminated, truncated, info


# --- the wrappers of the gymnasium backend, each on a real game ---------------------------------------


def test_noop_reset_takes_1_to_30_noop_frames():
    env = ppo_atari.NoopResetEnv(ppo_atari.make_raw_env(BREAKOUT), noop_max=30)
    assert env.unwrapped.get_action_meanings()[0] == "NOOP"
    first = env.reset(seed=0)[1]["episode_frame_number"]  # (a raw reset is at frame 0)
    frames = [first] + [env.reset()[1]["episode_frame_number"] for _ in range(80)]
    assert 1 <= min(frames) and max(frames) <= 30
    assert len(set(frames)) >= 20  # random counts ...
    assert env.reset(seed=0)[1]["episode_frame_number"] == first  # ... drawn from the seeded generator
    env.close()


def test_max_and_skip_is_the_max_of_the_last_two_frames_and_the_sum_of_four_rewards():
    # the wrapped env and a raw twin from the same seed, stepped with the same actions frame by frame
    env, twin = (
        ppo_atari.MaxAndSkipEnv(ppo_atari.make_raw_env(SPACE_INVADERS), skip=4),
        ppo_atari.make_raw_env(SPACE_INVADERS),
    )
    env.reset(seed=5)
    twin.reset(seed=5)
    rng = np.random.default_rng(0)
    flicker = rewarded = 0
    for step in range(200):
        action = int(rng.integers(env.action_space.n))
        obs, reward, terminated, truncated, info = env.step(action)
        frames, rewards = zip(*[twin.step(action)[:2] for _ in range(4)])
        assert np.array_equal(obs, np.maximum(frames[2], frames[3]))
        assert reward == sum(rewards)
        assert info["episode_frame_number"] == 4 * (step + 1)
        flicker += not np.array_equal(obs, frames[3])
        rewarded += reward > 0
        if terminated or truncated:
            break
    assert flicker > 10 and rewarded > 2  # the max and the sum mattered


def test_episodic_life_ends_the_episode_at_a_lost_life_but_not_the_game():
    env = ppo_atari.EpisodicLifeEnv(ppo_atari.MaxAndSkipEnv(ppo_atari.make_raw_env(BREAKOUT)))
    _, info = env.reset(seed=0)
    lives, lost = info["lives"], 0
    rng = np.random.default_rng(0)
    for _ in range(3000):
        _, _, terminated, truncated, info = env.step(int(rng.integers(4)))  # FIRE among them launches the ball
        if not terminated:
            assert env.unwrapped.ale.lives() == lives
            continue
        if env.unwrapped.ale.lives() > 0:
            # a lost life: the episode ends, the game goes on (a no-op step, frames counted on)
            assert env.unwrapped.ale.lives() == lives - 1
            lives, lost, frame = lives - 1, lost + 1, info["episode_frame_number"]
            _, info = env.reset()
            assert info["episode_frame_number"] == frame + 4 and info["lives"] == lives
        else:
            # game over: now the game is really reset
            _, info = env.reset()
            assert info["episode_frame_number"] == 0 and info["lives"] == 5
            break
    assert lost == 4


def test_fire_reset_presses_fire_then_action_2():
    log = ActionLog(ppo_atari.EpisodicLifeEnv(ppo_atari.MaxAndSkipEnv(ppo_atari.make_raw_env(BREAKOUT))))
    env = ppo_atari.FireResetEnv(log)
    env.reset(seed=0)
    assert log.actions == [1, 2] and env.unwrapped.get_action_meanings()[1] == "FIRE"


@pytest.mark.parametrize("fire_reset", [True, False])
def test_fire_reset_launches_the_ball_in_breakout(fire_reset):
    # Breakout waits for FIRE: with no-ops only, a life is lost only if the reset pressed FIRE
    env = ppo_atari.make_env(BREAKOUT, fire_reset=fire_reset)
    env.reset(seed=0)
    life_lost = any(env.step(0)[2] for _ in range(150))
    assert life_lost == fire_reset


def test_observation_is_4_frames_of_84x84_gray_newest_last():
    env = ppo_atari.make_env(BREAKOUT)
    obs, _ = env.reset(seed=0)
    assert obs.shape == (4, 84, 84) and obs.dtype == np.uint8
    assert all(np.array_equal(obs[0], frame) for frame in obs[1:])  # the stack starts with copies
    rng = np.random.default_rng(0)
    for _ in range(30):
        previous = obs
        obs, _, terminated, _, _ = env.step(int(rng.integers(4)))
        if terminated:
            break
        assert np.array_equal(obs[:3], previous[1:])  # the stack moves on by one ...
        pooled = env.get_wrapper_attr("frames").max(axis=0)  # ... and the newest is the warped max frame
        assert np.array_equal(obs[3], cv2.resize(pooled, (84, 84), interpolation=cv2.INTER_AREA))
    assert obs[3].std() > 0


def test_rewards_are_clipped_to_sign_and_the_logged_return_is_the_unclipped_full_game_score():
    log = RewardLog(ppo_atari.make_raw_env(SPACE_INVADERS))
    env = ppo_atari.wrap_atari(log)
    env.reset(seed=0)
    rng = np.random.default_rng(0)
    clipped, steps, lives_lost = [], 0, 0
    for _ in range(5000):
        _, reward, terminated, truncated, info = env.step(int(rng.integers(env.action_space.n)))
        clipped.append(reward)
        steps += 1
        if "episode" in info:
            break
        if terminated:  # a lost life: the learning episode ends, the game (and its score) goes on
            lives_lost += 1
            env.reset()
    assert set(clipped) <= {-1.0, 0.0, 1.0} and 1.0 in clipped
    assert max(log.rewards) > 1  # the raw rewards are points, 5 to 30
    assert lives_lost >= 1  # the score covers several lives
    assert info["episode"]["r"] == sum(log.rewards) > sum(clipped)
    # the length counts every emulator frame of the game (as CleanRL's): the reset's no-ops, 4 per agent
    # step, and the hidden steps of each fire reset and lost life
    assert info["episode"]["l"] == len(log.rewards) > 4 * (steps + 2 + 3 * lives_lost)


# --- the training envs (make_envs), of both kinds ----------------------------------------------------------


@pytest.mark.parametrize("script", ENVS)
def test_make_envs_gives_stacked_frames_and_clipped_rewards(script):
    envs, _ = training_envs(script, SPACE_INVADERS, 2)
    assert envs.single_observation_space.shape == (4, 84, 84) and envs.single_action_space.n == 6
    obs, _ = envs.reset(seed=0)
    assert obs.shape == (2, 4, 84, 84) and obs.dtype == np.uint8
    rng = np.random.default_rng(0)
    rewards = [envs.step(rng.integers(6, size=2))[1] for _ in range(150)]
    assert set(np.unique(rewards)) <= {-1.0, 0.0, 1.0} and np.max(rewards) == 1.0
    envs.close()


@pytest.mark.parametrize("script", ENVS)
def test_make_envs_starts_breakout_with_the_ball_in_play(script):
    # (atari 4) the reset pressed FIRE: with no-ops only, every env still loses a life (the ball falls)
    envs, _ = training_envs(script, BREAKOUT, 2)
    envs.reset(seed=0)
    lost = np.zeros(2, bool)
    for _ in range(150):
        lost |= envs.step(np.zeros(2, np.int64))[2]
    envs.close()
    assert lost.all()


@pytest.mark.parametrize("script", ENVS)
def test_make_envs_starts_each_game_after_a_random_number_of_noops(script):
    # (atari 1) 8 envs seeded 0..7 start their games at different frames, and so see different screens
    envs, _ = training_envs(script, BREAKOUT, 8)
    obs, info = envs.reset(seed=0)
    envs.close()
    frames = info["episode_frame_number"]
    # gymnasium: 1 to 30 no-op frames, then 4 + 4 of fire reset; C++ env: up to 30 frames, FIRE among them
    low, high = (9, 38) if script == "ppo_atari" else (1, 30)
    assert low <= frames.min() and frames.max() <= high
    assert len(set(frames)) >= 5
    assert len({o.tobytes() for o in obs}) >= 2


def test_without_noop_reset_every_game_starts_alike():
    # noop_max=1 (exactly one no-op frame): the same start frame and screen whatever the seed
    envs = [ppo_atari.make_env(BREAKOUT, noop_max=1) for _ in range(4)]
    starts = [env.reset(seed=seed) for seed, env in enumerate(envs)]
    obs, frames = np.stack([o for o, _ in starts]), np.array([i["episode_frame_number"] for _, i in starts])
    for env in envs:
        env.close()
    assert len(set(frames)) == 1 and len({o.tobytes() for o in obs}) == 1


# --- the network ------------------------------------------------------------------------------------


def breakout_frames(n: int = 16) -> tuple[gym.Env, torch.Tensor]:
    """Real observations: the first `n` of a Breakout game played at random (and the closed env, for its spaces)."""
    env = ppo_atari.make_env(BREAKOUT)
    frames, rng = [env.reset(seed=0)[0]], np.random.default_rng(0)
    for _ in range(n - 1):
        frames.append(env.step(int(rng.integers(4)))[0])
    env.close()
    return env, torch.as_tensor(np.stack(frames))


def test_the_default_agent_has_channels_last_weights_and_computes_what_the_plain_layout_does():
    env, obs = breakout_frames()
    torch.manual_seed(0)
    fast = ppo_atari.make_agent(ppo_atari.Args(), env.observation_space, env.action_space)
    plain = ppo_atari.make_agent(ppo_atari.Args(channels_last=False), env.observation_space, env.action_space)
    plain.load_state_dict(fast.state_dict())
    convs = [i for i, m in enumerate(fast.network) if isinstance(m, torch.nn.Conv2d)]
    assert all(fast.network[i].weight.is_contiguous(memory_format=torch.channels_last) for i in convs)
    assert not any(plain.network[i].weight.is_contiguous(memory_format=torch.channels_last) for i in convs)
    with torch.no_grad():  # (the same fp32 arithmetic, up to the order of the sums)
        torch.testing.assert_close(fast.hidden(obs), plain.hidden(obs), rtol=1e-5, atol=1e-5)


def test_bf16_runs_the_trunk_in_bfloat16_and_the_heads_in_fp32():
    _, obs = breakout_frames()
    torch.manual_seed(0)
    half, full = ppo_atari.Agent(4, bf16=True), ppo_atari.Agent(4)
    full.load_state_dict(half.state_dict())
    trunk_dtypes = []
    half.network.register_forward_hook(lambda module, inputs, output: trunk_dtypes.append(output.dtype))
    with torch.no_grad():
        hidden = half.hidden(obs)
        logprob, entropy, value = half.evaluate(obs, torch.zeros(len(obs), dtype=torch.int64))
        assert trunk_dtypes[0] == torch.bfloat16 and hidden.dtype == torch.float32
        assert logprob.dtype == entropy.dtype == value.dtype == torch.float32
        assert not torch.equal(hidden, full.hidden(obs))  # rounded to bfloat16's 8 bits of mantissa ...
        torch.testing.assert_close(hidden, full.hidden(obs), rtol=0.05, atol=0.02)  # ... and no more


def cpu_flags() -> set[str]:
    with open("/proc/cpuinfo") as cpuinfo:
        return {flag for line in cpuinfo if line.startswith("flags") for flag in line.split(":")[1].split()}


@pytest.mark.skipif(not os.path.exists("/proc/cpuinfo"), reason="reads the CPU's flags from Linux's /proc/cpuinfo")
def test_native_bf16_is_what_the_cpu_has(monkeypatch):
    assert ppo_atari.native_bf16(cuda=False) == bool({"avx512_bf16", "amx_bf16"} & cpu_flags())
    monkeypatch.setattr(ppo_atari, "native_bf16", lambda cuda: False)  # (as on a CPU without it)
    with pytest.raises(ppo_atari.UsageError, match="--bf16 needs native bfloat16"):
        ppo_run.check_args(ppo_atari, ppo_atari.Args(bf16=True))


@pytest.mark.parametrize("script", ATARI)
def test_network_output_shapes_and_pixel_scaling(script):
    torch.manual_seed(0)
    agent = importlib.import_module(script).Agent(n_actions=6)
    obs = torch.randint(0, 256, (5, 4, 84, 84), dtype=torch.uint8)
    action, logprob, value = agent.act(obs)
    assert action.shape == logprob.shape == value.shape == (5,) and action.max() < 6
    logprob2, entropy, value2 = agent.evaluate(obs, action)
    torch.testing.assert_close(logprob2, logprob)
    torch.testing.assert_close(value2, value)
    assert entropy.shape == (5,) and torch.all(entropy <= np.log(6) + 1e-6)
    # (atari 9) a frame of 255 goes in as 1.0
    white = torch.full((1, 4, 84, 84), 255, dtype=torch.uint8)
    torch.testing.assert_close(agent.hidden(white), agent.network(torch.ones(1, 4, 84, 84)))
    assert not torch.equal(agent.hidden(white), agent.network(torch.full((1, 4, 84, 84), 255.0)))


@pytest.mark.parametrize("script", ATARI)
@pytest.mark.parametrize(
    "layer, gain",
    [
        ("network.0", 2**0.5),
        ("network.2", 2**0.5),
        ("network.4", 2**0.5),
        ("network.7", 2**0.5),
        ("actor", 0.01),
        ("critic", 1.0),
    ],
)
def test_orthogonal_init_gains(layer, gain, script):
    torch.manual_seed(0)
    module = importlib.import_module(script).Agent(4).get_submodule(layer)
    w = module.weight.detach().double().flatten(1)
    gram = w @ w.T if w.shape[0] <= w.shape[1] else w.T @ w  # (scaled) identity for an orthogonal matrix
    np.testing.assert_allclose(gram.numpy(), gain**2 * np.eye(min(w.shape)), atol=1e-6 * max(1, gain**2))
    assert torch.all(module.bias == 0)


@pytest.mark.parametrize("script", ATARI)
def test_nature_cnn_sizes(script):
    agent = importlib.import_module(script).Agent(4)
    convs = [m for m in agent.network if isinstance(m, torch.nn.Conv2d)]
    assert [(c.out_channels, c.kernel_size, c.stride) for c in convs] == [
        (32, (8, 8), (4, 4)),
        (64, (4, 4), (2, 2)),
        (64, (3, 3), (1, 1)),
    ]
    assert agent.network[7].out_features == 512


@pytest.mark.parametrize("script", ATARI)
def test_the_trunk_computes_the_nature_cnn_with_relus(script):
    # (atari 8) the Nature-CNN written out here, with the agent's weights: the same 512 features
    torch.manual_seed(0)
    agent = importlib.import_module(script).Agent(4)
    layers = [m for m in agent.network if isinstance(m, (torch.nn.Conv2d, torch.nn.Linear))]
    frames = torch.randint(0, 256, (3, 4, 84, 84), dtype=torch.uint8)
    x = frames.float() / 255.0
    for layer in layers[:3]:
        x = torch.relu(torch.nn.functional.conv2d(x, layer.weight, layer.bias, stride=layer.stride))
    x = torch.relu(torch.nn.functional.linear(x.flatten(1), layers[3].weight, layers[3].bias))
    with torch.no_grad():
        torch.testing.assert_close(agent.hidden(frames), x)


# --- rollouts and runs --------------------------------------------------------------------------------


@pytest.mark.parametrize("script", ENVS)
def test_rollout_reports_each_cut_game_and_bootstraps_it(script):
    envs, module = training_envs(script, short_breakout(), 2)
    torch.manual_seed(0)
    agent = module.Agent(4)
    buf = module.RolloutBuffer(120, 2, (4, 84, 84), torch.device("cpu"))
    obs, _ = envs.reset(seed=0)
    next_obs, episodes = module.collect_rollout(agent, envs, obs, buf)
    envs.close()
    assert next_obs.shape == (2, 4, 84, 84)
    assert set(np.unique(buf.rewards)) <= {-1.0, 0.0, 1.0}
    assert not np.any(buf.terminations * buf.truncations)
    # every game is cut by the 200-frame limit (a lost life ends an episode, not the game): each cut is
    # reported as a game, with the value of its true last frame kept for bootstrapping
    assert buf.truncations.sum() >= 4
    assert sorted((step, env) for step, env, _, _ in episodes) == sorted(zip(*np.nonzero(buf.truncations)))
    assert np.all(buf.truncation_values[buf.truncations == 1] != 0.0)
    assert np.all(buf.truncation_values[buf.truncations == 0] == 0.0)
    assert all(length in CUT_GAME_FRAMES for _, _, _, length in episodes)  # (in frames)
    # the rollout's frames went into the uint8 buffer as they were
    assert buf.obs.dtype == torch.uint8 and buf.obs[0].numpy().std() > 0


class FinalObsLog(gym.vector.VectorWrapper):
    """Passes every step of the real envs through, keeping a copy of the true final observation
    (infos["final_obs"]) of each env whose episode was truncated: {(step, env): frames}."""

    def reset(self, **kwargs):
        self.final_obs, self.steps = {}, 0
        return self.env.reset(**kwargs)

    def step(self, actions):
        obs, rewards, terminations, truncations, infos = self.env.step(actions)
        for i in np.flatnonzero(truncations & ~terminations):
            self.final_obs[(self.steps, int(i))] = np.array(infos["final_obs"][i])
        self.steps += 1
        return obs, rewards, terminations, truncations, infos


@pytest.mark.parametrize("script", ENVS)
def test_truncation_value_is_the_value_of_the_true_final_observation(script):
    envs, module = training_envs(script, short_breakout(), 2)
    envs = FinalObsLog(envs)
    torch.manual_seed(0)
    agent = module.Agent(4)
    with torch.no_grad():  # off its initialization, so that its values tell frames apart more clearly
        for p in agent.parameters():
            p.add_(0.05 * torch.randn_like(p))
    buf = module.RolloutBuffer(120, 2, (4, 84, 84), torch.device("cpu"))  # (two games cut per env, or more)
    next_obs, _ = module.collect_rollout(agent, envs, envs.reset(seed=0)[0], buf)
    envs.close()
    cuts = list(zip(*np.nonzero(buf.truncations)))
    assert len(cuts) >= 2 and sorted(envs.final_obs) == sorted((int(s), int(i)) for s, i in cuts)
    with torch.inference_mode():
        for step, i in cuts:
            final = envs.final_obs[(step, i)]
            first = buf.obs[step + 1, i].numpy() if step + 1 < len(buf.obs) else next_obs[i]  # the next game's start
            assert not np.array_equal(final, first)
            v_final = agent.get_value(torch.from_numpy(np.stack([final, first]))).numpy()
            # bootstrapped from V(final obs), the state the frame limit cut, not from the next game's start
            assert buf.truncation_values[step, i] == pytest.approx(v_final[0], abs=1e-5)
            assert abs(v_final[0] - v_final[1]) > 1e-2  # (the two are told apart)


class GameScores(gym.Wrapper):
    """Below all the wrappers, on the emulator: the raw points of each real game (reset to game over)."""

    def __init__(self, env):
        super().__init__(env)
        self.scores = []

    def reset(self, **kwargs):
        self.scores.append(0.0)
        return self.env.reset(**kwargs)

    def step(self, action):
        obs, reward, terminated, truncated, info = self.env.step(action)
        self.scores[-1] += reward
        return obs, reward, terminated, truncated, info


class VectorRewardLog(gym.vector.VectorWrapper):
    """Directly on the C++ env: the raw points of every step of every env, [step, env]."""

    def reset(self, **kwargs):
        self.rewards = []
        return self.env.reset(**kwargs)

    def step(self, actions):
        obs, rewards, terminations, truncations, infos = self.env.step(actions)
        self.rewards.append(np.array(rewards, np.float64))
        return obs, rewards, terminations, truncations, infos


@pytest.mark.parametrize("script", ENVS)
def test_rollout_logs_the_unclipped_score_of_whole_games_but_stores_clipped_rewards(script, monkeypatch):
    # the emulator's raw points recorded below the preprocessing of make_envs (a recorder, not a mock)
    logs = []

    def recorded(make, log):  # the real constructor, its env wrapped in the recorder
        def make_logged(*args, **kwargs):
            logs.append(log(make(*args, **kwargs)))
            return logs[-1]

        return make_logged

    module = importlib.import_module(script)
    if script == "ppo_atari":
        monkeypatch.setattr(module, "make_raw_env", recorded(module.make_raw_env, GameScores))
    else:
        monkeypatch.setattr(module, "make_ale_vector_env", recorded(module.make_ale_vector_env, VectorRewardLog))
    envs, _ = training_envs(script, SPACE_INVADERS, 2)
    torch.manual_seed(0)
    agent = module.Agent(6)
    buf = module.RolloutBuffer(400, 2, (4, 84, 84), torch.device("cpu"))
    _, episodes = module.collect_rollout(agent, envs, envs.reset(seed=0)[0], buf)
    envs.close()
    assert set(np.unique(buf.rewards)) <= {-1.0, 0.0, 1.0}  # (atari 6) learning sees the sign
    assert len(episodes) >= 1
    start, played = [0, 0], [0, 0]
    for step, i, score, _ in episodes:
        if script == "ppo_atari":
            raw = logs[i].scores[played[i]]  # every frame of the game, its hidden fire-reset steps included
        else:
            raw = np.stack(logs[0].rewards)[start[i] : step + 1, i].sum()
        clipped = buf.rewards[start[i] : step + 1, i].sum()
        # the logged score is the game's real points over all its lives, not the clipped sum
        assert buf.terminations[start[i] : step, i].sum() >= 1  # (a life was lost before game over)
        assert score == raw and score > clipped > 0
        start[i], played[i] = step + 1, played[i] + 1


@pytest.mark.parametrize("script", ATARI)
def test_gae_bootstraps_truncation_from_the_final_value(script):
    rewards = np.ones((3, 1), np.float32)
    values = np.array([[0.5], [0.4], [0.3]], np.float32)
    terminations = np.array([[1.0], [0.0], [0.0]], np.float32)  # e.g. a lost life
    truncations = np.array([[0.0], [1.0], [0.0]], np.float32)  # the frame limit
    truncation_values = np.array([[0.0], [2.0], [0.0]], np.float32)
    adv, ret = importlib.import_module(script).compute_gae(rewards, values, np.array([1.0], np.float32), terminations,
                                                           truncations, truncation_values, 0.9, 0.5)  # fmt: skip
    np.testing.assert_allclose(adv[:, 0], [0.5, 1 + 0.9 * 2 - 0.4, 1 + 0.9 - 0.3], rtol=1e-6)
    np.testing.assert_allclose(ret, adv + values, rtol=1e-6)


@pytest.mark.parametrize("script", ATARI)
def test_gae_hand_computed_over_several_steps_where_lambda_matters(script):
    # two envs, five steps, gamma 0.9, lambda 0.5 (gamma * lambda = 0.45)
    # env 0: terminated after step 1 (a lost life), truncated after step 3 (V(final obs) = 2.0)
    # env 1: no episode end, one reward at the last step: its credit flows back 0.45 per step
    rewards = np.array([[1, 0], [0, 0], [1, 0], [0, 0], [1, 1]], np.float32)
    values = np.array([[0.5, 0], [0.4, 0], [0.3, 0], [0.2, 0], [0.1, 0]], np.float32)
    terminations = np.array([[0, 0], [1, 0], [0, 0], [0, 0], [0, 0]], np.float32)
    truncations = np.array([[0, 0], [0, 0], [0, 0], [1, 0], [0, 0]], np.float32)
    truncation_values = np.array([[0, 0], [0, 0], [0, 0], [2.0, 0], [0, 0]], np.float32)
    next_value = np.array([1.0, 0.0], np.float32)
    adv, ret = importlib.import_module(script).compute_gae(rewards, values, next_value, terminations, truncations,
                                                           truncation_values, 0.9, 0.5)  # fmt: skip
    # env 0 deltas: 1 + .9*.4 - .5 = .86 | 0 - .4 = -.4 | 1 + .9*.2 - .3 = .88 | 0 + .9*2 - .2 = 1.6
    # | 1 + .9*1 - .1 = 1.8
    # advantages: .86 + .45*(-.4) = .68 | -.4 (ends) | .88 + .45*1.6 = 1.6 | 1.6 (ends) | 1.8
    np.testing.assert_allclose(adv[:, 0], [0.68, -0.4, 1.6, 1.6, 1.8], rtol=1e-6)
    np.testing.assert_allclose(ret[:, 0], [1.18, 0.0, 1.9, 1.8, 1.9], rtol=1e-6, atol=1e-7)
    # env 1: .45^4, .45^3, .45^2, .45, 1 (without lambda it would be .9^k; lambda 1 too; lambda 0: 0s and a 1)
    np.testing.assert_allclose(adv[:, 1], [0.04100625, 0.091125, 0.2025, 0.45, 1.0], rtol=1e-6)
    np.testing.assert_allclose(ret[:, 1], adv[:, 1], rtol=1e-6)


@pytest.mark.parametrize("script", ATARI)
def test_clipped_policy_loss_values_and_gradients_on_known_numbers(script):
    # clip 0.2: ratios outside [0.8, 1.2] on both sides, with positive and negative advantages
    advantages = torch.tensor([2.0, -1.0, 1.0, -2.0, 1.0])
    ratio = torch.tensor([1.5, 0.5, 0.5, 1.5, 1.1], requires_grad=True)
    loss = importlib.import_module(script).clipped_policy_loss(advantages, ratio, clip_coef=0.2)
    # per sample, max(-A*r, -A*clip(r)): max(-3, -2.4) = -2.4 | max(.5, .8) = .8 | max(-.5, -.8) = -.5
    # | max(3, 2.4) = 3 | -1.1 (inside the range); the min would give (-3 + .5 - .8 + 2.4 - 1.1) / 5 = -.4
    assert loss.item() == pytest.approx((-2.4 + 0.8 - 0.5 + 3.0 - 1.1) / 5)
    loss.backward()
    # the clipped terms (samples 0, 1) give no gradient, the unclipped ones -A / n
    np.testing.assert_allclose(ratio.grad.numpy(), [0.0, 0.0, -1 / 5, 2 / 5, -1 / 5], atol=1e-7)


@pytest.mark.parametrize("script", ATARI)
def test_value_loss_clipped_and_unclipped_on_known_numbers(script):
    module = importlib.import_module(script)
    new = torch.tensor([1.0, 3.0, 2.0], requires_grad=True)
    returns, old = torch.tensor([2.0, 2.0, 2.5]), torch.tensor([0.5, 2.5, 2.0])
    # clip 0.2: clipped values .7, 2.7, 2.0; squared errors unclipped 1, 1, .25 and clipped 1.69, .49, .25:
    # the max is the clipped term in sample 0, the unclipped one in sample 1 (the min: 1, .49, .25)
    clipped = module.value_loss(new, returns, old, 0.2, clip=True)
    assert clipped.item() == pytest.approx(0.5 * (1.69 + 1.0 + 0.25) / 3)
    clipped.backward()
    # sample 0's clipped value is at the clip edge (no gradient); the others: (new - return) / n
    np.testing.assert_allclose(new.grad.numpy(), [0.0, 1 / 3, -0.5 / 3], rtol=1e-6)
    new.grad = None
    unclipped = module.value_loss(new, returns, old, 0.2, clip=False)
    assert unclipped.item() == pytest.approx(0.5 * (1.0 + 1.0 + 0.25) / 3)
    unclipped.backward()
    np.testing.assert_allclose(new.grad.numpy(), [-1 / 3, 1 / 3, -0.5 / 3], rtol=1e-6)


def short_run(script: str, **overrides) -> str:
    module = importlib.import_module(script)
    settings = {"env_id": short_breakout(), "total_timesteps": 128, "num_envs": 2, "num_steps": 32, "progress": False}
    if script == "ppo_atari":
        settings["gym_vector"] = "sync"
    args = module.Args(**settings, **overrides)
    ppo_run.check_args(module, args)
    return module.train(args)


@pytest.mark.parametrize("script", ENVS)
def test_short_run_writes_every_tag_and_is_deterministic(in_tmp, script):
    first_dir = short_run(script)
    first = read_scalars(first_dir)
    assert set(TAGS) <= set(first)
    assert len(first["losses/value_loss"]) == 2
    assert f"|exp_name|{script}|" in read_text(first_dir, "hyperparameters")
    assert all(length in CUT_GAME_FRAMES for _, length in first["charts/episodic_length"])  # (frames, as CleanRL's)
    second = read_scalars(short_run(script, exp_name="again"))
    for tag in first:
        if tag != "charts/SPS":  # wall-clock speed is the one thing allowed to differ
            assert first[tag] == second[tag], tag
    third = read_scalars(short_run(script, seed=2, exp_name="other_seed"))
    assert first["losses/value_loss"] != third["losses/value_loss"]


# --- saved agents and evaluation ------------------------------------------------------------------------


def test_a_saved_agent_loads_back_with_the_same_actions_and_values(tmp_path):
    args = ppo_atari.Args(env_id=BREAKOUT)
    ppo_run.check_args(ppo_atari, args)
    env, obs = breakout_frames()
    # an agent away from its initialization (non-zero biases, a policy head that prefers some actions),
    # and an optimizer with state
    torch.manual_seed(0)
    agent = ppo_atari.make_agent(args, env.observation_space, env.action_space)
    with torch.no_grad():
        for p in agent.parameters():
            p.add_(0.05 * torch.randn_like(p))
    optimizer = torch.optim.Adam(agent.parameters(), lr=2.5e-4, eps=1e-5)
    agent.get_value(obs).square().mean().backward()
    optimizer.step()

    path = str(tmp_path / "ppo_atari.cleanrl_model")
    ppo_run.save_checkpoint(path, agent, optimizer, args, global_step=128, iteration=2)
    assert os.listdir(tmp_path) == ["ppo_atari.cleanrl_model"]  # (the temporary file was renamed)
    loaded_path, checkpoint = ppo_run.load_checkpoint(str(tmp_path))  # a run directory will do
    assert loaded_path == path and (checkpoint["global_step"], checkpoint["iteration"]) == (128, 2)
    loaded = ppo_run.load_agent(ppo_atari, checkpoint)

    with torch.inference_mode():
        assert torch.equal(loaded.action(obs, deterministic=True), agent.action(obs, deterministic=True))
        torch.manual_seed(1)
        sampled = agent.action(obs, deterministic=False)
        torch.manual_seed(1)
        assert torch.equal(loaded.action(obs, deterministic=False), sampled)
        assert torch.equal(loaded.get_value(obs), agent.get_value(obs))
    restored = torch.optim.Adam(loaded.parameters(), lr=2.5e-4, eps=1e-5)
    restored.load_state_dict(checkpoint["optimizer"])
    for before, after in zip(optimizer.state.values(), restored.state.values()):
        assert all(torch.equal(before[key], after[key]) for key in ("exp_avg", "exp_avg_sq"))


class GameLog(gym.Wrapper):
    """Records, below all the wrappers, the raw rewards and the lives of every frame, and game overs."""

    def __init__(self, env):
        super().__init__(env)
        self.rewards, self.lives, self.game_overs = [], [], 0

    def step(self, action):
        obs, reward, terminated, truncated, info = self.env.step(action)
        self.rewards.append(reward)
        self.lives.append(info["lives"])
        self.game_overs += terminated or truncated
        return obs, reward, terminated, truncated, info


def test_evaluation_plays_whole_games_and_returns_their_real_score(monkeypatch):
    logs = []

    def logged_raw_env(env_id, render_mode=None):
        logs.append(GameLog(make_raw_env(env_id, render_mode)))
        return logs[-1]

    make_raw_env = ppo_atari.make_raw_env
    monkeypatch.setattr(ppo_atari, "make_raw_env", logged_raw_env)
    torch.manual_seed(0)
    agent = ppo_atari.Agent(6)
    (score,) = ppo_run.evaluate(ppo_atari.make_env, agent, SPACE_INVADERS, 1, deterministic=False, seed=0)
    (log,) = logs
    # one game, over all its lives (a lost life is not the end of an evaluation game) ...
    assert log.game_overs == 1 and log.lives[0] == 3 and log.lives[-1] == 0
    # ... scored in points, unclipped (5 to 30 per alien)
    assert score == sum(log.rewards) > np.count_nonzero(log.rewards)


def test_ctrl_c_with_async_workers_still_stops_cleanly(tmp_path):
    # Ctrl-C in a terminal signals the whole process group, the env workers included: they must step on
    # until the main process has finished its iteration, written its checkpoint and closed them
    command = [sys.executable, os.path.join(ROOT, "ppo_atari.py"), "--no-progress", "--gym-vector", "async",
               "--num-envs", "2", "--num-steps", "32", "--total-timesteps", "6400000",
               "--checkpoint-every", "1"]  # fmt: skip
    process = start_training(command, str(tmp_path), start_new_session=True)
    os.killpg(process.pid, signal.SIGINT)
    try:
        _, stderr = process.communicate(timeout=120)
    finally:  # a run that ignored the signal is not left training after the test
        if process.poll() is None:
            os.killpg(process.pid, signal.SIGKILL)
    assert process.returncode == 128 + signal.SIGINT and "Traceback" not in stderr, stderr
    (run_dir,) = os.listdir(tmp_path / "runs")
    assert os.path.isfile(tmp_path / "runs" / run_dir / "ppo_atari.cleanrl_model")


@pytest.mark.parametrize(
    "args, message",
    [
        (["--checkpoint-every", "-1"], "--checkpoint-every must be 0 or positive"),
        (
            ["--env-id", "BreakoutNoFrameskip-v5"],
            "unknown environment id 'BreakoutNoFrameskip-v5'; did you mean BreakoutNoFrameskip-v4",
        ),
        (["--env-id", "CartPole-v1"], "vector observations (4,); use ppo.py"),
        (["--env-id", "Pendulum-v1"], "continuous actions; use ppo_continuous_action.py"),
        (
            ["--env-id", "Breakout-v4"],
            "random number of frames per step; (atari 2) max-and-skip needs an id with a fixed frameskip: "
            "use BreakoutNoFrameskip-v4 or ALE/Breakout-v5",
        ),
        (["--num-minibatches", "3"], "does not split into --num-minibatches 3"),
        (["--num-envs", "0"], "--num-envs must be positive"),
        (["--num-steps", "-1"], "--num-steps must be positive"),
        (["--total-timesteps", "100"], "less than one batch"),
    ],
)  # fmt: skip
def test_bad_input_is_one_line_exit_2_and_no_run_directory(tmp_path, args, message):
    result = run_script("ppo_atari.py", *args, cwd=str(tmp_path))
    assert result.returncode == 2
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and message in lines[0], result.stderr
    assert lines[0].startswith("ppo_atari.py: error: ")
    assert "Traceback" not in result.stderr
    assert not os.path.exists(tmp_path / "runs")


# What ppo_atari.py logged at 82b8fdb (before the run module and the variant files), on one update thread:
# `python ppo_atari.py --total-timesteps 3072 --no-progress --update-threads 1 --gym-vector sync --no-save-model`
REFERENCE_EPISODES = [(904, 0.0), (904, 0.0), (1512, 2.0), (1664, 2.0), (1664, 2.0), (1808, 0.0), (1824, 0.0),
                      (1872, 3.0), (2056, 3.0), (2136, 4.0), (2776, 0.0), (2784, 1.0), (2792, 1.0), (2952, 1.0),
                      (2960, 0.0), (3040, 0.0), (3064, 1.0)]  # fmt: skip
REFERENCE_SCALARS = {
    "losses/value_loss": [0.04198247194290161, 0.035063598304986954, 0.022599907591938972],
    "losses/policy_loss": [-0.004412740468978882, -0.002377142198383808, -0.0007983939722180367],
    "losses/entropy": [1.3847535848617554, 1.3824975490570068, 1.3792636394500732],
    "losses/old_approx_kl": [-0.00037537142634391785, -8.356617763638496e-05, -0.0011672084219753742],
    "losses/approx_kl": [0.0015038126148283482, 0.000519818626344204, 0.00041655381210148335],
    "losses/explained_variance": [0.012256145477294922, -0.015525460243225098, 0.03115391731262207],
    "charts/learning_rate": [0.0002500000118743628, 0.00016666666488163173, 8.333333244081587e-05],
}


def test_a_short_default_run_logs_what_the_reference_commit_logged(tmp_path):
    """The default path's arithmetic is kept through rewrites: the same games, losses and metrics (to float
    rounding, which another CPU's kernels may change) as the script logged before."""
    flags = ["--total-timesteps", "3072", "--no-progress", "--update-threads", "1", "--gym-vector", "sync"]
    done = run_script("ppo_atari.py", *flags, "--no-save-model", cwd=tmp_path)
    assert done.returncode == 0, done.stderr
    (run_dir,) = [os.path.join(tmp_path, "runs", d) for d in os.listdir(tmp_path / "runs")]
    scalars = read_scalars(run_dir)
    assert [(step, value) for step, value in scalars["charts/episodic_return"]] == REFERENCE_EPISODES
    for tag, values in REFERENCE_SCALARS.items():
        assert [step for step, _ in scalars[tag]] == [1024, 2048, 3072], tag
        assert [value for _, value in scalars[tag]] == pytest.approx(values, rel=1e-3, abs=1e-6), tag
