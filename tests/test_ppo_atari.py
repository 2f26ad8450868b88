"""Tests of ppo_atari.py: each Atari wrapper on a real game, the C++ backend against the wrappers
pixel for pixel, the game statistics of both backends, the network, episode boundaries of a rollout,
logging, determinism, saved agents, evaluation and bad input. Real ALE emulators throughout; the runs
are tiny (CPU). (Checkpoints, resume, signals and videos: tests/test_checkpoints.py.)"""

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

BREAKOUT = "BreakoutNoFrameskip-v4"
SPACE_INVADERS = "SpaceInvadersNoFrameskip-v4"  # 5 to 30 points per alien: clipped and real scores differ
BACKENDS = ["gymnasium", "ale-vector"]


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


@pytest.fixture(autouse=True)
def one_torch_thread():
    """Torch as the script runs it on the CPU (--torch-threads 1), for the tests that call its parts."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


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
    env, twin = ppo_atari.MaxAndSkipEnv(ppo_atari.make_raw_env(SPACE_INVADERS), skip=4), ppo_atari.make_raw_env(SPACE_INVADERS)
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
    env = ppo_atari.make_atari_env(BREAKOUT, fire_reset=fire_reset)
    env.reset(seed=0)
    life_lost = any(env.step(0)[2] for _ in range(150))
    assert life_lost == fire_reset


def test_observation_is_4_frames_of_84x84_gray_newest_last():
    env = ppo_atari.make_atari_env(BREAKOUT)
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
    log.rewards.clear()  # (the no-op frames of the reset score nothing anyway)
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
    # the length counts every 4-frame step of the game: the agent's, the two of each fire reset and
    # the no-op of each lost life
    assert info["episode"]["l"] == steps + 2 + 3 * lives_lost


# --- the C++ backend -------------------------------------------------------------------------------


@pytest.mark.parametrize("env_id", [BREAKOUT, SPACE_INVADERS])
def test_ale_vector_env_gives_the_same_pixels_rewards_and_ends_as_the_wrappers(env_id):
    # the same start (1 no-op frame, no FIRE), the same actions; compared until the first lost life,
    # after which the two differ by design (see the comment above ale_vector_settings)
    vec = ppo_atari.make_ale_vector_env(env_id, 4, noop_max=2, fire_reset=False)  # 0 or 1 no-op frame
    vec_obs, vec_info = vec.reset(seed=3)
    k = int(np.flatnonzero(vec_info["episode_frame_number"] == 1)[0])
    env = ppo_atari.make_atari_env(env_id, noop_max=1, fire_reset=False)  # exactly 1 no-op frame
    obs, _ = env.reset(seed=3)
    assert np.array_equal(obs[3], vec_obs[k, 3])
    rng = np.random.default_rng(0)
    rewarded = 0
    for step in range(1000):
        action = int(rng.integers(env.action_space.n))
        obs, reward, terminated, truncated, _ = env.step(action)
        vec_obs, vec_reward, vec_terminated, _, _ = vec.step(np.full(4, action))
        assert np.array_equal(obs[3], vec_obs[k, 3]), step
        if step >= 3:  # (at a reset the C++ env pads its stack with zeros, the wrappers with copies)
            assert np.array_equal(obs, vec_obs[k])
        assert reward == np.sign(vec_reward[k]) and terminated == vec_terminated[k]
        rewarded += reward != 0
        if terminated:
            break
    assert terminated and rewarded > 0
    vec.close()


def test_ale_vector_life_loss_and_game_over_semantics_and_the_full_game_score():
    envs = ppo_atari.AleVectorGameStatistics(ppo_atari.make_ale_vector_env(SPACE_INVADERS, 2))
    obs, info = envs.reset(seed=0)
    assert obs.shape == (2, 4, 84, 84) and obs.dtype == np.uint8
    start_lives = info["lives"].copy()
    lives, frames = info["lives"].copy(), info["episode_frame_number"].copy()
    score, length, lives_lost, games = np.zeros(2), np.zeros(2, dtype=int), np.zeros(2, dtype=int), []
    rng = np.random.default_rng(0)
    for _ in range(20000):
        obs, rewards, terminated, truncated, info = envs.step(rng.integers(6, size=2))
        score += rewards  # unclipped points
        length += 1
        over = info["final_info"]["_episode"] if "final_info" in info else np.zeros(2, bool)
        for i in range(2):
            if over[i]:
                # game over: reported with the real score of the whole game, and a new game begins
                assert terminated[i] or truncated[i]
                assert info["final_info"]["episode"]["r"][i] == score[i] and info["final_info"]["episode"]["l"][i] == length[i]
                assert info["lives"][i] == start_lives[i] and info["episode_frame_number"][i] <= 30
                games.append((score[i], lives_lost[i]))
                score[i], length[i], lives_lost[i] = 0, 0, 0
            elif terminated[i]:
                # a lost life: the episode ends, the game goes on (frames counted on, no reset)
                assert info["lives"][i] == lives[i] - 1
                assert info["episode_frame_number"][i] == frames[i] + 4
                lives_lost[i] += 1
            else:
                assert info["episode_frame_number"][i] == frames[i] + 4
        lives, frames = info["lives"].copy(), info["episode_frame_number"].copy()
        if len(games) >= 2:
            break
    assert len(games) >= 2
    assert all(lost >= 1 for _, lost in games) and max(s for s, _ in games) > 30  # scores over lives, in points
    envs.close()


@pytest.mark.parametrize("env_backend", BACKENDS)
def test_make_envs_gives_stacked_frames_and_clipped_rewards(env_backend):
    envs = ppo_atari.make_envs(SPACE_INVADERS, 2, env_backend, "sync")
    assert envs.single_observation_space.shape == (4, 84, 84) and envs.single_action_space.n == 6
    obs, _ = envs.reset(seed=0)
    assert obs.shape == (2, 4, 84, 84) and obs.dtype == np.uint8
    rng = np.random.default_rng(0)
    rewards = [envs.step(rng.integers(6, size=2))[1] for _ in range(150)]
    assert set(np.unique(rewards)) <= {-1.0, 0.0, 1.0} and np.max(rewards) == 1.0
    envs.close()


def test_ale_vector_settings_map_ids_to_roms_and_sticky_actions():
    ppo_atari.register_atari_envs()
    assert ppo_atari.ale_vector_settings(BREAKOUT) == {
        "game": "breakout", "repeat_action_probability": 0.0, "full_action_space": False,
        "max_num_frames_per_episode": 108_000,
    }  # fmt: skip
    assert ppo_atari.ale_vector_settings("ALE/MsPacman-v5")["game"] == "ms_pacman"
    assert ppo_atari.ale_vector_settings("ALE/MsPacman-v5")["repeat_action_probability"] == 0.25
    with pytest.raises(ppo_atari.UsageError, match="random number of frames"):
        ppo_atari.ale_vector_settings("Breakout-v4")


# --- the network ------------------------------------------------------------------------------------


def test_network_output_shapes_and_pixel_scaling():
    torch.manual_seed(0)
    agent = ppo_atari.Agent(n_actions=6)
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


@pytest.mark.parametrize(
    "layer, gain",
    [("network.0", 2**0.5), ("network.2", 2**0.5), ("network.4", 2**0.5), ("network.7", 2**0.5), ("actor", 0.01), ("critic", 1.0)],
)
def test_orthogonal_init_gains(layer, gain):
    torch.manual_seed(0)
    module = ppo_atari.Agent(4).get_submodule(layer)
    w = module.weight.detach().double().flatten(1)
    gram = w @ w.T if w.shape[0] <= w.shape[1] else w.T @ w  # (scaled) identity for an orthogonal matrix
    np.testing.assert_allclose(gram.numpy(), gain**2 * np.eye(min(w.shape)), atol=1e-6 * max(1, gain**2))
    assert torch.all(module.bias == 0)


def test_nature_cnn_sizes():
    agent = ppo_atari.Agent(4)
    convs = [m for m in agent.network if isinstance(m, torch.nn.Conv2d)]
    assert [(c.out_channels, c.kernel_size, c.stride) for c in convs] == [(32, (8, 8), (4, 4)), (64, (4, 4), (2, 2)), (64, (3, 3), (1, 1))]
    assert agent.network[7].out_features == 512


# --- rollouts and runs --------------------------------------------------------------------------------


@pytest.mark.parametrize("env_backend", BACKENDS)
def test_rollout_reports_each_cut_game_and_bootstraps_it(env_backend):
    envs = ppo_atari.make_envs(short_breakout(), 2, env_backend, "sync")
    torch.manual_seed(0)
    agent = ppo_atari.Agent(4)
    buf = ppo_atari.RolloutBuffer(120, 2, (4, 84, 84), torch.device("cpu"))
    obs, _ = envs.reset(seed=0)
    next_obs, episodes = ppo_atari.collect_rollout(agent, envs, obs, buf)
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
    assert all(40 <= length <= 50 for _, _, _, length in episodes)  # 200 frames, 4 per step
    # the rollout's frames went into the uint8 buffer as they were
    assert buf.obs.dtype == torch.uint8 and buf.obs[0].numpy().std() > 0


def test_gae_bootstraps_truncation_from_the_final_value():
    rewards = np.ones((3, 1), np.float32)
    values = np.array([[0.5], [0.4], [0.3]], np.float32)
    terminations = np.array([[1.0], [0.0], [0.0]], np.float32)  # e.g. a lost life
    truncations = np.array([[0.0], [1.0], [0.0]], np.float32)  # the frame limit
    truncation_values = np.array([[0.0], [2.0], [0.0]], np.float32)
    adv, ret = ppo_atari.compute_gae(rewards, values, np.array([1.0], np.float32), terminations, truncations,
                                     truncation_values, 0.9, 0.5)  # fmt: skip
    np.testing.assert_allclose(adv[:, 0], [0.5, 1 + 0.9 * 2 - 0.4, 1 + 0.9 - 0.3], rtol=1e-6)
    np.testing.assert_allclose(ret, adv + values, rtol=1e-6)


def short_run(**overrides) -> str:
    args = ppo_atari.Args(
        **{"env_id": short_breakout(), "total_timesteps": 128, "num_envs": 2, "num_steps": 32, "progress": False,
           "gym_vector": "sync", **overrides}  # fmt: skip
    )
    ppo_atari.check_args(args)
    return ppo_atari.train(args)


@pytest.mark.parametrize("env_backend", BACKENDS)
def test_short_run_writes_every_tag_and_is_deterministic(in_tmp, env_backend):
    first_dir = short_run(env_backend=env_backend)
    first = read_scalars(first_dir)
    assert set(TAGS) <= set(first)
    assert len(first["losses/value_loss"]) == 2
    assert f"|env_backend|{env_backend}|" in read_text(first_dir, "hyperparameters")
    assert all(40 <= length <= 50 for _, length in first["charts/episodic_length"])
    second = read_scalars(short_run(env_backend=env_backend, exp_name="again"))
    for tag in first:
        if tag != "charts/SPS":  # wall-clock speed is the one thing allowed to differ
            assert first[tag] == second[tag], tag
    third = read_scalars(short_run(env_backend=env_backend, seed=2, exp_name="other_seed"))
    assert first["losses/value_loss"] != third["losses/value_loss"]


# --- saved agents and evaluation ------------------------------------------------------------------------


def test_a_saved_agent_loads_back_with_the_same_actions_and_values(tmp_path):
    args = ppo_atari.Args(env_id=BREAKOUT)
    ppo_atari.check_args(args)
    # real observations: the first frames of a game played at random
    env = ppo_atari.make_atari_env(BREAKOUT)
    frames, rng = [env.reset(seed=0)[0]], np.random.default_rng(0)
    for _ in range(15):
        frames.append(env.step(int(rng.integers(4)))[0])
    env.close()
    obs = torch.as_tensor(np.stack(frames))
    # an agent away from its initialization (non-zero biases, a policy head that prefers some actions),
    # and an optimizer with state
    torch.manual_seed(0)
    agent = ppo_atari.Agent(4)
    with torch.no_grad():
        for p in agent.parameters():
            p.add_(0.05 * torch.randn_like(p))
    optimizer = torch.optim.Adam(agent.parameters(), lr=2.5e-4, eps=1e-5)
    agent.get_value(obs).square().mean().backward()
    optimizer.step()

    path = str(tmp_path / "ppo_atari.cleanrl_model")
    ppo_atari.save_checkpoint(path, agent, optimizer, args, global_step=128, iteration=2)
    assert os.listdir(tmp_path) == ["ppo_atari.cleanrl_model"]  # (the temporary file was renamed)
    loaded_path, checkpoint = ppo_atari.load_checkpoint(str(tmp_path))  # a run directory will do
    assert loaded_path == path and (checkpoint["global_step"], checkpoint["iteration"]) == (128, 2)
    loaded = ppo_atari.load_agent(checkpoint)

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
    (score,) = ppo_atari.evaluate(agent, SPACE_INVADERS, 1, deterministic=False, seed=0)
    (log,) = logs
    # one game, over all its lives (a lost life is not the end of an evaluation game) ...
    assert log.game_overs == 1 and log.lives[0] == 3 and log.lives[-1] == 0
    # ... scored in points, unclipped (5 to 30 per alien)
    assert score == sum(log.rewards) > np.count_nonzero(log.rewards)


def test_ctrl_c_with_async_workers_still_stops_cleanly(tmp_path):
    # Ctrl-C in a terminal signals the whole process group, the env workers included: they must step on
    # until the main process has finished its iteration, written its checkpoint and closed them
    command = [sys.executable, os.path.join(ROOT, "ppo_atari.py"), "--no-progress", "--env-backend", "gymnasium",
               "--gym-vector", "async", "--num-envs", "2", "--num-steps", "32", "--total-timesteps", "6400000",
               "--checkpoint-every", "1"]  # fmt: skip
    process = start_training(command, str(tmp_path), start_new_session=True)
    os.killpg(process.pid, signal.SIGINT)
    _, stderr = process.communicate(timeout=120)
    assert process.returncode == 128 + signal.SIGINT and "Traceback" not in stderr, stderr
    (run_dir,) = os.listdir(tmp_path / "runs")
    assert os.path.isfile(tmp_path / "runs" / run_dir / "ppo_atari.cleanrl_model")


@pytest.mark.parametrize(
    "args, message",
    [
        (["--capture-video"], "--capture-video needs --env-backend gymnasium"),
        (["--checkpoint-every", "-1"], "--checkpoint-every must be 0 or positive"),
        (["--env-id", "BreakoutNoFrameskip-v5"], "unknown environment id 'BreakoutNoFrameskip-v5'; did you mean BreakoutNoFrameskip-v4"),
        (["--env-id", "CartPole-v1"], "vector observations (4,); use ppo.py"),
        (["--env-id", "Pendulum-v1"], "continuous actions; use ppo_continuous_action.py"),
        (["--env-backend", "gymnasium", "--env-id", "Breakout-v4"], "random number of frames per step; (atari 2) max-and-skip needs an id with a fixed frameskip: use BreakoutNoFrameskip-v4 or ALE/Breakout-v5"),
        (["--env-backend", "ale-vector", "--env-id", "Breakout-v4"], "--env-backend ale-vector cannot map Breakout-v4"),
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
