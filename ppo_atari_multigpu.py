"""PPO for Atari games under torchrun: ppo_atari.py trained data-parallel, one process (rank) per GPU.

A copy of ppo_atari.py with only the changes of torchrun, each marked `(torchrun)`: every rank steps an equal share
of the --num-envs envs and updates on its share of every minibatch, the gradients averaged over the ranks, so that
the weights stay identical and each update sees the whole batch; rank 0 alone writes the run directory, log and
checkpoints. Without torchrun it is ppo_atari.py.

    torchrun --standalone --nproc-per-node 8 ppo_atari_multigpu.py --env-id BreakoutNoFrameskip-v4  # 8 GPUs
    torchrun --standalone --nproc-per-node 2 ppo_atari_multigpu.py --no-cuda  # 2 CPU processes (gloo)
    tensorboard --logdir runs
"""

import datetime
import math
import os
import signal
import sys
from dataclasses import dataclass, replace
from typing import ClassVar, Literal

import cv2
import gymnasium as gym
import numpy as np
import torch
import torch.nn as nn

import ppo_run
from ppo_run import (
    Interrupted,
    NonFiniteError,
    Run,
    UsageError,
    ended_episodes,
    known_env,
    register_atari_envs,
    set_rng_states,
)

SCRIPT = os.path.basename(__file__)


@dataclass
class Args:
    exp_name: str = os.path.basename(__file__)[: -len(".py")]  # the experiment's name (in the run directory's)
    seed: int = 1  # seed of the experiment: same seed, same numbers, run after run (on CPU)
    update_threads: int = 0  # torch CPU threads for the update on the CPU (0: every core, shared by the ranks)
    cuda: bool = True  # train on the GPU when torch sees one (else on the CPU)
    progress: bool = True  # show a progress bar
    gym_vector: Literal["auto", "sync", "async"] = "auto"  # sync: here, async: a process each, auto: async if > 2 cores
    save_model: bool = True  # write a checkpoint at the end, every --checkpoint-every iterations and when stopped
    checkpoint_every: int = 100  # iterations between checkpoints (0: only at the end and when stopped)
    stop_at_step: int = 0  # stop with a checkpoint once this many steps are done; the schedule stays (0: never)
    resume: str | None = None  # continue the run of this checkpoint (or run directory); its envs start anew
    eval_episodes: int = 0  # after training, play this many whole games with the policy (eval/episodic_return)
    eval_deterministic: bool = False  # evaluate with the most likely action instead of a sampled one
    eval_checkpoint: str | None = None  # only evaluate this checkpoint (or run directory), then exit
    capture_video: bool = False  # record env 0's and eval games in videos/{run_name}/
    track: bool = False  # log the run to Weights & Biases (its TensorBoard scalars and Args; WANDB_MODE=offline)
    wandb_project_name: str = "cleanRL"  # the W&B project (with --track)
    wandb_entity: str | None = None  # the W&B team or user (with --track; None: your default)
    channels_last: bool = True  # the CNN's weights in the channels-last memory layout: faster convolutions, same fp32
    bf16: bool = False  # the CNN trunk under bfloat16 autocast (needs native bf16: AVX512-BF16 or AMX, or the GPU's)

    # Algorithm arguments
    env_id: str = "BreakoutNoFrameskip-v4"  # an Atari game: XNoFrameskip-v4, or ALE/X-v5 (sticky actions 0.25)
    total_timesteps: int = 10_000_000  # total environment steps of the experiment (over all envs; 4 frames each)
    learning_rate: float = 2.5e-4  # the learning rate of the optimizer
    num_envs: int = 8  # the number of parallel environments (over all ranks, each steps an equal share)
    num_steps: int = 128  # the number of steps each environment runs per rollout
    anneal_lr: bool = True  # anneal the learning rate linearly to 0 over training
    gamma: float = 0.99  # the discount factor
    gae_lambda: float = 0.95  # the lambda of generalized advantage estimation
    num_minibatches: int = 4  # the number of minibatches each epoch splits the batch into
    update_epochs: int = 4  # the number of passes over the batch per update
    norm_adv: bool = True  # normalize advantages per minibatch
    clip_coef: float = 0.1  # the surrogate clipping coefficient (also the value loss's, with --clip-vloss)
    anneal_clip: bool = False  # anneal the clipping coefficient linearly to 0, like the learning rate
    clip_vloss: bool = True  # clip the value loss around the rollout's values
    loss_type: Literal["clip", "kl-penalty", "pg"] = "clip"  # clipped surrogate, PPO-Penalty, or plain surrogate
    kl_beta: float = 1.0  # the initial KL penalty coefficient of --loss-type kl-penalty
    kl_target: float = 0.01  # kl-penalty: beta halves below kl_target / 1.5, doubles above kl_target * 1.5
    ent_coef: float = 0.01  # the coefficient of the entropy bonus
    vf_coef: float = 0.5  # the coefficient of the value loss
    max_grad_norm: float = 0.5  # the maximum global norm of the gradients
    target_kl: float | None = None  # stop the update epochs early once the approximate KL exceeds this
    bootstrap_truncation: bool = True  # bootstrap time-limit truncations from V(final obs); off: as deaths

    # filled in at runtime
    batch_size: int = 0  # num_envs * num_steps (computed)
    minibatch_size: int = 0  # batch_size // num_minibatches (computed)
    num_iterations: int = 0  # total_timesteps // batch_size (computed)
    torch_threads: ClassVar[int] = 1  # not a flag: the rollout's torch threads (one observation per env: too small)


# the range of every number, checked before anything is written (NaN is in none)
RANGES = {
    "positive": ("total_timesteps", "num_envs", "num_steps", "num_minibatches", "update_epochs", "learning_rate",
                 "clip_coef", "max_grad_norm", "target_kl", "kl_beta", "kl_target"),
    "in [0, 1]": ("gamma", "gae_lambda"),
    "0 or positive": ("ent_coef", "vf_coef", "checkpoint_every", "stop_at_step", "eval_episodes", "update_threads"),
}  # fmt: skip
# the Args that steer a run without changing what it learns: a resume takes them from the command line
RUN_CONTROL = {"progress", "update_threads", "cuda", "gym_vector", "save_model", "checkpoint_every", "stop_at_step",
               "resume", "eval_episodes", "eval_deterministic", "eval_checkpoint", "capture_video", "track",
               "wandb_project_name", "wandb_entity"}  # fmt: skip
RECIPES: dict[str, dict] = {}  # named sets of defaults for --recipe (none in this script)


def check_env(args: Args) -> None:
    """Refuse an env this script cannot learn, in one line."""
    world_size = rank_and_world()[1]
    if args.num_envs % world_size or args.minibatch_size % world_size:  # (torchrun) an equal share for each rank
        raise UsageError(f"--num-envs {args.num_envs} and the minibatch of {args.minibatch_size} steps must split "
                         f"evenly over the {world_size} ranks (torchrun's processes)")  # fmt: skip
    if args.bf16 and not native_bf16(args.cuda):  # (emulated bf16 would be slower than fp32)
        raise UsageError("--bf16 needs native bfloat16 (a CPU with AVX512-BF16 or AMX, or a GPU with bf16); "
                         "this machine has none: train in fp32 (without --bf16)")  # fmt: skip
    env = known_env(args.env_id)
    obs_space, act_space = env.observation_space, env.action_space
    env.close()
    if isinstance(act_space, gym.spaces.Box):
        raise UsageError(f"{args.env_id} has continuous actions; use ppo_continuous_action.py")
    if not isinstance(act_space, gym.spaces.Discrete):
        raise UsageError(f"{args.env_id} has {type(act_space).__name__} actions; {SCRIPT} handles Discrete only")
    if isinstance(obs_space, gym.spaces.Box) and len(obs_space.shape) == 1:
        raise UsageError(f"{args.env_id} has vector observations {obs_space.shape}; use ppo.py")
    spec = gym.spec(args.env_id)
    if spec.entry_point != "ale_py.env:AtariEnv":
        raise UsageError(f"{args.env_id} is not an Atari game of ale-py; {SCRIPT}'s wrappers need the ALE emulator")
    if not isinstance(spec.kwargs.get("frameskip", 1), int):
        raise UsageError(f"{args.env_id} skips a random number of frames per step; (atari 2) max-and-skip needs an "
                         f"id with a fixed frameskip: use {' or '.join(fixed_skip_ids(args.env_id))}")  # fmt: skip


def native_bf16(cuda: bool) -> bool:
    """Whether the training device computes bfloat16 natively (not emulated)."""
    if cuda and torch.cuda.is_available():
        return torch.cuda.is_bf16_supported(including_emulation=False)
    return torch.cpu._is_avx512_bf16_supported() or torch.cpu._is_amx_tile_supported()


def fixed_skip_ids(env_id: str) -> list[str]:
    """The ids of the same game that the script can run, for hints."""
    game = env_id.split("/")[-1].split("-v")[0].replace("NoFrameskip", "")
    return [i for i in (f"{game}NoFrameskip-v4", f"ALE/{game}-v5") if i in gym.registry]


# openai/baselines' Atari preprocessing as gymnasium wrappers, one detail each (see wrap_atari)


class NoopResetEnv(gym.Wrapper):
    """(atari 1) no-op reset: 1 to `noop_max` no-op frames after each real reset, so that games start apart."""

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
    """(atari 2) max-and-skip: each action `skip` frames, their rewards summed, the max of the last two observed."""

    def __init__(self, env: gym.Env, skip: int = 4):
        super().__init__(env)
        self.skip = skip
        self.frames = np.zeros((2,) + env.observation_space.shape, dtype=np.uint8)  # the last two frames

    def reset(self, **kwargs):
        obs, info = self.env.reset(**kwargs)
        self.frames[0], self.frames[1] = 0, obs  # as ppo_atari_ale_vector.py's C++ env does (the same frames)
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
    """The real score: info["episode"] = {"r": unclipped return, "l": frames} of the whole game, at its end."""

    # (on the emulator, as CleanRL's RecordEpisodeStatistics: every frame, life and raw point, no-ops included)
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
    """(atari 3) episodic life: a lost life ends the episode (terminated), and its "reset" is a no-op step."""

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
    """(atari 4) fire reset: FIRE, then action 2 (as baselines), after every reset, a lost life's included."""

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
    """(atari 5) warp frame: 84x84 grayscale (the emulator's luminance, as the C++ env's), area-averaged."""

    def __init__(self, env: gym.Env, size: int = 84):
        super().__init__(env)
        self.size = size
        self.observation_space = gym.spaces.Box(0, 255, (size, size), np.uint8)

    def observation(self, frame: np.ndarray) -> np.ndarray:
        return cv2.resize(frame, (self.size, self.size), interpolation=cv2.INTER_AREA)


class ClipRewardEnv(gym.RewardWrapper):
    """(atari 6) reward clipping: the sign of the reward, so that one set of hyperparameters fits every game."""

    def reward(self, reward: float) -> float:
        return float(np.sign(reward))


def make_raw_env(env_id: str, render_mode: str | None = None) -> gym.Env:
    """The id's emulator: one frame a step, grayscale screens, sticky actions and frame limit as the id says."""
    register_atari_envs()
    return gym.make(env_id, frameskip=1, obs_type="grayscale", render_mode=render_mode, disable_env_checker=True)


def wrap_atari(env: gym.Env, noop_max: int = 30, fire_reset: bool = True) -> gym.Env:
    """The baselines Atari preprocessing around a raw (frameskip 1, grayscale) ALE env."""
    env = RecordGameStatistics(env)  # the real, full-game score and length in frames, for the logs
    env = NoopResetEnv(env, noop_max)  # (atari 1)
    env = MaxAndSkipEnv(env, skip=4)  # (atari 2)
    env = EpisodicLifeEnv(env)  # (atari 3)
    if fire_reset and "FIRE" in env.unwrapped.get_action_meanings():
        env = FireResetEnv(env)  # (atari 4)
    env = WarpFrame(env, 84)  # (atari 5)
    env = ClipRewardEnv(env)  # (atari 6)
    # (atari 7) frame stack: the last 4 frames, newest last, (4, 84, 84) uint8; a reset fills it with the first
    return gym.wrappers.FrameStackObservation(env, 4)


def make_env(env_id: str, video_folder: str | None = None, name_prefix: str = "rl-video", noop_max: int = 30,
             fire_reset: bool = True) -> gym.Env:  # fmt: skip
    """One preprocessed env, info["episode"] the whole game's real score at its end; with a video folder, its
    games are recorded there (RecordVideo: 0, 1, 8, 27, ..., 1000, ...)."""
    env = make_raw_env(env_id, "rgb_array" if video_folder else None)
    if video_folder:  # (on the emulator: the real game in colour, every frame at 60 fps, not the agent's view)
        env = gym.wrappers.RecordVideo(env, video_folder, name_prefix=name_prefix, fps=60, disable_logger=True)
    return wrap_atari(env, noop_max, fire_reset)


def make_envs(env_id: str, num_envs: int, gym_vector: str = "auto", video_folder: str | None = None,
              video_prefix: str = "rl-video") -> gym.vector.VectorEnv:  # fmt: skip
    """`num_envs` envs of make_env, stepped together: sync (here), async (a process each) or auto."""
    # (core 1) vectorized envs. SAME_STEP autoreset: the step that ends an episode returns the next one's
    # first observation (the last in infos["final_obs"]), so no bogus NEXT_STEP "autoreset step" is stored.
    # copy=False: each observation is copied into the rollout buffer before the next step overwrites it.
    if gym_vector == "auto":
        gym_vector = "async" if (os.cpu_count() or 1) > 2 else "sync"
    vector_env = gym.vector.AsyncVectorEnv if gym_vector == "async" else gym.vector.SyncVectorEnv
    main_pid = os.getpid()  # (AsyncVectorEnv makes env 0 here too, once, for its spaces)

    def env_fn(i: int) -> gym.Env:
        if os.getpid() != main_pid:  # (a worker) Ctrl-C signals the process group: step on until the main one stops
            for s in (signal.SIGINT, signal.SIGTERM):
                signal.signal(s, signal.SIG_IGN)
        return make_env(env_id, video_folder if i == 0 else None, video_prefix)

    return vector_env(
        [lambda i=i: env_fn(i) for i in range(num_envs)], autoreset_mode=gym.vector.AutoresetMode.SAME_STEP, copy=False
    )


def layer_init(layer: nn.Module, std: float = np.sqrt(2), bias_const: float = 0.0) -> nn.Module:
    # (core 2) orthogonal initialization of weights, constant (zero) biases
    torch.nn.init.orthogonal_(layer.weight, std)
    torch.nn.init.constant_(layer.bias, bias_const)
    return layer


class Agent(nn.Module):
    def __init__(self, n_actions: int, frames: int = 4, bf16: bool = False):
        super().__init__()
        # (atari 8) the Nature-CNN, one trunk shared by actor and critic ((core 13) shared network)
        self.network = nn.Sequential(
            layer_init(nn.Conv2d(frames, 32, 8, stride=4)), nn.ReLU(),
            layer_init(nn.Conv2d(32, 64, 4, stride=2)), nn.ReLU(),
            layer_init(nn.Conv2d(64, 64, 3, stride=1)), nn.ReLU(),
            nn.Flatten(), layer_init(nn.Linear(64 * 7 * 7, 512)), nn.ReLU(),
        )  # fmt: skip
        self.actor = layer_init(nn.Linear(512, n_actions), std=0.01)  # (core 2) policy head gain 0.01
        self.critic = layer_init(nn.Linear(512, 1), std=1.0)  # (core 2) value head gain 1
        self.bf16 = bf16

    def hidden(self, obs: torch.Tensor) -> torch.Tensor:
        # (atari 9) pixels scaled to [0, 1] inside the network: the buffers keep uint8 frames
        pixels = obs.float() / 255.0
        # (speed, opt-in) the trunk in bfloat16; the heads, the losses and the optimizer stay in fp32
        with torch.autocast(obs.device.type, torch.bfloat16, enabled=self.bf16):
            return self.network(pixels).float()

    def get_value(self, obs: torch.Tensor) -> torch.Tensor:
        return self.critic(self.hidden(obs)).squeeze(-1)

    def evaluate(self, obs: torch.Tensor, action: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """(log-probability of `action`, entropy, value); the categorical distribution written out."""
        hidden = self.hidden(obs)
        logp_all = self.actor(hidden).log_softmax(-1)
        logprob = logp_all.gather(-1, action.unsqueeze(-1)).squeeze(-1)
        return logprob, -(logp_all.exp() * logp_all).sum(-1), self.critic(hidden).squeeze(-1)

    def act(self, obs: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """Sample an action per env: (action, log-probability, value)."""
        hidden = self.hidden(obs)
        logp_all = self.actor(hidden).log_softmax(-1)
        action = torch.multinomial(logp_all.exp(), 1).squeeze(-1)
        return action, logp_all.gather(-1, action.unsqueeze(-1)).squeeze(-1), self.critic(hidden).squeeze(-1)

    def action(self, obs: torch.Tensor, deterministic: bool) -> torch.Tensor:
        """The trained policy's action (evaluation): the most likely one, or a sample."""
        logits = self.actor(self.hidden(obs))
        return logits.argmax(-1) if deterministic else torch.multinomial(logits.softmax(-1), 1).squeeze(-1)

    def play(self, obs: np.ndarray, deterministic: bool) -> int:
        """The action for one env's observation, as the env takes it (evaluation)."""
        with torch.inference_mode():
            return int(self.action(torch.as_tensor(obs, device=self.critic.weight.device)[None], deterministic)[0])


def make_agent(args: Args, obs_space: gym.Space, action_space: gym.Space) -> Agent:
    agent = Agent(int(action_space.n), obs_space.shape[0], args.bf16)
    # (speed) channels-last weights: oneDNN's and cuDNN's fast convolutions (the inputs follow), the same arithmetic
    return agent.to(memory_format=torch.channels_last) if args.channels_last else agent


class RolloutBuffer:
    """One rollout: `num_steps` transitions of `num_envs` environments, each array indexed [step, env]."""

    def __init__(self, num_steps: int, num_envs: int, obs_shape: tuple, device: torch.device):
        def zeros(*shape, dtype=np.float32):
            return np.zeros((num_steps, num_envs) + shape, dtype=dtype)

        self.obs = torch.zeros((num_steps, num_envs) + obs_shape, dtype=torch.uint8, device=device)  # (on the device)
        self.actions = zeros(dtype=np.int64)
        self.logprobs, self.values, self.rewards = zeros(), zeros(), zeros()
        self.terminations = zeros()  # 1.0 where the episode ended: a lost life (atari 3) or game over
        self.truncations = zeros()  # 1.0 where a time limit cut it (and it did not terminate)
        self.truncation_values = zeros()  # V(true final observation) where truncated, else 0


def collect_rollout(agent: Agent, envs: gym.vector.VectorEnv, next_obs: np.ndarray, buf: RolloutBuffer):
    """Fill `buf` from `next_obs`; returns the observation to go on from and the episodes that ended, as
    (step, env, return, length)."""
    episodes = []
    for step in range(buf.obs.shape[0]):
        buf.obs[step].copy_(torch.from_numpy(next_obs))  # the one copy of the frames (to the GPU, where used)
        with torch.inference_mode():
            action, logprob, value = (x.cpu().numpy() for x in agent.act(buf.obs[step]))
        buf.actions[step], buf.logprobs[step], buf.values[step] = action, logprob, value
        next_obs, reward, terminated, truncated, infos = envs.step(action)
        truncated = truncated & ~terminated  # an episode that both terminates and truncates is over
        buf.rewards[step], buf.terminations[step], buf.truncations[step] = reward, terminated, truncated
        buf.truncation_values[step] = 0.0
        if truncated.any():  # (gymnasium 1.x) cut, not ended: bootstrap from its true last observation
            final_obs = torch.from_numpy(np.stack(infos["final_obs"][truncated])).to(buf.obs.device)
            with torch.inference_mode():
                buf.truncation_values[step, truncated] = agent.get_value(final_obs).cpu().numpy()
        episodes += ended_episodes(infos, step)
    return next_obs, episodes


def compute_gae(rewards: np.ndarray, values: np.ndarray, next_value: np.ndarray, terminations: np.ndarray,
                truncations: np.ndarray, truncation_values: np.ndarray, gamma: float, gae_lambda: float):  # fmt: skip
    """(core 5) Generalized Advantage Estimation: (advantages, returns). Arrays are [step, env], `next_value`
    is V(observation after the last step). A termination bootstraps nothing, a truncation V(final obs)."""
    next_values = np.concatenate([values[1:], next_value[None]])
    next_values = np.where(truncations > 0, truncation_values, next_values)
    deltas = rewards + gamma * next_values * (1.0 - terminations) - values
    continues = 1.0 - np.maximum(terminations, truncations)
    advantages, last_advantage = np.zeros_like(rewards), np.zeros_like(next_value)
    for t in reversed(range(len(rewards))):
        last_advantage = deltas[t] + gamma * gae_lambda * continues[t] * last_advantage
        advantages[t] = last_advantage
    return advantages, advantages + values


def clipped_policy_loss(advantages: torch.Tensor, ratio: torch.Tensor, clip_coef: float) -> torch.Tensor:
    # (core 8) clipped surrogate objective: the pessimistic (max of the negated) of the two surrogates
    clipped = -advantages * torch.clamp(ratio, 1 - clip_coef, 1 + clip_coef)
    return torch.max(-advantages * ratio, clipped).mean()


def surrogate_loss(advantages: torch.Tensor, ratio: torch.Tensor) -> torch.Tensor:
    # (--loss-type pg) the unclipped importance-sampled surrogate: at ratio 1, the plain policy gradient
    return -(advantages * ratio).mean()


def kl_penalty_loss(advantages: torch.Tensor, ratio: torch.Tensor, logratio: torch.Tensor, beta: float) -> torch.Tensor:
    # (--loss-type kl-penalty) PPO-Penalty (Schulman et al. 2017, sec. 4): the surrogate + beta * KL(old||new)
    return surrogate_loss(advantages, ratio) + beta * ((ratio - 1) - logratio).mean()


def adapt_kl_beta(beta: float, kl: float, target: float) -> float:
    """PPO-Penalty's next beta: halved if this update's KL was below target / 1.5, doubled above target * 1.5."""
    if kl < target / 1.5:
        return beta / 2
    if kl > target * 1.5:
        return beta * 2
    return beta


def value_loss(new_values: torch.Tensor, returns: torch.Tensor, old_values: torch.Tensor, clip_coef: float,
               clip: bool) -> torch.Tensor:  # fmt: skip
    if not clip:
        return 0.5 * ((new_values - returns) ** 2).mean()
    # (core 9) value loss clipping: the value may move at most clip_coef from the rollout's value
    clipped_values = old_values + torch.clamp(new_values - old_values, -clip_coef, clip_coef)
    return 0.5 * torch.max((new_values - returns) ** 2, (clipped_values - returns) ** 2).mean()


# (torchrun) Data-parallel training: one process per rank (GPU), each stepping its share of the envs; the gradients of
# every minibatch step averaged over the ranks, so that the weights stay identical and one update sees the whole batch.


def rank_and_world() -> tuple[int, int]:
    """(torchrun) This process's rank and the number of processes, as torchrun sets them; (0, 1) without it."""
    return int(os.environ.get("RANK", 0)), int(os.environ.get("WORLD_SIZE", 1))


def init_distributed(args: Args) -> tuple[int, int, torch.device]:
    """(torchrun) Join the ranks torchrun started (no-op without it): (rank, world size, this rank's device)."""
    rank, world_size = rank_and_world()
    cuda = args.cuda and torch.cuda.is_available()
    device = torch.device(f"cuda:{os.environ.get('LOCAL_RANK', 0)}" if cuda else "cpu")  # each rank its own GPU
    if world_size > 1 and not torch.distributed.is_initialized():
        if cuda:
            torch.cuda.set_device(device)
        # gloo for CPU tensors, nccl for CUDA ones; a rank that stops answering fails the others after the timeout
        backend = "cpu:gloo,cuda:nccl" if cuda else "gloo"
        torch.distributed.init_process_group(backend, timeout=datetime.timedelta(minutes=10))
    return rank, world_size, device


def flat_collective(tensors: list[torch.Tensor], collective) -> None:
    """(torchrun) One collective over many tensors: flattened into one buffer, then copied back (layouts kept)."""
    flat = torch.cat([t.reshape(-1) for t in tensors])
    collective(flat)
    for tensor, part in zip(tensors, flat.split([t.numel() for t in tensors])):
        tensor.copy_(part.view_as(tensor))


def average_gradients(agent: Agent, loss: torch.Tensor, world_size: int) -> torch.Tensor:
    """(torchrun) Every gradient replaced by its mean over the ranks, in one all-reduce, with the loss (its mean is
    returned, so that a non-finite loss on one rank stops them all). Equal shares: the mean of the ranks' gradients
    is the gradient of the whole minibatch's mean loss."""
    loss = loss.detach().reshape(1).clone()
    flat_collective([p.grad for p in agent.parameters()] + [loss], lambda flat: all_reduce_mean(flat, world_size))
    return loss[0]


def all_reduce_mean(tensor: torch.Tensor, world_size: int) -> None:
    torch.distributed.all_reduce(tensor)  # the sum over the ranks (gloo has no mean) ...
    tensor /= world_size  # ... divided by their number


def whole_minibatches(x: torch.Tensor, world_size: int) -> torch.Tensor:
    """(torchrun) [minibatch, this rank's share] -> [minibatch, all ranks' shares]: for statistics of whole
    minibatches (advantage normalization); `x` itself in one process."""
    if world_size == 1:
        return x
    shares = [torch.empty_like(x) for _ in range(world_size)]
    torch.distributed.all_gather(shares, x.contiguous())
    return torch.cat(shares, 1)


def make_optimizer(agent: Agent, args: Args) -> torch.optim.Adam:
    # (core 3) Adam with epsilon 1e-5 (fused: one kernel updates all parameters, in place)
    return torch.optim.Adam(agent.parameters(), lr=args.learning_rate, eps=1e-5, fused=True)


def ppo_update(agent: Agent, optimizer, buf: RolloutBuffer, advantages, returns, args: Args,
               clip_coef: float | None = None, kl_beta: float | None = None) -> dict[str, float]:  # fmt: skip
    """Epochs of minibatch gradient steps on one rollout; returns the debug metrics. `clip_coef`, `kl_beta`:
    this update's (annealed, adapted) ones, else args'. (speed) Shuffles, advantage normalization and
    metrics are done per epoch or once, not per minibatch. (torchrun) `args` gives this rank's share of the batch and
    of each minibatch."""
    clip_coef = args.clip_coef if clip_coef is None else clip_coef
    kl_beta = args.kl_beta if kl_beta is None else kl_beta
    device, world_size = buf.obs.device, rank_and_world()[1]
    batch = [  # the rollout as one batch of num_steps * num_envs transitions, on the training device (frames: a view)
        torch.as_tensor(array, device=device).reshape((args.batch_size,) + array.shape[2:])
        for array in (buf.obs, buf.actions, buf.logprobs, buf.values, advantages, returns)
    ]
    logratios, params = [], list(agent.parameters())  # (speed) the parameters listed once
    for epoch in range(args.update_epochs):
        # (core 6) shuffle the batch every epoch; row i of each [num_minibatches, minibatch_size] tensor is minibatch i
        permutation = torch.randperm(args.batch_size, device=device)
        mb_obs, mb_actions, mb_logprobs, mb_values, mb_advantages, mb_returns = (
            x[permutation].view((args.num_minibatches, args.minibatch_size) + x.shape[1:]) for x in batch
        )
        if args.norm_adv:  # (core 7) advantage normalization, per minibatch (all at once; (torchrun) over all ranks)
            whole = whole_minibatches(mb_advantages, world_size)
            mean, std = whole.mean(1, keepdim=True), whole.std(1, keepdim=True)
            mb_advantages = (mb_advantages - mean) / (std + 1e-8)
        for i in range(args.num_minibatches):
            newlogprob, entropy, newvalue = agent.evaluate(mb_obs[i], mb_actions[i])
            logratio = newlogprob - mb_logprobs[i]
            ratio = logratio.exp()
            logratios.append(logratio.detach())  # for the debug metrics
            if args.loss_type == "clip":
                pg_loss = clipped_policy_loss(mb_advantages[i], ratio, clip_coef)
            elif args.loss_type == "kl-penalty":  # (option) PPO-Penalty
                pg_loss = kl_penalty_loss(mb_advantages[i], ratio, logratio, kl_beta)
            else:  # (option) "pg": the unclipped surrogate
                pg_loss = surrogate_loss(mb_advantages[i], ratio)
            v_loss = value_loss(newvalue, mb_returns[i], mb_values[i], clip_coef, args.clip_vloss)
            entropy_loss = entropy.mean()
            # (core 10) overall loss: policy loss - entropy bonus + value loss
            loss = pg_loss - args.ent_coef * entropy_loss + v_loss * args.vf_coef
            optimizer.zero_grad()
            loss.backward()
            if world_size > 1:  # (torchrun) the gradients averaged over the ranks
                loss = average_gradients(agent, loss, world_size)
            grad_norm = torch.stack([p.grad.norm() for p in params]).norm()  # (core 11) gradient clipping (by hand)
            scale = (args.max_grad_norm / (grad_norm + 1e-6)).clamp(max=1.0)
            for p in params:
                p.grad.mul_(scale)
            # (numerical fault) stop before the step, the parameters the last finite ones (Python floats: cheap)
            if not (math.isfinite(loss.item()) and math.isfinite(grad_norm.item())):
                raise NonFiniteError(f"non-finite loss ({loss.item()}) or gradient norm ({grad_norm.item()})")
            optimizer.step()
        # (core 12) debug metrics: KL estimators (http://joschu.net/blog/kl-approx.html) of the last minibatch
        old_approx_kl = (-logratios[-1]).mean()
        approx_kl = (logratios[-1].exp() - 1 - logratios[-1]).mean()
        if world_size > 1:  # (torchrun) over the whole minibatch, so that every rank stops (target KL) alike
            all_reduce_mean(approx_kl, world_size)
        if args.target_kl is not None and approx_kl > args.target_kl:
            break  # (optional) target-KL early stopping
    if not all(torch.isfinite(p).all() for p in params):
        raise NonFiniteError("non-finite parameters after the update")
    # (core 12) clip fraction over all samples, and explained variance of the returns by the values
    clipfrac = ((torch.cat(logratios).exp() - 1.0).abs() > clip_coef).float().mean()
    y_pred, y_true = buf.values.ravel(), returns.ravel()
    var_y = np.var(y_true)
    metrics = {
        "losses/value_loss": v_loss.item(),
        "losses/policy_loss": pg_loss.item(),
        "losses/entropy": entropy_loss.item(),
        "losses/old_approx_kl": old_approx_kl.item(),
        "losses/approx_kl": approx_kl.item(),
        "losses/clipfrac": clipfrac.item(),
        "losses/explained_variance": np.nan if var_y == 0 else float(1 - np.var(y_true - y_pred) / var_y),
        "losses/update_epochs": epoch + 1,  # (fewer than --update-epochs where --target-kl stopped them)
    }
    if args.loss_type == "kl-penalty":  # beta, and d: the mean KL over the last epoch (each sample once)
        last_epoch = torch.cat(logratios[-args.num_minibatches :])
        epoch_kl = (last_epoch.exp() - 1 - last_epoch).mean()
        if world_size > 1:  # (torchrun) over every rank's samples, so that every rank adapts beta alike
            all_reduce_mean(epoch_kl, world_size)
        metrics["losses/kl_beta"] = kl_beta
        metrics["losses/epoch_kl"] = epoch_kl.item()
    return metrics


def lost_ranks(e: RuntimeError) -> bool:
    """(torchrun) Whether a collective failed because another rank stopped (gloo: a closed connection) or timed out."""
    return isinstance(e, torch.distributed.DistError) or "gloo" in str(e) or "NCCL" in str(e)


def gather_episodes(episodes: list[tuple], first_env: int, world_size: int) -> list[tuple]:
    """(torchrun) The episodes that every rank's envs ended, on every rank, their env numbered over all ranks."""
    gathered = [None] * world_size
    own = [(step, first_env + env, episodic_return, length) for step, env, episodic_return, length in episodes]
    torch.distributed.all_gather_object(gathered, own)
    return [episode for part in gathered for episode in part]


class DistributedRun(Run):
    """(torchrun) ppo_run's Run, but every rank stops after the same iteration, on a signal that any rank got, and
    none before rank 0 saved its checkpoint."""

    launcher = "torchrun <the same options>"

    def end_iteration(self, *args, **kwargs) -> None:
        if torch.distributed.is_initialized():
            got = torch.tensor([self.signal or 0])
            torch.distributed.all_reduce(got, torch.distributed.ReduceOp.MAX)
            self.signal = int(got) or None
        try:
            super().end_iteration(*args, **kwargs)
        except Interrupted:
            if torch.distributed.is_initialized():
                torch.distributed.barrier()  # no rank stops (nor torchrun the others) before the save
            raise


def train(args: Args, resume_from: tuple[str, dict] | None = None) -> str:
    """Train as `args` says (call check_args first), or go on with `resume_from` (a load_checkpoint result);
    returns the run directory."""
    rank, world_size, device = init_distributed(args)
    run = DistributedRun(args, resume_from, rank)
    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1
    # (torchrun) the cores of a machine shared by its ranks
    update_threads = args.update_threads or max(1, cores // int(os.environ.get("LOCAL_WORLD_SIZE", 1)))
    # (torchrun) this rank's share: its envs, and its part of the batch and of each minibatch; global_step counts all
    share = replace(args, num_envs=args.num_envs // world_size, batch_size=args.batch_size // world_size,
                    minibatch_size=args.minibatch_size // world_size)  # fmt: skip
    envs = make_envs(args.env_id, share.num_envs, args.gym_vector, run.video_folder, run.video_prefix)
    agent = make_agent(args, envs.single_observation_space, envs.single_action_space).to(device)
    optimizer = make_optimizer(agent, args)
    buf = RolloutBuffer(args.num_steps, share.num_envs, envs.single_observation_space.shape, device)
    global_step, done_iterations, kl_beta = run.global_step, run.done_iterations, args.kl_beta
    if run.checkpoint is not None:  # (resume) copied onto the training device
        agent.load_state_dict(run.checkpoint["agent"])
        optimizer.load_state_dict(run.checkpoint["optimizer"])
        set_rng_states(run.checkpoint["rng"])
        kl_beta = run.checkpoint.get("kl_beta", args.kl_beta)  # (kl-penalty) beta, adapted after each update
        if rank > 0:  # (torchrun) the checkpoint holds rank 0's random streams: the others start new ones, apart
            torch.manual_seed(args.seed + rank + world_size * done_iterations)
    if world_size > 1:  # (torchrun) every rank starts from rank 0's weights
        flat_collective([p.detach() for p in agent.parameters()], lambda flat: torch.distributed.broadcast(flat, 0))
    # (a resumed run starts new episodes; (torchrun) env i of rank r is seeded as env r * share + i of one process)
    next_obs, _ = envs.reset(seed=args.seed + done_iterations + rank * share.num_envs)
    try:
        for iteration in range(done_iterations + 1, args.num_iterations + 1):
            frac = 1.0 - (iteration - 1.0) / args.num_iterations  # the share of the run still to go
            if args.anneal_lr:  # (core 4) learning rate annealed linearly to 0
                optimizer.param_groups[0]["lr"] = frac * args.learning_rate
            clip_coef = frac * args.clip_coef if args.anneal_clip else args.clip_coef  # (option) annealed alike

            torch.set_num_threads(args.torch_threads)  # (speed) the rollout on one thread (see Args), the update on all
            next_obs, episodes = collect_rollout(agent, envs, next_obs, buf)
            if world_size > 1:  # (torchrun) every rank's episodes, for rank 0's log (env indices over all ranks)
                episodes = gather_episodes(episodes, rank * share.num_envs, world_size)
            run.log_episodes(episodes, global_step)
            global_step += args.batch_size
            with torch.inference_mode():
                next_value = agent.get_value(torch.from_numpy(next_obs).to(device)).cpu().numpy()
            # without truncation bootstrapping, a time limit counts as a terminal state (the old behaviour)
            terminations = np.maximum(buf.terminations, buf.truncations * (not args.bootstrap_truncation))
            advantages, returns = compute_gae(buf.rewards, buf.values, next_value, terminations, buf.truncations,
                                              buf.truncation_values, args.gamma, args.gae_lambda)  # fmt: skip
            torch.set_num_threads(update_threads)
            with run.update(iteration, global_step):
                metrics = ppo_update(agent, optimizer, buf, advantages, returns, share, clip_coef, kl_beta)
            if args.loss_type == "kl-penalty":  # (PPO-Penalty) beta adapted to this update's KL
                kl_beta = adapt_kl_beta(kl_beta, metrics["losses/epoch_kl"], args.kl_target)

            metrics["charts/learning_rate"] = optimizer.param_groups[0]["lr"]
            if args.anneal_clip:
                metrics["charts/clip_coef"] = clip_coef
            run.end_iteration(metrics, iteration, global_step, agent, optimizer, kl_beta=kl_beta)
    except RuntimeError as e:  # (torchrun) another rank stopped, or stopped answering: one line, not a traceback
        if world_size == 1 or not lost_ranks(e):
            raise
        print(f"{SCRIPT}: error: rank {rank} lost the other ranks: {str(e).strip().splitlines()[0]}", file=sys.stderr)
        sys.exit(1)
    finally:
        envs.close()  # (with --capture-video, this also writes env 0's episode in progress)
        run.close()
        if torch.distributed.is_initialized():
            torch.distributed.destroy_process_group()
    run.evaluate(make_env, agent)  # (--eval-episodes)
    return run.dir


if __name__ == "__main__":
    ppo_run.main(globals())  # (this script's names: as a dict, it works under python -m cProfile or pdb too)
