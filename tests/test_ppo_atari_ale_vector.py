"""Tests of what ppo_atari_ale_vector.py changes in ppo_atari.py, its training envs: ale-py's C++ vector env against
the gymnasium wrappers pixel for pixel, its game statistics at lost lives and game overs, its fire and no-op resets,
the ids it maps and the input it refuses. Real ALE emulators. (What it shares with ppo_atari.py is tested in
tests/test_ppo_atari.py and the shared test modules, parametrized over both files.)"""

import os

import numpy as np
import pytest
import torch
from conftest import run_script
from test_ppo_atari import BREAKOUT, SPACE_INVADERS

import ppo_atari_ale_vector
import ppo_run

pytestmark = pytest.mark.usefixtures("one_torch_thread")  # (conftest) torch on one thread, as the script runs


@pytest.mark.parametrize("env_id", [BREAKOUT, SPACE_INVADERS])
def test_ale_vector_env_gives_the_same_pixels_rewards_and_ends_as_the_wrappers(env_id):
    # the same start (1 no-op frame, no FIRE), the same actions; compared until the first lost life,
    # after which the two differ by design (see the comment above ale_vector_settings)
    vec = ppo_atari_ale_vector.make_ale_vector_env(env_id, 4, noop_max=2, fire_reset=False)  # 0 or 1 no-op frame
    vec_obs, vec_info = vec.reset(seed=3)
    k = int(np.flatnonzero(vec_info["episode_frame_number"] == 1)[0])
    env = ppo_atari_ale_vector.make_env(env_id, noop_max=1, fire_reset=False)  # exactly 1 no-op frame
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
    envs = ppo_atari_ale_vector.AleVectorGameStatistics(ppo_atari_ale_vector.make_ale_vector_env(SPACE_INVADERS, 2))
    obs, info = envs.reset(seed=0)
    assert obs.shape == (2, 4, 84, 84) and obs.dtype == np.uint8
    start_lives = info["lives"].copy()
    lives, frames = info["lives"].copy(), info["episode_frame_number"].copy()
    score, lives_lost, games = np.zeros(2), np.zeros(2, dtype=int), []
    rng = np.random.default_rng(0)
    for _ in range(20000):
        obs, rewards, terminated, truncated, info = envs.step(rng.integers(6, size=2))
        score += rewards  # unclipped points
        over = info["final_info"]["_episode"] if "final_info" in info else np.zeros(2, bool)
        for i in range(2):
            if over[i]:
                # game over: reported with the real score of the whole game, and a new game begins
                assert terminated[i] or truncated[i]
                assert info["final_info"]["episode"]["r"][i] == score[i]
                # its length in frames: every frame of the game, the last step's (up to 4) included
                assert frames[i] < info["final_info"]["episode"]["l"][i] <= frames[i] + 4
                assert info["lives"][i] == start_lives[i] and info["episode_frame_number"][i] <= 30
                games.append((score[i], lives_lost[i]))
                score[i], lives_lost[i] = 0, 0
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


def test_ale_vector_settings_map_ids_to_roms_and_sticky_actions():
    ppo_atari_ale_vector.register_atari_envs()
    assert ppo_atari_ale_vector.ale_vector_settings(BREAKOUT) == {
        "game": "breakout", "repeat_action_probability": 0.0, "full_action_space": False,
        "max_num_frames_per_episode": 108_000,
    }  # fmt: skip
    assert ppo_atari_ale_vector.ale_vector_settings("ALE/MsPacman-v5")["game"] == "ms_pacman"
    assert ppo_atari_ale_vector.ale_vector_settings("ALE/MsPacman-v5")["repeat_action_probability"] == 0.25
    with pytest.raises(ppo_atari_ale_vector.UsageError, match="random number of frames"):
        ppo_atari_ale_vector.ale_vector_settings("Breakout-v4")


@pytest.mark.parametrize("fire_reset", [True, False])
def test_ale_vector_fire_reset_launches_the_ball_in_breakout(fire_reset):
    # the C++ env's use_fire_reset: without it, the ball waits for a FIRE that no-ops never press
    envs = ppo_atari_ale_vector.make_ale_vector_env(BREAKOUT, 2, fire_reset=fire_reset)
    envs.reset(seed=0)
    lost = np.zeros(2, bool)
    for _ in range(150):
        lost |= envs.step(np.zeros(2, np.int64))[2]
    envs.close()
    assert list(lost) == [fire_reset, fire_reset]


def test_without_noop_reset_every_game_starts_alike():
    # noop_max=1 (exactly one no-op frame): the same start frame and screen whatever the seed
    envs = ppo_atari_ale_vector.make_ale_vector_env(BREAKOUT, 4, noop_max=1)
    obs, info = envs.reset(seed=0)
    envs.close()
    frames = info["episode_frame_number"]
    assert len(set(frames)) == 1 and len({o.tobytes() for o in obs}) == 1


@pytest.mark.parametrize(
    "args, message",
    [
        (["--capture-video"], "--capture-video cannot record training games: ale-py's C++ vector env cannot render"),
        (["--env-id", "Breakout-v4"], "ale-py's C++ vector env cannot map Breakout-v4: it skips a random number"),
    ],
)
def test_bad_input_is_one_line_exit_2_and_no_run_directory(tmp_path, args, message):
    result = run_script("ppo_atari_ale_vector.py", *args, cwd=str(tmp_path))
    assert result.returncode == 2
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and message in lines[0], result.stderr
    assert lines[0].startswith("ppo_atari_ale_vector.py: error: ")
    assert not os.path.exists(tmp_path / "runs")


def test_a_checkpoint_is_evaluated_whatever_run_control_flags_it_was_trained_with(tmp_path):
    # (a checkpoint of ppo_atari.py trained with --capture-video, which the C++ env cannot do, is still a policy)
    args = ppo_atari_ale_vector.Args(env_id="BreakoutNoFrameskip-v4", capture_video=True)
    env = ppo_atari_ale_vector.make_env(args.env_id)
    agent = ppo_atari_ale_vector.make_agent(args, env.observation_space, env.action_space)
    env.close()
    optimizer = torch.optim.Adam(agent.parameters())
    ppo_run.save_checkpoint(str(tmp_path / "a.cleanrl_model"), agent, optimizer, args, global_step=0, iteration=0)
    loaded = ppo_run.load_agent(ppo_atari_ale_vector, ppo_run.load_checkpoint(str(tmp_path))[1])
    assert all(torch.equal(a, b) for a, b in zip(loaded.state_dict().values(), agent.state_dict().values()))
