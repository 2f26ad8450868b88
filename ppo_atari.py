"""PPO for Atari games (pixels, discrete actions), on gymnasium 1.x and ale-py.

Read it top to bottom: arguments, the Atari wrappers, the two environment backends, agent, rollout,
GAE, losses, update, training loop. Each implementation detail carries a comment naming it after
"The 37 Implementation Details of Proximal Policy Optimization" (Huang et al., 2022), e.g.
`(core 5)` or `(atari 3)`.

    python ppo_atari.py --env-id BreakoutNoFrameskip-v4
    python ppo_atari.py --env-backend gymnasium      # the wrappers written out below, in Python
    python ppo_atari.py --env-backend ale-vector     # ale-py's C++ vector env, the same preprocessing
    tensorboard --logdir runs
"""

import difflib
import glob
import math
import os
import random
import signal
import sys
import time
from dataclasses import asdict, dataclass, fields
from typing import Literal

import cv2
import gymnasium as gym
import numpy as np
import torch
import torch.nn as nn
from torch.utils.tensorboard import SummaryWriter


@dataclass
class Args:
    exp_name: str = os.path.basename(__file__)[: -len(".py")]
    """the name of this experiment (part of the run directory's name)"""
    seed: int = 1
    """seed of the experiment: same seed, same numbers, run after run (on CPU, with either backend)"""
    torch_threads: int = 1
    """torch CPU threads for the rollout's inference on the CPU (a batch of one observation per env: a
    second thread only adds synchronisation, and the C++ envs' threads want the cores then)"""
    update_threads: int = 0
    """torch CPU threads for the update on the CPU (0: every core this process may use; the Nature-CNN's
    forward and backward on a minibatch of 256 frame stacks is most of the run, and on an idle 2-core
    machine a second thread made training about 30% faster)"""
    cuda: bool = True
    """train on the GPU when torch sees one (else on the CPU)"""
    progress: bool = True
    """show a progress line in the terminal"""
    env_backend: Literal["ale-vector", "gymnasium"] = "ale-vector"
    """the environments: ale-py's C++ vector env (fast), or gymnasium envs with the wrappers of this file"""
    gym_vector: Literal["auto", "sync", "async"] = "auto"
    """gymnasium backend: step the envs in this process (sync), one subprocess each (async), or auto:
    async when the machine has more than 2 cores"""
    ale_threads: int = 0
    """ale-vector backend: threads of the C++ env (0: one per env, at most one per core)"""
    save_model: bool = True
    """write a checkpoint (weights, optimizer, step, RNG states, args) into the run directory at the end,
    every --checkpoint-every iterations and when interrupted"""
    checkpoint_every: int = 100
    """iterations between checkpoints (0: only at the end and when interrupted)"""
    resume: str | None = None
    """continue the run of this checkpoint (or run directory): same run directory, TensorBoard log,
    learning-rate schedule and RNG states; the environments start new games"""
    eval_episodes: int = 0
    """after training, play this many whole games (all lives) with the trained policy and log
    eval/episodic_return, the real game score"""
    eval_deterministic: bool = False
    """evaluate with the most likely action (argmax) instead of a sampled one"""
    eval_checkpoint: str | None = None
    """only evaluate this checkpoint (or run directory) for --eval-episodes games (10 if 0), then exit"""
    capture_video: bool = False
    """record MP4 videos of the first env's games (and of evaluation games) under videos/{run_name}/;
    training needs --env-backend gymnasium for it"""

    # Algorithm arguments
    env_id: str = "BreakoutNoFrameskip-v4"
    """the id of an Atari game: XNoFrameskip-v4 (no sticky actions) or ALE/X-v5 (sticky actions 0.25)"""
    total_timesteps: int = 10_000_000
    """total environment steps of the experiment (over all envs; one step is 4 frames)"""
    learning_rate: float = 2.5e-4
    """the learning rate of the optimizer"""
    num_envs: int = 8
    """the number of parallel environments"""
    num_steps: int = 128
    """the number of steps each environment runs per rollout"""
    anneal_lr: bool = True
    """anneal the learning rate linearly to 0 over training"""
    gamma: float = 0.99
    """the discount factor"""
    gae_lambda: float = 0.95
    """the lambda of generalized advantage estimation"""
    num_minibatches: int = 4
    """the number of minibatches each epoch splits the batch into"""
    update_epochs: int = 4
    """the number of passes over the batch per update"""
    norm_adv: bool = True
    """normalize advantages per minibatch"""
    clip_coef: float = 0.1
    """the surrogate clipping coefficient"""
    clip_vloss: bool = True
    """clip the value loss around the rollout's values"""
    ent_coef: float = 0.01
    """the coefficient of the entropy bonus"""
    vf_coef: float = 0.5
    """the coefficient of the value loss"""
    max_grad_norm: float = 0.5
    """the maximum global norm of the gradients"""
    target_kl: float | None = None
    """stop the update epochs early once the approximate KL exceeds this (off by default)"""
    bootstrap_truncation: bool = True
    """bootstrap time-limit truncations from V(final observation); off treats them as deaths"""

    # filled in at runtime
    batch_size: int = 0
    """the batch size (num_envs * num_steps; computed at runtime)"""
    minibatch_size: int = 0
    """the minibatch size (batch_size // num_minibatches; computed at runtime)"""
    num_iterations: int = 0
    """the number of rollout-and-update iterations (total_timesteps // batch_size; computed at runtime)"""


SCRIPT = os.path.basename(__file__)


class UsageError(Exception):
    """Bad input from the user: reported as one line on stderr, exit code 2."""


class NonFiniteError(Exception):
    """A non-finite loss, gradient or parameter: the run stops, reported as one line, exit code 1."""


class Interrupted(Exception):
    """SIGINT or SIGTERM: the run stopped after writing a checkpoint; exit code 128 + the signal."""

    def __init__(self, message: str, signum: int):
        super().__init__(message)
        self.signum = signum


def check_args(args: Args) -> None:
    """Reject impossible settings and unsuitable environments before anything is written."""
    rules = [  # (names, the test each value must pass, what it asks); NaN fails every test
        (("total_timesteps", "num_envs", "num_steps", "num_minibatches", "update_epochs", "torch_threads",
          "learning_rate", "clip_coef", "max_grad_norm", "target_kl"), lambda x: x > 0, "positive"),
        (("gamma", "gae_lambda"), lambda x: 0 <= x <= 1, "in [0, 1]"),
        (("ent_coef", "vf_coef"), lambda x: x >= 0, "0 or positive"),
    ]  # fmt: skip
    for names, test, asked in rules:
        for name in names:
            if getattr(args, name) is not None and not test(getattr(args, name)):
                raise UsageError(f"--{name.replace('_', '-')} must be {asked}, got {getattr(args, name)}")
    for name, value in asdict(args).items():  # infinity (and NaN) anywhere
        if isinstance(value, float) and not math.isfinite(value):
            raise UsageError(f"--{name.replace('_', '-')} must be finite, got {value}")
    if args.ale_threads < 0:
        raise UsageError(f"--ale-threads must be 0 (automatic) or positive, got {args.ale_threads}")
    check_counts(args)
    # ale-py's C++ vector env has no render mode: rather than quietly record nothing of the training games
    # with the default backend, say so at once (evaluation videos need no flag: evaluation always plays
    # one env of the gymnasium backend)
    if args.capture_video and args.env_backend != "gymnasium":
        raise UsageError("--capture-video needs --env-backend gymnasium (ale-py's C++ vector env cannot render)")
    args.batch_size = args.num_envs * args.num_steps
    if args.batch_size % args.num_minibatches:
        raise UsageError(
            f"the batch of {args.batch_size} steps (--num-envs {args.num_envs} x --num-steps {args.num_steps}) "
            f"does not split into --num-minibatches {args.num_minibatches}"
        )
    if args.total_timesteps < args.batch_size:
        raise UsageError(f"--total-timesteps {args.total_timesteps} is less than one batch ({args.batch_size} steps)")
    args.minibatch_size = args.batch_size // args.num_minibatches
    args.num_iterations = args.total_timesteps // args.batch_size
    if args.norm_adv and args.minibatch_size < 2:  # (core 7) the std of one sample is NaN
        raise UsageError(
            f"--num-minibatches {args.num_minibatches} leaves {args.minibatch_size} sample per minibatch, and "
            f"advantage normalization needs at least 2: use fewer minibatches or --no-norm-adv"
        )
    check_env(args.env_id, args.env_backend)


def check_counts(args: Args) -> None:
    for name in ("checkpoint_every", "eval_episodes", "update_threads"):
        if getattr(args, name) < 0:
            raise UsageError(f"--{name.replace('_', '-')} must be 0 or positive, got {getattr(args, name)}")


def register_atari_envs() -> None:
    """Atari ids are registered only on request (gymnasium 1.x); ale-py ships the ROMs."""
    import ale_py

    ale_py.ALEInterface.setLoggerMode(ale_py.LoggerMode.Error)  # no banner on stderr
    gym.register_envs(ale_py)


def check_env(env_id: str, env_backend: str = "gymnasium") -> None:
    register_atari_envs()
    if env_id not in gym.registry:
        close = difflib.get_close_matches(env_id, list(gym.registry), n=3, cutoff=0.6)
        hint = f"; did you mean {' or '.join(close)}?" if close else ""
        raise UsageError(f"unknown environment id {env_id!r}{hint}")
    try:
        env = gym.make(env_id, disable_env_checker=True)
    except Exception as e:  # e.g. a missing optional dependency
        raise UsageError(f"cannot create {env_id}: {e}") from None
    obs_space, act_space = env.observation_space, env.action_space
    env.close()
    if isinstance(act_space, gym.spaces.Box):
        raise UsageError(f"{env_id} has continuous actions; use ppo_continuous_action.py")
    if not isinstance(act_space, gym.spaces.Discrete):
        raise UsageError(f"{env_id} has {type(act_space).__name__} actions; ppo_atari.py handles Discrete actions only")
    if isinstance(obs_space, gym.spaces.Box) and len(obs_space.shape) == 1:
        raise UsageError(f"{env_id} has vector observations {obs_space.shape}; use ppo.py")
    spec = gym.spec(env_id)
    if spec.entry_point != "ale_py.env:AtariEnv":
        raise UsageError(f"{env_id} is not an Atari game of ale-py; ppo_atari.py's wrappers need the ALE emulator")
    if env_backend == "ale-vector":
        ale_vector_settings(env_id)  # raises UsageError where the C++ env cannot do what the id says
    elif not isinstance(spec.kwargs.get("frameskip", 1), int):
        raise UsageError(
            f"{env_id} skips a random number of frames per step; (atari 2) max-and-skip needs an id with a fixed "
            f"frameskip: use {' or '.join(fixed_skip_ids(env_id))}"
        )


def fixed_skip_ids(env_id: str) -> list[str]:
    """The ids of the same game that the script can run, for hints."""
    game = env_id.split("/")[-1].split("-v")[0].replace("NoFrameskip", "")
    return [i for i in (f"{game}NoFrameskip-v4", f"ALE/{game}-v5") if i in gym.registry]


# ---------------------------------------------------------------------------------------------------
# Backend "gymnasium": the Atari preprocessing of openai/baselines as gymnasium wrappers, one detail
# each, stacked in `make_atari_env` (bottom to top): no-op reset, max-and-skip, full-game statistics,
# episodic life, fire reset, warp frame, reward clipping, frame stack.
# ---------------------------------------------------------------------------------------------------


class NoopResetEnv(gym.Wrapper):
    """(atari 1) no-op reset: after each real reset, 1 to `noop_max` no-op frames, so that the games
    start from different states."""

    def __init__(self, env: gym.Env, noop_max: int = 30):
        super().__init__(env)
        self.noop_max = noop_max
        assert env.unwrapped.get_action_meanings()[0] == "NOOP"

    def reset(self, **kwargs):
        obs, info = self.env.reset(**kwargs)
        # the env's own generator, seeded by reset(seed=...), so that a seed gives the same no-ops
        for _ in range(self.unwrapped.np_random.integers(1, self.noop_max + 1)):
            obs, _, terminated, truncated, info = self.env.step(0)
            if terminated or truncated:
                obs, info = self.env.reset()
        return obs, info


class MaxAndSkipEnv(gym.Wrapper):
    """(atari 2) max-and-skip: repeat the action for `skip` frames, sum their rewards, and observe the
    pixel-wise max of the last two frames (some games draw objects only every other frame)."""

    def __init__(self, env: gym.Env, skip: int = 4):
        super().__init__(env)
        self.skip = skip
        self.frames = np.zeros((2,) + env.observation_space.shape, dtype=np.uint8)  # the last two frames

    def reset(self, **kwargs):
        obs, info = self.env.reset(**kwargs)
        self.frames[0], self.frames[1] = 0, obs  # as the C++ env does, so that both backends see the same
        return obs, info

    def step(self, action):
        total_reward = 0.0
        for i in range(self.skip):
            obs, reward, terminated, truncated, info = self.env.step(action)
            total_reward += reward
            if i >= self.skip - 2:
                self.frames[i - (self.skip - 2)] = obs
            if terminated or truncated:
                break  # (like baselines: a game that ends early shows the max of the frames stored last)
        return self.frames.max(axis=0), total_reward, terminated, truncated, info


class RecordGameStatistics(gym.Wrapper):
    """The real score: the unclipped return and the length (in steps of 4 frames) of a whole game, over
    all its lives, reported as info["episode"] = {"r": return, "l": length} on the step that ends the
    game (game over or time limit). It sits below (atari 3) episodic life and (atari 6) reward clipping,
    so it sees neither; the steps that fire reset and episodic life take for the agent count too."""

    def reset(self, **kwargs):
        self.game_return, self.game_length = 0.0, 0
        return self.env.reset(**kwargs)

    def step(self, action):
        obs, reward, terminated, truncated, info = self.env.step(action)
        self.game_return += float(reward)
        self.game_length += 1
        if terminated or truncated:
            info = {**info, "episode": {"r": self.game_return, "l": self.game_length}}
        return obs, reward, terminated, truncated, info


class EpisodicLifeEnv(gym.Wrapper):
    """(atari 3) episodic life: a lost life ends the episode for learning (terminated=True), but the game
    is only really reset at game over; the "reset" after a lost life is a no-op step from where the game
    stands."""

    def __init__(self, env: gym.Env):
        super().__init__(env)
        self.lives, self.game_over = 0, True

    def step(self, action):
        obs, reward, terminated, truncated, info = self.env.step(action)
        self.game_over = terminated or truncated
        lives = self.unwrapped.ale.lives()
        if 0 < lives < self.lives:
            terminated = True  # a life lost, the game goes on
        self.lives = lives
        return obs, reward, terminated, truncated, info

    def reset(self, **kwargs):
        if self.game_over:
            obs, info = self.env.reset(**kwargs)
        else:
            obs, _, terminated, truncated, info = self.env.step(0)
            if terminated or truncated:  # the no-op itself ended the game: start a new one
                obs, info = self.env.reset()
        self.game_over = False
        self.lives = self.unwrapped.ale.lives()
        return obs, info


class FireResetEnv(gym.Wrapper):
    """(atari 4) fire reset: press FIRE after every reset (a lost life included, through episodic life)
    in games that wait for it, then take action 2, as baselines does."""

    def __init__(self, env: gym.Env):
        super().__init__(env)
        meanings = env.unwrapped.get_action_meanings()
        assert meanings[1] == "FIRE" and len(meanings) >= 3

    def reset(self, **kwargs):
        self.env.reset(**kwargs)
        for action in (1, 2):
            obs, _, terminated, truncated, info = self.env.step(action)
            if terminated or truncated:
                obs, info = self.env.reset()
        return obs, info


class WarpFrame(gym.ObservationWrapper):
    """(atari 5) warp frame: 84x84 grayscale. The frames come grayscale from the emulator (its luminance
    palette, before the max of (atari 2), as in the C++ env), and are resized here with area averaging."""

    def __init__(self, env: gym.Env, size: int = 84):
        super().__init__(env)
        self.size = size
        self.observation_space = gym.spaces.Box(0, 255, (size, size), np.uint8)

    def observation(self, frame: np.ndarray) -> np.ndarray:
        return cv2.resize(frame, (self.size, self.size), interpolation=cv2.INTER_AREA)


class ClipRewardEnv(gym.RewardWrapper):
    """(atari 6) reward clipping: learn from the sign of the reward, {-1, 0, +1}, so that one set of
    hyperparameters fits games whose scores differ by orders of magnitude."""

    def reward(self, reward: float) -> float:
        return float(np.sign(reward))


def make_raw_env(env_id: str, render_mode: str | None = None) -> gym.Env:
    """The emulator of the id's game, one frame per step, grayscale screens; sticky actions and the
    frame limit as the id says (XNoFrameskip-v4: no sticky actions; ALE/X-v5: 0.25). With render_mode
    "rgb_array", env.render() gives the colour screen."""
    register_atari_envs()
    return gym.make(env_id, frameskip=1, obs_type="grayscale", render_mode=render_mode, disable_env_checker=True)


def wrap_atari(env: gym.Env, noop_max: int = 30, fire_reset: bool = True) -> gym.Env:
    """The baselines Atari preprocessing around a raw (frameskip 1, grayscale) ALE env."""
    env = NoopResetEnv(env, noop_max)  # (atari 1)
    env = MaxAndSkipEnv(env, skip=4)  # (atari 2)
    env = RecordGameStatistics(env)  # the real, full-game score, for the logs
    env = EpisodicLifeEnv(env)  # (atari 3)
    if fire_reset and "FIRE" in env.unwrapped.get_action_meanings():
        env = FireResetEnv(env)  # (atari 4)
    env = WarpFrame(env, 84)  # (atari 5)
    env = ClipRewardEnv(env)  # (atari 6)
    # (atari 7) frame stack: the last 4 frames, oldest first, newest last; (4, 84, 84) uint8. After a
    # reset (a lost life included) the stack is filled with copies of the first frame.
    return gym.wrappers.FrameStackObservation(env, 4)


def make_atari_env(env_id: str, noop_max: int = 30, fire_reset: bool = True, video_folder: str | None = None,
                   name_prefix: str = "rl-video") -> gym.Env:  # fmt: skip
    """One preprocessed env; with a video folder, its games are recorded there as MP4 files (gymnasium's
    RecordVideo: games 0, 1, 8, 27, ..., 1000, then every 1000th). The recorder sits on the emulator,
    below the Atari wrappers: the videos show the real game in colour, every frame at the console's 60
    per second, every life of it, not the agent's 84x84 gray view. (It keeps a game's frames in memory
    until the game ends: about 100 kB a frame.)"""
    env = make_raw_env(env_id, "rgb_array" if video_folder else None)
    if video_folder:
        env = gym.wrappers.RecordVideo(env, video_folder, name_prefix=name_prefix, fps=60, disable_logger=True)
    return wrap_atari(env, noop_max, fire_reset)


# ---------------------------------------------------------------------------------------------------
# Backend "ale-vector": ale-py's C++ vector env, which steps the envs in its own threads and does the
# same preprocessing inside. Both backends give the policy the same (4, 84, 84) uint8 frames, pixel for
# pixel (the tests step them side by side), the same rewards clipped to their sign, and an episode end
# at a lost life. What differs:
#   - after a lost life the C++ game just goes on: no hidden no-op and FIRE steps, so the agent must
#     press FIRE itself in games that wait for it, and the frame stack runs on across the lost life;
#   - at a real reset it takes 0 to 29 no-op frames, FIRE for one frame among them (not 1 to 30 no-ops,
#     then a FIRE step and an action-2 step), and pads the frame stack with zeros (not copies);
#   - its frame limit counts the frames of the agent's steps, the gymnasium one all frames of the game;
#   - its game lengths count the agent's steps only (no hidden steps), so they are a little shorter.
# ---------------------------------------------------------------------------------------------------


def ale_vector_settings(env_id: str) -> dict:
    """The C++ env's arguments for a gymnasium Atari id: it takes the ROM name ("breakout") and the
    settings the id stands for, and does (atari 2) max-and-skip itself."""
    spec = gym.spec(env_id)
    kwargs = spec.kwargs
    if spec.entry_point != "ale_py.env:AtariEnv" or "game" not in kwargs:
        raise UsageError(f"--env-backend ale-vector cannot map {env_id}: it is not an Atari game of ale-py")
    if not isinstance(kwargs.get("frameskip", 1), int):
        raise UsageError(
            f"--env-backend ale-vector cannot map {env_id}: it skips a random number of frames per step, the C++ "
            f"env a fixed number; use {' or '.join(fixed_skip_ids(env_id))}"
        )
    unsupported = set(kwargs) - {"game", "frameskip", "repeat_action_probability", "full_action_space",
                                 "max_num_frames_per_episode", "obs_type"}  # fmt: skip
    if unsupported:
        raise UsageError(f"--env-backend ale-vector cannot map {env_id}: the C++ env has no {sorted(unsupported)}")
    return {
        "game": kwargs["game"],
        "repeat_action_probability": kwargs.get("repeat_action_probability", 0.25),  # v4: 0.0, v0 and v5: 0.25
        "full_action_space": kwargs.get("full_action_space", False),
        "max_num_frames_per_episode": kwargs.get("max_num_frames_per_episode") or 108_000,
    }


def make_ale_vector_env(env_id: str, num_envs: int, num_threads: int = 0, noop_max: int = 30, fire_reset: bool = True):
    """ale-py's C++ vector env, set up as the gymnasium backend; rewards unclipped, game overs not told."""
    register_atari_envs()
    from ale_py.vector_env import AtariVectorEnv

    return AtariVectorEnv(
        num_envs=num_envs,
        num_threads=num_threads,
        **ale_vector_settings(env_id),
        noop_max=noop_max,  # (atari 1) no-op reset: 0 to noop_max - 1 frames (FIRE among them, where pressed)
        frameskip=4,  # (atari 2) max-and-skip: repeat each action 4 frames, rewards summed ...
        maxpool=True,  # ... and observe the max of the last two frames
        # (atari 3) episodic life with the baselines semantics: life_loss_info ends the episode at a lost
        # life (terminated=True) while the game goes on. (Its episodic_life=True would reset the whole game.)
        episodic_life=False,
        life_loss_info=True,
        use_fire_reset=fire_reset,  # (atari 4) fire reset, at the real reset of games that have FIRE
        img_height=84,  # (atari 5) warp frame: 84x84 grayscale, area-averaged
        img_width=84,
        grayscale=True,
        reward_clipping=False,  # (atari 6) is done by VectorClipReward, so that the real score is seen first
        stack_num=4,  # (atari 7) frame stack of 4, newest last
        # SAME_STEP autoreset (it has NEXT_STEP, its default, and SAME_STEP), as for the gymnasium backend:
        # the step that ends a game returns the next game's first observation, the true last one in
        # infos["final_obs"]; so no junk autoreset row enters the batch. A lost life resets nothing.
        autoreset_mode=gym.vector.AutoresetMode.SAME_STEP,
    )


class AleVectorGameStatistics(gym.vector.VectorWrapper):
    """The real score for the C++ env: the unclipped return and the length (in steps) of each whole game,
    reported as infos["final_info"]["episode"] = {"r": returns, "l": lengths} with the mask
    infos["final_info"]["_episode"], where the gymnasium backend puts them too.

    The C++ env says terminated=True both at a lost life and at game over; a game over (or a time limit)
    is told apart by the env's own reset: `frame_number - episode_frame_number` is the frame at which the
    current game started, the same for every step of a game, and new after each reset."""

    def reset(self, **kwargs):
        obs, infos = self.env.reset(**kwargs)
        self.game_start = infos["frame_number"] - infos["episode_frame_number"]
        self.game_return = np.zeros(self.num_envs)
        self.game_length = np.zeros(self.num_envs, dtype=np.int64)
        return obs, infos

    def step(self, actions):
        obs, rewards, terminations, truncations, infos = self.env.step(actions)
        assert np.array_equal(infos["env_id"], np.arange(self.num_envs))  # (batch_size == num_envs: in order)
        self.game_return += rewards
        self.game_length += 1
        game_start = infos["frame_number"] - infos["episode_frame_number"]
        game_over = game_start != self.game_start
        self.game_start = game_start
        if game_over.any():
            infos = {**infos, "final_info": {"episode": {"r": self.game_return.copy(), "l": self.game_length.copy()},
                                             "_episode": game_over}}  # fmt: skip
            self.game_return[game_over], self.game_length[game_over] = 0.0, 0
        return obs, rewards, terminations, truncations, infos


class VectorClipReward(gym.vector.VectorRewardWrapper):
    """(atari 6) reward clipping to the sign, for the C++ env (after the real score is recorded)."""

    def rewards(self, rewards: np.ndarray) -> np.ndarray:
        return np.sign(rewards).astype(np.float32)


def make_envs(
    env_id: str, num_envs: int, env_backend: str = "gymnasium", gym_vector: str = "auto", ale_threads: int = 0,
    video_folder: str | None = None, video_prefix: str = "rl-video",
) -> gym.vector.VectorEnv:
    """Either backend, with the same observations ((4, 84, 84) uint8 per env), rewards (clipped to their
    sign), episode ends (terminated at a lost life), final observations (infos["final_obs"]) and game
    statistics (infos["final_info"]["episode"]). With a video folder (gymnasium backend only: the C++ env
    cannot render), the first env's games are recorded."""
    if env_backend == "ale-vector":
        assert video_folder is None, "the C++ env cannot render (check_args refuses --capture-video with it)"
        return VectorClipReward(AleVectorGameStatistics(make_ale_vector_env(env_id, num_envs, ale_threads)))
    # (core 1) vectorized environments. SAME_STEP autoreset: when an episode ends, the step returns the
    # next episode's first observation, with the true last one in infos["final_obs"]; so no transition
    # of the batch is a bogus "autoreset step" (gymnasium 1.x's NEXT_STEP default). copy=False: each
    # observation returned is copied into the rollout buffer before the next step overwrites it.
    if gym_vector == "auto":
        gym_vector = "async" if (os.cpu_count() or 1) > 2 else "sync"
    vector_env = gym.vector.AsyncVectorEnv if gym_vector == "async" else gym.vector.SyncVectorEnv

    def env_fn(i: int) -> gym.Env:
        if gym_vector == "async":
            # (in a worker process) Ctrl-C signals the whole process group: the workers ignore SIGINT and
            # SIGTERM and step on, so that the main process can finish its iteration, write a checkpoint
            # (see StopOnSignal) and close them
            for s in (signal.SIGINT, signal.SIGTERM):
                signal.signal(s, signal.SIG_IGN)
        return make_atari_env(env_id, video_folder=video_folder if i == 0 else None, name_prefix=video_prefix)

    return vector_env(
        [lambda i=i: env_fn(i) for i in range(num_envs)],
        autoreset_mode=gym.vector.AutoresetMode.SAME_STEP,
        copy=False,
    )


# ---------------------------------------------------------------------------------------------------
# Agent
# ---------------------------------------------------------------------------------------------------


def layer_init(layer: nn.Module, std: float = np.sqrt(2), bias_const: float = 0.0) -> nn.Module:
    # (core 2) orthogonal initialization of weights, constant (zero) biases
    torch.nn.init.orthogonal_(layer.weight, std)
    torch.nn.init.constant_(layer.bias, bias_const)
    return layer


class Agent(nn.Module):
    def __init__(self, n_actions: int, frames: int = 4):
        super().__init__()
        # (atari 8) the Nature-CNN, one trunk shared by actor and critic ((core 13) shared network)
        self.network = nn.Sequential(
            layer_init(nn.Conv2d(frames, 32, 8, stride=4)),
            nn.ReLU(),
            layer_init(nn.Conv2d(32, 64, 4, stride=2)),
            nn.ReLU(),
            layer_init(nn.Conv2d(64, 64, 3, stride=1)),
            nn.ReLU(),
            nn.Flatten(),
            layer_init(nn.Linear(64 * 7 * 7, 512)),
            nn.ReLU(),
        )
        self.actor = layer_init(nn.Linear(512, n_actions), std=0.01)  # (core 2) policy head gain 0.01
        self.critic = layer_init(nn.Linear(512, 1), std=1.0)  # (core 2) value head gain 1

    def hidden(self, obs: torch.Tensor) -> torch.Tensor:
        # (atari 9) pixels scaled to [0, 1] inside the network: the buffers keep uint8 frames
        return self.network(obs.float() / 255.0)

    def get_value(self, obs: torch.Tensor) -> torch.Tensor:
        return self.critic(self.hidden(obs)).squeeze(-1)

    def evaluate(self, obs: torch.Tensor, action: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """Log-probability of the given actions, entropy of the policy, and value: (logprob, entropy, value)."""
        hidden = self.hidden(obs)
        # the categorical distribution written out: log-softmax of the logits
        logp_all = self.actor(hidden).log_softmax(-1)
        logprob = logp_all.gather(-1, action.unsqueeze(-1)).squeeze(-1)
        entropy = -(logp_all.exp() * logp_all).sum(-1)
        return logprob, entropy, self.critic(hidden).squeeze(-1)

    def act(self, obs: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """Sample an action per env: (action, log-probability, value)."""
        hidden = self.hidden(obs)
        logp_all = self.actor(hidden).log_softmax(-1)
        action = torch.multinomial(logp_all.exp(), 1).squeeze(-1)
        return action, logp_all.gather(-1, action.unsqueeze(-1)).squeeze(-1), self.critic(hidden).squeeze(-1)

    def action(self, obs: torch.Tensor, deterministic: bool) -> torch.Tensor:
        """The trained policy's action, for evaluation: the most likely one, or a sample."""
        logits = self.actor(self.hidden(obs))
        return logits.argmax(-1) if deterministic else torch.multinomial(logits.softmax(-1), 1).squeeze(-1)


class RolloutBuffer:
    """One rollout: `num_steps` transitions of `num_envs` environments, each array indexed [step, env].
    The frames stay uint8, in a torch tensor on the training device; the rest are small numpy arrays."""

    def __init__(self, num_steps: int, num_envs: int, obs_shape: tuple, device: torch.device):
        def zeros(*shape, dtype=np.float32):
            return np.zeros((num_steps, num_envs) + shape, dtype=dtype)

        self.obs = torch.zeros((num_steps, num_envs) + obs_shape, dtype=torch.uint8, device=device)
        self.actions = zeros(dtype=np.int64)
        self.logprobs = zeros()
        self.values = zeros()
        self.rewards = zeros()
        self.terminations = zeros()  # 1.0 where the episode ended: a lost life or game over (atari 3)
        self.truncations = zeros()  # 1.0 where the frame limit cut the game (and it did not terminate)
        self.truncation_values = zeros()  # V(true final observation) where truncated, else 0


def collect_rollout(agent: Agent, envs: gym.vector.VectorEnv, next_obs: np.ndarray, buf: RolloutBuffer):
    """Fill `buf` with one rollout starting from `next_obs`.

    Returns the observation to continue from and the games that ended, as (step index, env index,
    return, length) tuples, the return being the real (unclipped) score of the whole game."""
    device = buf.obs.device
    episodes = []
    for step in range(buf.obs.shape[0]):
        obs = buf.obs[step]
        obs.copy_(torch.from_numpy(next_obs))  # the one copy of the frames (to the GPU, where used)
        with torch.inference_mode():
            action, logprob, value = agent.act(obs)
        action = action.cpu().numpy()
        buf.actions[step] = action
        buf.logprobs[step] = logprob.cpu().numpy()
        buf.values[step] = value.cpu().numpy()

        next_obs, reward, terminated, truncated, infos = envs.step(action)
        truncated = truncated & ~terminated  # an episode that both terminates and truncates is over
        buf.rewards[step] = reward
        buf.terminations[step] = terminated
        buf.truncations[step] = truncated
        buf.truncation_values[step] = 0.0
        if truncated.any():
            # (gymnasium 1.x) a truncated episode was cut, not ended: keep the value of its true last
            # observation for bootstrapping; `next_obs` already holds the next game's first one.
            final_obs = torch.from_numpy(np.stack(infos["final_obs"][truncated])).to(device)
            with torch.inference_mode():
                buf.truncation_values[step, truncated] = agent.get_value(final_obs).cpu().numpy()
        final_info = infos.get("final_info", {})
        if "_episode" in final_info:
            for i in np.flatnonzero(final_info["_episode"]):
                r, length = final_info["episode"]["r"][i], final_info["episode"]["l"][i]
                episodes.append((step, int(i), float(r), int(length)))
    return next_obs, episodes


def compute_gae(
    rewards: np.ndarray,
    values: np.ndarray,
    next_value: np.ndarray,
    terminations: np.ndarray,
    truncations: np.ndarray,
    truncation_values: np.ndarray,
    gamma: float,
    gae_lambda: float,
) -> tuple[np.ndarray, np.ndarray]:
    """(core 5) Generalized Advantage Estimation over a rollout; returns (advantages, returns).

    All inputs but `next_value` are [step, env]; `next_value` is V of the observation after the last
    step. At a termination nothing is bootstrapped; at a truncation the value of the true final
    observation is; either way the advantage recursion stops at the episode's end."""
    next_values = np.concatenate([values[1:], next_value[None]])
    next_values = np.where(truncations > 0, truncation_values, next_values)
    deltas = rewards + gamma * next_values * (1.0 - terminations) - values
    continues = 1.0 - np.maximum(terminations, truncations)
    advantages = np.zeros_like(rewards)
    last_advantage = np.zeros_like(next_value)
    for t in reversed(range(len(rewards))):
        last_advantage = deltas[t] + gamma * gae_lambda * continues[t] * last_advantage
        advantages[t] = last_advantage
    return advantages, advantages + values


def clipped_policy_loss(advantages: torch.Tensor, ratio: torch.Tensor, clip_coef: float) -> torch.Tensor:
    # (core 8) clipped surrogate objective: the pessimistic (max of the negated) of the two surrogates
    unclipped = -advantages * ratio
    clipped = -advantages * torch.clamp(ratio, 1 - clip_coef, 1 + clip_coef)
    return torch.max(unclipped, clipped).mean()


def value_loss(
    new_values: torch.Tensor, returns: torch.Tensor, old_values: torch.Tensor, clip_coef: float, clip: bool
) -> torch.Tensor:
    if not clip:
        return 0.5 * ((new_values - returns) ** 2).mean()
    # (core 9) value loss clipping: the value may move at most clip_coef from the rollout's value
    clipped_values = old_values + torch.clamp(new_values - old_values, -clip_coef, clip_coef)
    return 0.5 * torch.max((new_values - returns) ** 2, (clipped_values - returns) ** 2).mean()


def ppo_update(agent: Agent, optimizer, buf: RolloutBuffer, advantages, returns, args: Args) -> dict[str, float]:
    """Several epochs of minibatch gradient steps on one rollout; returns the debug metrics."""
    device = buf.obs.device
    # the rollout as one batch of num_steps * num_envs transitions, on the training device
    b_obs = buf.obs.reshape((args.batch_size,) + buf.obs.shape[2:])  # a view: the frames are not copied
    b_actions, b_logprobs, b_values, b_advantages, b_returns = (
        torch.from_numpy(array.reshape(args.batch_size)).to(device)
        for array in (buf.actions, buf.logprobs, buf.values, advantages, returns)
    )
    clipfracs = []
    for epoch in range(args.update_epochs):
        # (core 6) shuffle the batch every epoch, then take minibatches as consecutive slices of it
        permutation = torch.randperm(args.batch_size, device=device)
        for start in range(0, args.batch_size, args.minibatch_size):
            mb = permutation[start : start + args.minibatch_size]
            newlogprob, entropy, newvalue = agent.evaluate(b_obs[mb], b_actions[mb])
            logratio = newlogprob - b_logprobs[mb]
            ratio = logratio.exp()
            with torch.no_grad():
                # (core 12) debug metrics: KL estimators (http://joschu.net/blog/kl-approx.html), clip fraction
                old_approx_kl = (-logratio).mean()
                approx_kl = ((ratio - 1) - logratio).mean()
                clipfracs.append(((ratio - 1.0).abs() > args.clip_coef).float().mean())

            mb_advantages = b_advantages[mb]
            if args.norm_adv:
                # (core 7) advantage normalization, per minibatch
                mb_advantages = (mb_advantages - mb_advantages.mean()) / (mb_advantages.std() + 1e-8)

            pg_loss = clipped_policy_loss(mb_advantages, ratio, args.clip_coef)
            v_loss = value_loss(newvalue, b_returns[mb], b_values[mb], args.clip_coef, args.clip_vloss)
            entropy_loss = entropy.mean()
            # (core 10) overall loss: policy loss - entropy bonus + value loss
            loss = pg_loss - args.ent_coef * entropy_loss + v_loss * args.vf_coef

            optimizer.zero_grad()
            loss.backward()
            # (core 11) global gradient clipping
            grad_norm = nn.utils.clip_grad_norm_(agent.parameters(), args.max_grad_norm, foreach=True)
            if not (torch.isfinite(loss) & torch.isfinite(grad_norm)):  # (one device-to-host sync)
                # (numerical fault) stop before the optimizer step: the parameters stay the last finite ones
                raise NonFiniteError(f"non-finite loss ({loss.item()}) or gradient norm ({grad_norm.item()})")
            optimizer.step()

        if args.target_kl is not None and approx_kl > args.target_kl:
            break  # (optional) target-KL early stopping

    if not all(torch.isfinite(p).all() for p in agent.parameters()):
        raise NonFiniteError("non-finite parameters after the update")

    # (core 12) explained variance: how much of the returns' variance the value function explains
    y_pred, y_true = buf.values.ravel(), returns.ravel()
    var_y = np.var(y_true)
    return {
        "losses/value_loss": v_loss.item(),
        "losses/policy_loss": pg_loss.item(),
        "losses/entropy": entropy_loss.item(),
        "losses/old_approx_kl": old_approx_kl.item(),
        "losses/approx_kl": approx_kl.item(),
        "losses/clipfrac": torch.stack(clipfracs).mean().item(),
        "losses/explained_variance": np.nan if var_y == 0 else float(1 - np.var(y_true - y_pred) / var_y),
        "losses/update_epochs": epoch + 1,
    }


def make_optimizer(agent: Agent, args: Args) -> torch.optim.Adam:
    # (core 3) Adam with epsilon 1e-5 (fused: one kernel updates all parameters, in place)
    return torch.optim.Adam(agent.parameters(), lr=args.learning_rate, eps=1e-5, fused=True)


class Progress:
    """One line telling a person where the run is; redrawn in place on a terminal, else printed a
    few times over the run."""

    def __init__(self, total_steps: int, enabled: bool):
        self.total, self.enabled = total_steps, enabled
        self.tty = sys.stdout.isatty()
        self.start = self.last = time.time()
        self.next_fraction = 0.1

    def update(self, step: int, recent_return: float | None, sps: float, final: bool = False):
        if not self.enabled:
            return
        now, fraction = time.time(), step / self.total
        if self.tty and not final and now - self.last < 0.5:
            return
        if not self.tty and not final and not self.next_fraction <= fraction < 1:
            return
        self.last = now
        self.next_fraction = (int(fraction * 10) + 1) / 10
        ret = "   n/a" if recent_return is None else f"{recent_return:8.2f}"
        eta = (self.total - step) / max(sps, 1e-9)
        line = (
            f"step {step:>{len(str(self.total))}}/{self.total} ({fraction:4.0%}) | "
            f"return (last 100 games) {ret} | {sps:6.0f} steps/s | "
            f"{'elapsed' if final else 'left'} {time.strftime('%H:%M:%S', time.gmtime(now - self.start if final else eta))}"
        )
        print(("\r" + line + ("\n" if final else "")) if self.tty else line, end="" if self.tty else "\n", flush=True)


# ---------------------------------------------------------------------------------------------------
# Keeping what was trained: checkpoints, resume, evaluation, interruption
# ---------------------------------------------------------------------------------------------------

# the Args that steer a run without changing what it learns: a resumed run takes these from the command
# line, and all the others from its checkpoint. The device, the gymnasium backend's sync/async stepping
# and the C++ env's threads change the speed only. --env-backend is not among them: the two backends
# give the same frames, but not the same games (after a lost life the C++ env waits for the agent's
# FIRE, and it starts games and counts frames differently), so a run keeps the backend it started with.
RUN_CONTROL = {"progress", "torch_threads", "update_threads", "cuda", "gym_vector", "ale_threads", "save_model",
               "checkpoint_every", "resume", "eval_episodes", "eval_deterministic", "eval_checkpoint", "capture_video"}  # fmt: skip


def new_run_dir(args: Args) -> str:
    """Create runs/{env_id}__{exp_name}__{seed}__{unix_time}; an existing directory is never reused
    (the time stamp moves on to the next free second)."""
    stamp = int(time.time())
    while True:
        run_dir = os.path.join("runs", f"{args.env_id}__{args.exp_name}__{args.seed}__{stamp}")
        try:
            os.makedirs(run_dir)
            return run_dir
        except FileExistsError:
            stamp += 1


def save_checkpoint(path: str, agent: Agent, optimizer, args: Args, global_step: int, iteration: int) -> None:
    """Everything a run needs to go on, in one file, written atomically: to a temporary file first, then
    renamed over the old checkpoint, so that a crash mid-write never leaves a corrupt one."""
    np_state = np.random.get_state()
    rng = {
        "python": random.getstate(),
        "numpy": (np_state[0], np_state[1].tolist(), *np_state[2:]),
        "torch": torch.get_rng_state(),
    }
    if next(agent.parameters()).is_cuda:
        rng["cuda"] = torch.cuda.get_rng_state()  # the shuffles and the rollout's samples, when on the GPU
    state = {
        "agent": {name: tensor.cpu() for name, tensor in agent.state_dict().items()},  # loadable without a GPU
        "optimizer": optimizer.state_dict(),
        "global_step": global_step,
        "iteration": iteration,  # the iterations done, so that the learning-rate schedule goes on from there
        "args": asdict(args),
        "rng": rng,
    }
    with open(path + ".tmp", "wb") as f:
        torch.save(state, f)
        f.flush()
        os.fsync(f.fileno())
    os.replace(path + ".tmp", path)


def load_checkpoint(path: str) -> tuple[str, dict]:
    """The checkpoint at `path` (a file, or a run directory holding one): (its file path, its contents).
    A missing, truncated or foreign file is a UsageError, not a traceback."""
    if os.path.isdir(path):
        found = glob.glob(os.path.join(path, "*.cleanrl_model"))
        if len(found) != 1:
            raise UsageError(f"{path} holds {len(found)} checkpoints (*.cleanrl_model), not one; name the file")
        path = found[0]
    if not os.path.isfile(path):
        raise UsageError(f"no checkpoint at {path}")
    try:
        # weights_only: tensors, numbers, strings and containers only, so loading runs no pickled code;
        # map_location: a checkpoint written on a GPU loads on any machine
        state = torch.load(path, map_location="cpu", weights_only=True)
        state["agent"], state["args"]["env_id"], state["global_step"]  # the keys every checkpoint has
    except Exception as e:
        raise UsageError(f"{path} is not a readable checkpoint (truncated or corrupt? {type(e).__name__})") from None
    return path, state


def given_flags(argv: list[str]) -> set[str]:
    """The Args fields that a command line names (--name, --name=value, --no-name), whatever their values."""
    names = {f.name for f in fields(Args)}
    given = {token[2:].split("=", 1)[0].replace("-", "_") for token in argv if token.startswith("--")}
    return {name[3:] if name.startswith("no_") and name not in names else name for name in given} & names


def resumed_args(args: Args, saved: dict, given: set[str] | None = None) -> Args:
    """The Args of a resumed run: the checkpoint's, except the run-control flags, taken from `args`. A flag
    given (`given`: the fields named on the command line; None: those that differ from the defaults) that
    contradicts the checkpoint is refused, never dropped; one the checkpoint does not know is taken."""
    defaults = asdict(Args())
    given = {k for k, v in asdict(args).items() if v != defaults[k]} if given is None else given
    conflicts = [
        f"--{name.replace('_', '-')} {saved[name]} (not {getattr(args, name)})"
        for name in sorted(given - RUN_CONTROL)
        if name in saved and getattr(args, name) != saved[name]
    ]
    if conflicts:
        raise UsageError(f"cannot resume {args.resume}: it was trained with {', '.join(conflicts)}")
    names = {f.name for f in fields(Args)}
    kept = {k: v for k, v in saved.items() if k in names and k not in RUN_CONTROL}
    return Args(**{**asdict(args), **kept})


def load_agent(checkpoint: dict) -> Agent:
    """The agent of a checkpoint, its weights loaded (on the CPU)."""
    env_id = checkpoint["args"]["env_id"]
    check_env(env_id)  # a known Atari id (an unknown one is a UsageError), playable by the gymnasium backend
    env = make_raw_env(env_id)
    agent = Agent(int(env.action_space.n))
    env.close()
    try:
        agent.load_state_dict(checkpoint["agent"])
    except RuntimeError as e:  # another network shape
        raise UsageError(f"the checkpoint's weights do not fit the agent for {env_id}: {str(e).splitlines()[0]}")
    return agent


# evaluation episodes are seeded apart from training's resets (seed + iteration + env index, far below this)
EVAL_SEEDS = 1_000_000_000


def evaluate(agent: Agent, env_id: str, episodes: int, deterministic: bool, seed: int = 0,
             video_folder: str | None = None) -> list[float]:  # fmt: skip
    """Play `episodes` whole games with the agent's policy; returns their real scores (unclipped, over
    all lives, as RecordGameStatistics reports them). One env of the gymnasium backend, with the
    preprocessing of training, whichever backend trained the agent; the agent is not changed."""
    env = make_atari_env(env_id, video_folder=video_folder, name_prefix="eval")
    device = next(agent.parameters()).device
    returns = []
    for episode in range(episodes):
        obs, _ = env.reset(seed=EVAL_SEEDS + seed + episode)
        while True:
            with torch.inference_mode():
                action = agent.action(torch.as_tensor(obs, device=device)[None], deterministic)
            obs, _, terminated, truncated, info = env.step(int(action[0]))
            if "episode" in info:  # game over (or the frame limit): the real score of the whole game
                returns.append(float(info["episode"]["r"]))
                break
            if terminated or truncated:
                # (atari 3) a lost life ends the learning episode, not the game: play on (the "reset" is a
                # no-op step, then (atari 4) fire reset, as in training)
                obs, _ = env.reset()
    env.close()
    return returns


class StopOnSignal:
    """SIGINT (Ctrl-C) and SIGTERM (a scheduler's kill) ask the run to stop: the current iteration is
    finished, a checkpoint written and the TensorBoard log closed. A second signal stops at once."""

    def __init__(self):
        self.signal = None
        self.previous = {s: signal.signal(s, self.handle) for s in (signal.SIGINT, signal.SIGTERM)}

    def handle(self, signum, frame):
        if self.signal is not None:
            raise KeyboardInterrupt
        self.signal = signum
        print(f"\n{SCRIPT}: {signal.Signals(signum).name}: stopping after this iteration", file=sys.stderr)

    def restore(self):
        for s, handler in self.previous.items():
            signal.signal(s, handler)


def train(args: Args, resume_from: tuple[str, dict] | None = None) -> str:
    """Train an agent as `args` says; returns the run directory. Call `check_args(args)` first. With
    `resume_from` (a `load_checkpoint` result), the run of that checkpoint goes on."""
    if resume_from is None:
        run_dir, checkpoint = new_run_dir(args), None
        checkpoint_path = os.path.join(run_dir, f"{args.exp_name}.cleanrl_model")
    else:
        checkpoint_path, checkpoint = resume_from
        run_dir = os.path.dirname(checkpoint_path)
    run_name = os.path.basename(run_dir)
    # resuming: the same directory, a new event file in it; purge_step hides whatever the stopped run
    # logged after its checkpoint, so that TensorBoard shows one unbroken curve
    writer = SummaryWriter(run_dir, purge_step=None if checkpoint is None else checkpoint["global_step"] + 1)
    if checkpoint is None:
        writer.add_text(
            "hyperparameters",
            "|param|value|\n|-|-|\n" + "\n".join(f"|{key}|{value}|" for key, value in asdict(args).items()),
        )

    # seeding, so that a seed gives the same run every time
    random.seed(args.seed)
    np.random.seed(args.seed)
    torch.manual_seed(args.seed)
    torch.set_num_threads(args.torch_threads)
    update_threads = args.update_threads or (
        len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1
    )
    device = torch.device("cuda" if args.cuda and torch.cuda.is_available() else "cpu")

    video_folder = os.path.join("videos", run_name) if args.capture_video else None
    # a resumed run's videos are named apart, so that the stopped run's stay
    video_prefix = "rl-video" if checkpoint is None else f"rl-video-from-step-{checkpoint['global_step']}"
    envs = make_envs(args.env_id, args.num_envs, args.env_backend, args.gym_vector, args.ale_threads, video_folder,
                     video_prefix)  # fmt: skip
    agent = Agent(int(envs.single_action_space.n)).to(device)
    optimizer = make_optimizer(agent, args)
    buf = RolloutBuffer(args.num_steps, args.num_envs, envs.single_observation_space.shape, device)

    global_step, done_iterations = 0, 0
    if checkpoint is not None:
        # (resume) weights and optimizer state copied onto the training device, and the step, the position
        # in the learning-rate schedule and the RNG streams taken up where they were
        agent.load_state_dict(checkpoint["agent"])
        optimizer.load_state_dict(checkpoint["optimizer"])
        global_step, done_iterations = checkpoint["global_step"], checkpoint["iteration"]
        rng = checkpoint["rng"]
        random.setstate(rng["python"])
        np.random.set_state((rng["numpy"][0], np.array(rng["numpy"][1], dtype=np.uint32), *rng["numpy"][2:]))
        torch.set_rng_state(rng["torch"])
        if "cuda" in rng and device.type == "cuda":  # (resumed on the CPU, or first on a GPU: seeded above)
            torch.cuda.set_rng_state(rng["cuda"])
    saved = False  # whether checkpoint_path holds a checkpoint of this run
    recent_returns = []
    progress = Progress(args.num_iterations * args.batch_size, args.progress)
    stop = StopOnSignal()
    start_time, start_step, sps = time.time(), global_step, 0.0
    # (a resumed run's envs start new games: their state is not in the checkpoint)
    next_obs, _ = envs.reset(seed=args.seed + done_iterations)
    try:
        for iteration in range(done_iterations + 1, args.num_iterations + 1):
            if args.anneal_lr:
                # (core 4) learning rate annealed linearly to 0
                frac = 1.0 - (iteration - 1.0) / args.num_iterations
                optimizer.param_groups[0]["lr"] = frac * args.learning_rate

            torch.set_num_threads(args.torch_threads)
            next_obs, episodes = collect_rollout(agent, envs, next_obs, buf)
            for step, _, episodic_return, episodic_length in episodes:
                episode_step = global_step + (step + 1) * args.num_envs
                writer.add_scalar("charts/episodic_return", episodic_return, episode_step)
                writer.add_scalar("charts/episodic_length", episodic_length, episode_step)
                recent_returns = (recent_returns + [episodic_return])[-100:]
            global_step += args.batch_size

            with torch.inference_mode():
                next_value = agent.get_value(torch.from_numpy(next_obs).to(device)).cpu().numpy()
            # without truncation bootstrapping, a time limit counts as a terminal state (the old behaviour)
            terminations = buf.terminations if args.bootstrap_truncation else np.maximum(buf.terminations, buf.truncations)
            advantages, returns = compute_gae(
                buf.rewards, buf.values, next_value, terminations, buf.truncations, buf.truncation_values,
                args.gamma, args.gae_lambda,
            )  # fmt: skip
            torch.set_num_threads(update_threads)  # (speed) the update on every core, the rollout on one
            try:
                metrics = ppo_update(agent, optimizer, buf, advantages, returns, args)
            except NonFiniteError as e:
                last_good = checkpoint_path if saved or checkpoint is not None else "none written yet"
                raise NonFiniteError(f"{e} at iteration {iteration} (step {global_step}); "
                                     f"last good checkpoint: {last_good}") from None  # fmt: skip

            sps = (global_step - start_step) / (time.time() - start_time)
            writer.add_scalar("charts/learning_rate", optimizer.param_groups[0]["lr"], global_step)
            for tag, value in metrics.items():
                writer.add_scalar(tag, value, global_step)
            writer.add_scalar("charts/SPS", int(sps), global_step)
            progress.update(global_step, np.mean(recent_returns) if recent_returns else None, sps)

            last = iteration == args.num_iterations
            if args.save_model and (last or stop.signal or (args.checkpoint_every and iteration % args.checkpoint_every == 0)):
                save_checkpoint(checkpoint_path, agent, optimizer, args, global_step, iteration)
                saved = True
            if stop.signal:
                where = f"checkpoint {checkpoint_path}; resume with: python {SCRIPT} --resume {checkpoint_path}"
                where = where if args.save_model else "no checkpoint (--no-save-model)"
                raise Interrupted(f"stopped at step {global_step}; {where}", stop.signal)
        progress.update(global_step, np.mean(recent_returns) if recent_returns else None, sps, final=True)
    finally:
        stop.restore()
        envs.close()  # (with --capture-video, this also writes env 0's game in progress)
        writer.close()  # flushed: everything logged so far is on disk, whatever stopped the run

    if args.eval_episodes:
        torch.set_num_threads(args.torch_threads)  # (one observation per step, as in the rollout)
        returns = evaluate(agent, args.env_id, args.eval_episodes, args.eval_deterministic, args.seed, video_folder)
        with SummaryWriter(run_dir) as eval_writer:
            for i, episodic_return in enumerate(returns):
                eval_writer.add_scalar("eval/episodic_return", episodic_return, i)
        print(f"evaluation: {np.mean(returns):.2f} +- {np.std(returns):.2f} over {len(returns)} episodes")
    return run_dir


def main() -> None:
    import tyro

    args = tyro.cli(Args)
    try:
        if args.eval_checkpoint is not None:
            # evaluate a saved policy and exit: no training, no run directory
            check_counts(args)
            path, checkpoint = load_checkpoint(args.eval_checkpoint)
            saved_args = checkpoint["args"]
            video_folder = os.path.join("videos", os.path.basename(os.path.dirname(os.path.abspath(path))))
            torch.set_num_threads(args.torch_threads)
            returns = evaluate(load_agent(checkpoint), saved_args["env_id"], args.eval_episodes or 10,
                               args.eval_deterministic, args.seed, video_folder if args.capture_video else None)  # fmt: skip
            print(f"{path}: {np.mean(returns):.2f} +- {np.std(returns):.2f} over {len(returns)} episodes "
                  f"({'deterministic' if args.eval_deterministic else 'sampled'} actions)")  # fmt: skip
            return
        resume_from = None
        if args.resume is not None:
            resume_from = load_checkpoint(args.resume)
            args = resumed_args(args, resume_from[1]["args"], given_flags(sys.argv[1:]))
        check_args(args)
        if resume_from is not None and resume_from[1]["iteration"] >= args.num_iterations:
            raise UsageError(f"{resume_from[0]} is the end of its run ({args.num_iterations} iterations): nothing to resume")
    except UsageError as e:
        print(f"{SCRIPT}: error: {e}", file=sys.stderr)
        sys.exit(2)
    try:
        train(args, resume_from)
    except NonFiniteError as e:
        print(f"{SCRIPT}: error: {e}", file=sys.stderr)
        sys.exit(1)
    except Interrupted as e:
        print(f"{SCRIPT}: {e}", file=sys.stderr)
        sys.exit(128 + e.signum)


if __name__ == "__main__":
    main()
