"""PPO for discrete actions and vector observations (classic control), on gymnasium 1.x.

Read it top to bottom: arguments, environment, agent, rollout, GAE, losses, update, training loop.
Each implementation detail carries a comment naming it after "The 37 Implementation Details of
Proximal Policy Optimization" (Huang et al., 2022), e.g. `(core 5)`.

    python ppo.py --env-id CartPole-v1
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

# numpy's BLAS single-threaded, like torch (--torch-threads): the rollout policy's matrix products are
# tiny, and an extra BLAS thread would spin on a core of its own (set before numpy is first imported)
os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")

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
    """seed of the experiment: same seed, same numbers, run after run (on CPU)"""
    torch_threads: int = 1
    """torch CPU threads; the network is tiny, so more threads only add synchronisation"""
    progress: bool = True
    """show a progress line in the terminal"""
    save_model: bool = True
    """write a checkpoint (weights, optimizer, step, RNG states, args) into the run directory at the end,
    every --checkpoint-every iterations and when interrupted"""
    checkpoint_every: int = 100
    """iterations between checkpoints (0: only at the end and when interrupted)"""
    resume: str | None = None
    """continue the run of this checkpoint (or run directory): same run directory, TensorBoard log,
    learning-rate schedule and RNG states; the environments start new episodes"""
    eval_episodes: int = 0
    """after training, play this many episodes with the trained policy and log eval/episodic_return"""
    eval_deterministic: bool = False
    """evaluate with the most likely action (argmax) instead of a sampled one"""
    eval_checkpoint: str | None = None
    """only evaluate this checkpoint (or run directory) for --eval-episodes episodes (10 if 0), then exit"""
    capture_video: bool = False
    """record MP4 videos of the first env's episodes (and of evaluation episodes) under videos/{run_name}/"""

    # Algorithm arguments
    env_id: str = "CartPole-v1"
    """the id of a gymnasium environment with discrete actions and vector observations"""
    total_timesteps: int = 500_000
    """total environment steps of the experiment (over all envs)"""
    learning_rate: float = 2.5e-4
    """the learning rate of the optimizer"""
    num_envs: int = 4
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
    clip_coef: float = 0.2
    """the surrogate clipping coefficient (also the value loss's, with --clip-vloss)"""
    anneal_clip: bool = False
    """anneal the clipping coefficient (of the surrogate and of the value loss) linearly to 0 over training,
    by the same fraction as the learning rate (baselines' cliprange schedule); logged as charts/clip_coef"""
    clip_vloss: bool = True
    """clip the value loss around the rollout's values"""
    loss_type: Literal["clip", "kl-penalty", "pg"] = "clip"
    """the policy loss. clip: PPO's clipped surrogate. kl-penalty: PPO-Penalty (Schulman et al. 2017,
    sec. 4), the unclipped surrogate -(ratio * advantage).mean() plus beta times the KL(old || new)
    estimate ((ratio - 1) - log ratio).mean(), beta adapted after each update (see --kl-target). pg: the
    unclipped importance-sampled surrogate -(ratio * advantage).mean(), no penalty; with --update-epochs 1
    --num-minibatches 1 the one gradient step is at ratio 1 (up to float rounding), so it is the plain
    (vanilla actor-critic) policy gradient; with more minibatches or epochs every later step is
    importance-weighted by the unclipped ratio. The value loss and the entropy bonus are the same for all"""
    kl_beta: float = 1.0
    """the initial KL penalty coefficient beta of --loss-type kl-penalty (the paper's 1)"""
    kl_target: float = 0.01
    """the KL target of --loss-type kl-penalty: after each update, with d the mean KL estimate over its
    last epoch (every sample once, each as its minibatch was evaluated; logged as losses/epoch_kl),
    beta is halved if d < kl_target / 1.5 and doubled if d > kl_target * 1.5 (logged as losses/kl_beta)"""
    ent_coef: float = 0.01
    """the coefficient of the entropy bonus"""
    vf_coef: float = 0.5
    """the coefficient of the value loss"""
    max_grad_norm: float = 0.5
    """the maximum global norm of the gradients"""
    target_kl: float | None = None
    """stop the update epochs early once the approximate KL exceeds this (off by default); the epochs
    done are logged as losses/update_epochs"""
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
          "learning_rate", "clip_coef", "max_grad_norm", "target_kl", "kl_beta", "kl_target"), lambda x: x > 0, "positive"),
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
    check_counts(args)
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
    check_env(args.env_id)


def check_counts(args: Args) -> None:
    for name in ("checkpoint_every", "eval_episodes"):
        if getattr(args, name) < 0:
            raise UsageError(f"--{name.replace('_', '-')} must be 0 or positive, got {getattr(args, name)}")


def check_env(env_id: str) -> None:
    if env_id not in gym.registry:
        import ale_py  # Atari ids are registered only on request; know them to give a better hint

        ale_py.ALEInterface.setLoggerMode(ale_py.LoggerMode.Error)  # no banner on stderr
        gym.register_envs(ale_py)
    if env_id not in gym.registry:
        close = difflib.get_close_matches(env_id, list(gym.registry), n=3, cutoff=0.6)
        hint = f"; did you mean {' or '.join(close)}?" if close else ""
        raise UsageError(f"unknown environment id {env_id!r}{hint}")
    try:
        env = gym.make(env_id)
    except Exception as e:  # e.g. a missing optional dependency
        raise UsageError(f"cannot create {env_id}: {e}") from None
    obs_space, act_space = env.observation_space, env.action_space
    env.close()
    if isinstance(act_space, gym.spaces.Box):
        raise UsageError(f"{env_id} has continuous actions; use ppo_continuous_action.py")
    if not isinstance(act_space, gym.spaces.Discrete):
        raise UsageError(f"{env_id} has {type(act_space).__name__} actions; ppo.py handles Discrete actions only")
    if not isinstance(obs_space, gym.spaces.Box) or len(obs_space.shape) != 1:
        if isinstance(obs_space, gym.spaces.Box) and len(obs_space.shape) in (2, 3):
            raise UsageError(f"{env_id} has image observations {obs_space.shape}; use ppo_atari.py")
        raise UsageError(f"{env_id} has observations {obs_space}; ppo.py handles flat vectors (Box of rank 1) only")


def make_env(env_id: str, video_folder: str | None = None, name_prefix: str = "rl-video") -> gym.Env:
    """One environment; with a video folder, its episodes are recorded there as MP4 files (gymnasium's
    RecordVideo: episodes 0, 1, 8, 27, ..., 1000, then every 1000th while training)."""
    # The passive env checker (a wrapper that only inspects the first step) is left out: on these
    # cheap envs its extra layer costs 10% of the run.
    env = gym.make(env_id, disable_env_checker=True, render_mode="rgb_array" if video_folder else None)
    if video_folder:
        env = gym.wrappers.RecordVideo(env, video_folder, name_prefix=name_prefix, disable_logger=True)
    return env


def make_envs(env_id: str, num_envs: int, video_folder: str | None = None, video_prefix: str = "rl-video"):
    # (core 1) vectorized environments. SAME_STEP autoreset: when an episode ends, the step returns
    # the next episode's first observation, with the true last one in infos["final_obs"]; so no
    # transition of the batch is a bogus "autoreset step" (gymnasium 1.x's NEXT_STEP default).
    # copy=False: each observation returned is copied into the rollout buffer before the next step
    # overwrites it. With a video folder, the first env's episodes are recorded.
    envs = gym.vector.SyncVectorEnv(
        [lambda i=i: make_env(env_id, video_folder if i == 0 else None, video_prefix) for i in range(num_envs)],
        autoreset_mode=gym.vector.AutoresetMode.SAME_STEP,
        copy=False,
    )
    # episodic return and length, reported in infos["episode"] with the mask infos["_episode"]
    return gym.wrappers.vector.RecordEpisodeStatistics(envs)


def layer_init(layer: nn.Linear, std: float = np.sqrt(2), bias_const: float = 0.0) -> nn.Linear:
    # (core 2) orthogonal initialization of weights, constant (zero) biases
    torch.nn.init.orthogonal_(layer.weight, std)
    torch.nn.init.constant_(layer.bias, bias_const)
    return layer


def flatten_parameters(params: list[nn.Parameter]) -> nn.Parameter:
    """A flat parameter holding all of `params`, each of which becomes a view into it, and each
    one's gradient a view into its gradient."""
    flat = nn.Parameter(torch.cat([p.detach().reshape(-1) for p in params]))
    flat.grad = torch.zeros_like(flat)
    offset = 0
    for p in params:
        p.data = flat.data[offset : offset + p.numel()].view_as(p)
        p.grad = flat.grad[offset : offset + p.numel()].view_as(p)
        offset += p.numel()
    return flat


class Agent(nn.Module):
    def __init__(self, obs_dim: int, n_actions: int):
        super().__init__()
        # (core 13) separate actor and critic networks, 64-64 tanh
        self.critic = nn.Sequential(
            layer_init(nn.Linear(obs_dim, 64)),
            nn.Tanh(),
            layer_init(nn.Linear(64, 64)),
            nn.Tanh(),
            layer_init(nn.Linear(64, 1), std=1.0),  # (core 2) value head gain 1
        )
        self.actor = nn.Sequential(
            layer_init(nn.Linear(obs_dim, 64)),
            nn.Tanh(),
            layer_init(nn.Linear(64, 64)),
            nn.Tanh(),
            layer_init(nn.Linear(64, n_actions), std=0.01),  # (core 2) policy head gain 0.01
        )
        self.flat_params = self.make_flat_params()

    def make_flat_params(self) -> list[nn.Parameter]:
        # (speed) the actor's parameters become views into one flat tensor, the critic's into another,
        # and so do their gradients: the optimizer and the gradient clipping handle two tensors instead
        # of 12 (the same arithmetic at a fraction of the per-tensor overhead). The state_dict is
        # unchanged. Zero the gradients in place, zero_grad(set_to_none=False), so that they stay views.
        return [flatten_parameters(list(self.actor.parameters())), flatten_parameters(list(self.critic.parameters()))]

    def __setstate__(self, state):  # (copy.deepcopy, unpickling) the copied parameters are separate tensors
        super().__setstate__(state)
        self.flat_params = self.make_flat_params()

    def zero_grad(self, set_to_none: bool = True) -> None:
        for flat in self.flat_params:  # (flat parameters) always in place, so that the gradients stay views
            flat.grad.zero_()

    def check_views(self) -> None:
        """Raise unless every parameter and its gradient are still views into the flat tensors that the
        optimizer steps (`.to(dtype)` or `load_state_dict(assign=True)` replace them with copies)."""
        storages = {t.untyped_storage().data_ptr() for flat in self.flat_params for t in (flat, flat.grad)}
        for name, p in self.named_parameters():
            if p.grad is None or not {p.untyped_storage().data_ptr(), p.grad.untyped_storage().data_ptr()} <= storages:
                raise RuntimeError(f"{name} is no longer a view into the flat parameters: the optimizer would not "
                                   "train it (after .to(dtype) or load_state_dict(assign=True)?)")  # fmt: skip

    def get_value(self, obs: torch.Tensor) -> torch.Tensor:
        return self.critic(obs).squeeze(-1)

    def evaluate(self, obs: torch.Tensor, action: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """Log-probability of the given actions, entropy of the policy, and value: (logprob, entropy, value)."""
        # the categorical distribution written out: log-softmax of the logits
        logp_all = self.actor(obs).log_softmax(-1)
        logprob = logp_all.gather(-1, action.unsqueeze(-1)).squeeze(-1)
        entropy = -(logp_all.exp() * logp_all).sum(-1)
        return logprob, entropy, self.get_value(obs)

    def action(self, obs: torch.Tensor, deterministic: bool) -> torch.Tensor:
        """The trained policy's action, for evaluation: the most likely one, or a sample."""
        logits = self.actor(obs)
        return logits.argmax(-1) if deterministic else torch.distributions.Categorical(logits=logits).sample()


class RolloutPolicy:
    """The agent's actor and critic evaluated with numpy, for the rollout's one-observation-per-env calls.

    Per step the network is tiny (4 observations through 64-64 units), and a torch call costs about
    five times the arithmetic in dispatch overhead; numpy does the same sums in a fraction of the
    time. The weights are numpy *views* of the torch parameters (CPU tensors share their memory), so
    every optimizer step is seen here at once, with nothing copied."""

    def __init__(self, agent: Agent, seed: int):
        def layers(net):
            return [(m.weight.detach().numpy(), m.bias.detach().numpy()) for m in net if isinstance(m, nn.Linear)]

        self.actor, self.critic = layers(agent.actor), layers(agent.critic)
        self.rng = np.random.default_rng(seed)

    @staticmethod
    def forward(layers, x: np.ndarray) -> np.ndarray:
        for i, (weight, bias) in enumerate(layers):
            x = x @ weight.T + bias
            if i < len(layers) - 1:
                x = np.tanh(x)
        return x

    def value(self, obs: np.ndarray) -> np.ndarray:
        return self.forward(self.critic, obs)[:, 0]

    def act(self, obs: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Sample an action per env: (action, log-probability)."""
        logits = self.forward(self.actor, obs)
        # Gumbel-max trick: the argmax of logits + Gumbel noise is a sample of softmax(logits)
        action = np.argmax(logits + self.rng.gumbel(size=logits.shape), axis=1)
        top = logits.max(axis=1, keepdims=True)
        log_normalizer = top[:, 0] + np.log(np.exp(logits - top).sum(axis=1))
        logprob = logits[np.arange(len(action)), action] - log_normalizer
        return action, logprob


class RolloutBuffer:
    """One rollout: `num_steps` transitions of `num_envs` environments, each array indexed [step, env]."""

    def __init__(self, num_steps: int, num_envs: int, obs_shape: tuple):
        def zeros(*shape, dtype=np.float32):
            return np.zeros((num_steps, num_envs) + shape, dtype=dtype)

        self.obs = zeros(*obs_shape)
        self.actions = zeros(dtype=np.int64)
        self.logprobs = zeros()
        self.values = zeros()
        self.rewards = zeros()
        self.terminations = zeros()  # 1.0 where the episode ended by reaching a terminal state
        self.truncations = zeros()  # 1.0 where a time limit cut the episode (and it did not terminate)
        self.truncation_values = zeros()  # V(true final observation) where truncated, else 0


def collect_rollout(policy: RolloutPolicy, envs: gym.vector.VectorEnv, next_obs: np.ndarray, buf: RolloutBuffer):
    """Fill `buf` with one rollout starting from `next_obs`.

    Returns the observation to continue from and the episodes that ended, as (step index, env
    index, return, length) tuples."""
    episodes = []
    for step in range(buf.obs.shape[0]):
        action, logprob = policy.act(next_obs)
        buf.obs[step] = next_obs
        buf.actions[step] = action
        buf.logprobs[step] = logprob

        next_obs, reward, terminated, truncated, infos = envs.step(action)
        truncated = truncated & ~terminated  # an episode that both terminates and truncates is over
        buf.rewards[step] = reward
        buf.terminations[step] = terminated
        buf.truncations[step] = truncated
        buf.truncation_values[step] = 0.0
        if truncated.any():
            # (gymnasium 1.x) a truncated episode was cut, not ended: keep the value of its true last
            # observation for bootstrapping; `next_obs` already holds the next episode's first one.
            buf.truncation_values[step, truncated] = policy.value(np.stack(infos["final_obs"][truncated]))
        if "_episode" in infos:
            for i in np.flatnonzero(infos["_episode"]):
                episodes.append((step, int(i), float(infos["episode"]["r"][i]), int(infos["episode"]["l"][i])))
    # the values of all the rollout's observations in one batched call (the weights do not change
    # during a rollout, and no action depends on a value): one call instead of one per step
    buf.values[:] = policy.value(buf.obs.reshape((-1,) + buf.obs.shape[2:])).reshape(buf.values.shape)
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


def surrogate_loss(advantages: torch.Tensor, ratio: torch.Tensor) -> torch.Tensor:
    # (--loss-type pg) the unclipped importance-sampled surrogate: at ratio 1, the plain policy gradient
    return -(advantages * ratio).mean()


def kl_penalty_loss(advantages: torch.Tensor, ratio: torch.Tensor, logratio: torch.Tensor, beta: float) -> torch.Tensor:
    # (--loss-type kl-penalty) PPO-Penalty (Schulman et al. 2017, sec. 4): the unclipped surrogate plus
    # beta times an estimate of KL(old || new), per sample (ratio - 1) - log ratio (as approx_kl's)
    return surrogate_loss(advantages, ratio) + beta * ((ratio - 1) - logratio).mean()


def adapt_kl_beta(beta: float, kl: float, target: float) -> float:
    """PPO-Penalty's adaptive coefficient (Schulman et al. 2017, sec. 4): the next update's beta, given the
    KL `kl` that this update reached: halved below target / 1.5, doubled above target * 1.5."""
    if kl < target / 1.5:
        return beta / 2
    if kl > target * 1.5:
        return beta * 2
    return beta


def value_loss(
    new_values: torch.Tensor, returns: torch.Tensor, old_values: torch.Tensor, clip_coef: float, clip: bool
) -> torch.Tensor:
    if not clip:
        return 0.5 * ((new_values - returns) ** 2).mean()
    # (core 9) value loss clipping: the value may move at most clip_coef from the rollout's value
    clipped_values = old_values + torch.clamp(new_values - old_values, -clip_coef, clip_coef)
    return 0.5 * torch.max((new_values - returns) ** 2, (clipped_values - returns) ** 2).mean()


def clip_grad_norm(params: list[nn.Parameter], max_norm: float) -> torch.Tensor:
    """(core 11) global gradient clipping: all gradients scaled by one factor, so that their joint L2
    norm is at most `max_norm`; returns the norm before clipping. The arithmetic of
    nn.utils.clip_grad_norm_ in a handful of tensor calls (its general version costs ~3x as long, a
    noticeable share of one of these small gradient steps)."""
    grad_norm = torch.cat([p.grad.view(-1) for p in params]).norm()
    scale = (max_norm / (grad_norm + 1e-6)).clamp(max=1.0)
    for p in params:
        p.grad.mul_(scale)
    return grad_norm


def ppo_update(agent: Agent, optimizer, buf: RolloutBuffer, advantages, returns, args: Args,
               clip_coef: float | None = None, kl_beta: float | None = None) -> dict[str, float]:  # fmt: skip
    """Several epochs of minibatch gradient steps on one rollout; returns the debug metrics. `clip_coef`
    and `kl_beta` are this update's (annealed, adapted) coefficients; None: args.clip_coef, args.kl_beta.

    The update is most of an iteration's time (small gradient steps, each mostly torch overhead), so
    work that need not be per minibatch is done per epoch or once: the shuffle, the advantage
    normalization (of all minibatches at once) and the debug metrics (from the kept log-ratios)."""
    agent.check_views()  # (flat parameters) what the optimizer steps is the agent
    clip_coef = args.clip_coef if clip_coef is None else clip_coef
    kl_beta = args.kl_beta if kl_beta is None else kl_beta
    # the rollout as one batch of num_steps * num_envs transitions (torch views of the numpy arrays)
    batch = [
        torch.from_numpy(array.reshape((args.batch_size,) + array.shape[2:]))
        for array in (buf.obs, buf.actions, buf.logprobs, buf.values, advantages, returns)
    ]
    logratios = []
    for epoch in range(args.update_epochs):
        # (core 6) shuffle the batch every epoch, then split it into minibatches: each tensor becomes
        # [num_minibatches, minibatch_size, ...], and row i of each is minibatch i
        permutation = torch.randperm(args.batch_size)
        mb_obs, mb_actions, mb_logprobs, mb_values, mb_advantages, mb_returns = (
            x[permutation].view((args.num_minibatches, args.minibatch_size) + x.shape[1:]) for x in batch
        )
        if args.norm_adv:
            # (core 7) advantage normalization, per minibatch (all minibatches at once)
            mb_advantages = (mb_advantages - mb_advantages.mean(1, keepdim=True)) / (
                mb_advantages.std(1, keepdim=True) + 1e-8
            )
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

            optimizer.zero_grad(set_to_none=False)  # in place: the parameters' gradients are views (see Agent)
            loss.backward()
            # (core 11) global gradient clipping
            grad_norm = clip_grad_norm(agent.flat_params, args.max_grad_norm)
            # (numerical fault) stop before the optimizer step: the parameters stay the last finite ones
            # (checked on Python floats: a fraction of the per-minibatch cost of torch.isfinite calls)
            if not (math.isfinite(loss.item()) and math.isfinite(grad_norm.item())):
                raise NonFiniteError(f"non-finite loss ({loss.item()}) or gradient norm ({grad_norm.item()})")
            optimizer.step()

        # (core 12) debug metrics: KL estimators (http://joschu.net/blog/kl-approx.html) of the last minibatch
        old_approx_kl = (-logratios[-1]).mean()
        approx_kl = (logratios[-1].exp() - 1 - logratios[-1]).mean()
        if args.target_kl is not None and approx_kl > args.target_kl:
            break  # (optional) target-KL early stopping
    if not all(torch.isfinite(flat).all() for flat in agent.flat_params):
        raise NonFiniteError("non-finite parameters after the update")

    # (core 12) clip fraction: the share of all minibatch samples whose ratio left the clip range
    clipfrac = ((torch.cat(logratios).exp() - 1.0).abs() > clip_coef).float().mean()
    # (core 12) explained variance: how much of the returns' variance the value function explains
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
        "losses/update_epochs": epoch + 1,  # (fewer than --update-epochs where --target-kl stopped them early)
    }
    if args.loss_type == "kl-penalty":
        # (PPO-Penalty) the beta of this update, and d, the mean KL estimate over its last epoch: every
        # sample once, each as its minibatch was evaluated (before that minibatch's step)
        last_epoch = torch.cat(logratios[-args.num_minibatches :])
        metrics["losses/kl_beta"] = kl_beta
        metrics["losses/epoch_kl"] = (last_epoch.exp() - 1 - last_epoch).mean().item()
    return metrics


def make_optimizer(agent: Agent, args: Args) -> torch.optim.Adam:
    # (core 3) Adam with epsilon 1e-5 (fused: one kernel updates all parameters, in place)
    return torch.optim.Adam(agent.flat_params, lr=args.learning_rate, eps=1e-5, fused=True)


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
            f"return (last 100 ep) {ret} | {sps:6.0f} steps/s | "
            f"{'elapsed' if final else 'left'} {time.strftime('%H:%M:%S', time.gmtime(now - self.start if final else eta))}"
        )
        print(("\r" + line + ("\n" if final else "")) if self.tty else line, end="" if self.tty else "\n", flush=True)


# ---------------------------------------------------------------------------------------------------
# Keeping what was trained: checkpoints, resume, evaluation, interruption
# ---------------------------------------------------------------------------------------------------

# the Args that steer a run without changing what it learns: a resumed run takes these from the command
# line, and all the others from its checkpoint
RUN_CONTROL = {"progress", "torch_threads", "save_model", "checkpoint_every", "resume", "eval_episodes",
               "eval_deterministic", "eval_checkpoint", "capture_video"}  # fmt: skip


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


def save_checkpoint(path: str, agent: Agent, optimizer, policy: RolloutPolicy, args: Args, global_step: int,
                    iteration: int, kl_beta: float | None = None) -> None:  # fmt: skip
    """Everything a run needs to go on, in one file, written atomically: to a temporary file first, then
    renamed over the old checkpoint, so that a crash mid-write never leaves a corrupt one."""
    np_state = np.random.get_state()
    state = {
        "agent": agent.state_dict(),
        "optimizer": optimizer.state_dict(),
        "global_step": global_step,
        "iteration": iteration,  # the iterations done, so that the learning-rate schedule goes on from there
        "kl_beta": args.kl_beta if kl_beta is None else kl_beta,  # (--loss-type kl-penalty) the adapted beta
        "args": asdict(args),
        "rng": {
            "python": random.getstate(),
            "numpy": (np_state[0], np_state[1].tolist(), *np_state[2:]),
            "torch": torch.get_rng_state(),
            "policy": policy.rng.bit_generator.state,
        },
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
        # weights_only: tensors, numbers, strings and containers only, so loading runs no pickled code
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
    """The agent of a checkpoint, its weights loaded."""
    args = Args(**{k: v for k, v in checkpoint["args"].items() if k in {f.name for f in fields(Args)}})
    env = gym.make(args.env_id)
    agent = Agent(env.observation_space.shape[0], int(env.action_space.n))
    env.close()
    try:
        agent.load_state_dict(checkpoint["agent"])
    except RuntimeError as e:  # another network shape
        raise UsageError(f"the checkpoint's weights do not fit the agent for {args.env_id}: {str(e).splitlines()[0]}")
    return agent


# evaluation episodes are seeded apart from training's resets (seed + iteration + env index, far below this)
EVAL_SEEDS = 1_000_000_000


def evaluate(agent: Agent, env_id: str, episodes: int, deterministic: bool, seed: int = 0,
             video_folder: str | None = None) -> list[float]:  # fmt: skip
    """Play `episodes` whole episodes with the agent's policy; returns their returns. The agent is not
    changed (and nothing of it is updated)."""
    env = make_env(env_id, video_folder, name_prefix="eval")
    returns = []
    for episode in range(episodes):
        obs, _ = env.reset(seed=EVAL_SEEDS + seed + episode)
        episode_return, done = 0.0, False
        while not done:
            with torch.no_grad():
                action = agent.action(torch.as_tensor(obs, dtype=torch.float32)[None], deterministic)
            obs, reward, terminated, truncated, _ = env.step(int(action[0]))
            episode_return += float(reward)
            done = terminated or truncated
        returns.append(episode_return)
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

    video_folder = os.path.join("videos", run_name) if args.capture_video else None
    # a resumed run's videos are named apart, so that the stopped run's stay
    video_prefix = "rl-video" if checkpoint is None else f"rl-video-from-step-{checkpoint['global_step']}"
    envs = make_envs(args.env_id, args.num_envs, video_folder, video_prefix)
    agent = Agent(envs.single_observation_space.shape[0], int(envs.single_action_space.n))
    policy = RolloutPolicy(agent, args.seed)
    optimizer = make_optimizer(agent, args)
    buf = RolloutBuffer(args.num_steps, args.num_envs, envs.single_observation_space.shape)

    global_step, done_iterations = 0, 0
    kl_beta = args.kl_beta  # (--loss-type kl-penalty) the penalty coefficient, adapted after each update
    if checkpoint is not None:
        # (resume) weights and optimizer copied in place (the policy's numpy views stay valid), and the
        # step, the position in the learning-rate schedule and the RNG streams taken up where they were
        agent.load_state_dict(checkpoint["agent"])
        optimizer.load_state_dict(checkpoint["optimizer"])
        global_step, done_iterations = checkpoint["global_step"], checkpoint["iteration"]
        rng = checkpoint["rng"]
        random.setstate(rng["python"])
        np.random.set_state((rng["numpy"][0], np.array(rng["numpy"][1], dtype=np.uint32), *rng["numpy"][2:]))
        torch.set_rng_state(rng["torch"])
        policy.rng.bit_generator.state = rng["policy"]
        kl_beta = checkpoint.get("kl_beta", args.kl_beta)  # (a checkpoint from before --loss-type has none)
    saved = False  # whether checkpoint_path holds a checkpoint of this run
    recent_returns = []
    progress = Progress(args.num_iterations * args.batch_size, args.progress)
    stop = StopOnSignal()
    start_time, start_step, sps = time.time(), global_step, 0.0
    # (a resumed run's envs start new episodes: their state is not in the checkpoint)
    next_obs, _ = envs.reset(seed=args.seed + done_iterations)
    try:
        for iteration in range(done_iterations + 1, args.num_iterations + 1):
            frac = 1.0 - (iteration - 1.0) / args.num_iterations  # of the run still to go: 1, ..., 1 / num_iterations
            if args.anneal_lr:
                # (core 4) learning rate annealed linearly to 0
                optimizer.param_groups[0]["lr"] = frac * args.learning_rate
            # (option) clipping coefficient annealed alike (baselines' cliprange schedule)
            clip_coef = frac * args.clip_coef if args.anneal_clip else args.clip_coef

            next_obs, episodes = collect_rollout(policy, envs, next_obs, buf)
            for step, _, episodic_return, episodic_length in episodes:
                episode_step = global_step + (step + 1) * args.num_envs
                writer.add_scalar("charts/episodic_return", episodic_return, episode_step)
                writer.add_scalar("charts/episodic_length", episodic_length, episode_step)
                recent_returns = (recent_returns + [episodic_return])[-100:]
            global_step += args.batch_size

            next_value = policy.value(next_obs)
            # without truncation bootstrapping, a time limit counts as a terminal state (the old behaviour)
            terminations = buf.terminations if args.bootstrap_truncation else np.maximum(buf.terminations, buf.truncations)
            advantages, returns = compute_gae(
                buf.rewards, buf.values, next_value, terminations, buf.truncations, buf.truncation_values,
                args.gamma, args.gae_lambda,
            )  # fmt: skip
            try:
                metrics = ppo_update(agent, optimizer, buf, advantages, returns, args, clip_coef, kl_beta)
            except NonFiniteError as e:
                last_good = checkpoint_path if saved or checkpoint is not None else "none written yet"
                raise NonFiniteError(f"{e} at iteration {iteration} (step {global_step}); "
                                     f"last good checkpoint: {last_good}") from None  # fmt: skip
            if args.loss_type == "kl-penalty":
                # (PPO-Penalty) beta adapted to the KL this update reached, for the next update
                kl_beta = adapt_kl_beta(kl_beta, metrics["losses/epoch_kl"], args.kl_target)

            sps = (global_step - start_step) / (time.time() - start_time)
            writer.add_scalar("charts/learning_rate", optimizer.param_groups[0]["lr"], global_step)
            if args.anneal_clip:
                writer.add_scalar("charts/clip_coef", clip_coef, global_step)
            for tag, value in metrics.items():
                writer.add_scalar(tag, value, global_step)
            writer.add_scalar("charts/SPS", int(sps), global_step)
            progress.update(global_step, np.mean(recent_returns) if recent_returns else None, sps)

            last = iteration == args.num_iterations
            if args.save_model and (last or stop.signal or (args.checkpoint_every and iteration % args.checkpoint_every == 0)):
                save_checkpoint(checkpoint_path, agent, optimizer, policy, args, global_step, iteration, kl_beta)
                saved = True
            if stop.signal:
                where = f"checkpoint {checkpoint_path}; resume with: python {SCRIPT} --resume {checkpoint_path}"
                where = where if args.save_model else "no checkpoint (--no-save-model)"
                raise Interrupted(f"stopped at step {global_step}; {where}", stop.signal)
        progress.update(global_step, np.mean(recent_returns) if recent_returns else None, sps, final=True)
    finally:
        stop.restore()
        envs.close()
        writer.close()  # flushed: everything logged so far is on disk, whatever stopped the run

    if args.eval_episodes:
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
