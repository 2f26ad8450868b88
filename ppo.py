"""PPO for discrete actions and vector observations (classic control), on gymnasium 1.x.

Read top to bottom: Args, environment, agent, rollout, GAE, losses, update, training loop (the run plumbing
is ppo_run.py's). Each detail is commented with its name in "The 37 Implementation Details of PPO"
(Huang et al. 2022), e.g. `(core 5)`; docs/ppo.md explains them.

    python ppo.py --env-id CartPole-v1
    tensorboard --logdir runs
"""

import math
import os
from dataclasses import dataclass
from typing import Literal

# numpy's BLAS on one thread, like torch: the rollout's matrix products are tiny (set before numpy loads)
os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")

import gymnasium as gym
import numpy as np
import torch
import torch.nn as nn

import ppo_run
from ppo_run import (
    NonFiniteError,
    Run,
    UsageError,
    ended_episodes,
    known_env,
    set_rng_states,
)

SCRIPT = os.path.basename(__file__)


@dataclass
class Args:
    exp_name: str = os.path.basename(__file__)[: -len(".py")]  # the experiment's name (in the run directory's)
    seed: int = 1  # seed of the experiment: same seed, same numbers, run after run (on CPU)
    torch_threads: int = 1  # torch CPU threads (the network is tiny: more threads only add synchronisation)
    progress: bool = True  # show a progress bar
    save_model: bool = True  # write a checkpoint at the end, every --checkpoint-every iterations and when stopped
    checkpoint_every: int = 100  # iterations between checkpoints (0: only at the end and when stopped)
    stop_at_step: int = 0  # stop with a checkpoint once this many steps are done; the schedule stays (0: never)
    resume: str | None = None  # continue the run of this checkpoint (or run directory); its envs start anew
    eval_episodes: int = 0  # after training, play this many episodes with the policy (eval/episodic_return)
    eval_deterministic: bool = False  # evaluate with the most likely action instead of a sampled one
    eval_checkpoint: str | None = None  # only evaluate this checkpoint (or run directory), then exit
    capture_video: bool = False  # record videos of the first env's (and evaluation) episodes in videos/{run_name}/
    track: bool = False  # log the run to Weights & Biases (its TensorBoard scalars and Args; WANDB_MODE=offline)
    wandb_project_name: str = "cleanRL"  # the W&B project (with --track)
    wandb_entity: str | None = None  # the W&B team or user (with --track; None: your default)

    # Algorithm arguments
    env_id: str = "CartPole-v1"  # the id of a gymnasium env with discrete actions and vector observations
    total_timesteps: int = 500_000  # total environment steps of the experiment (over all envs)
    learning_rate: float = 2.5e-4  # the learning rate of the optimizer
    num_envs: int = 4  # the number of parallel environments
    num_steps: int = 128  # the number of steps each environment runs per rollout
    anneal_lr: bool = True  # anneal the learning rate linearly to 0 over training
    gamma: float = 0.99  # the discount factor
    gae_lambda: float = 0.95  # the lambda of generalized advantage estimation
    num_minibatches: int = 4  # the number of minibatches each epoch splits the batch into
    update_epochs: int = 4  # the number of passes over the batch per update
    norm_adv: bool = True  # normalize advantages per minibatch
    clip_coef: float = 0.2  # the surrogate clipping coefficient (also the value loss's, with --clip-vloss)
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


# the range of every number, checked before anything is written (NaN is in none)
RANGES = {
    "positive": ("total_timesteps", "num_envs", "num_steps", "num_minibatches", "update_epochs", "torch_threads",
                 "learning_rate", "clip_coef", "max_grad_norm", "target_kl", "kl_beta", "kl_target"),
    "in [0, 1]": ("gamma", "gae_lambda"),
    "0 or positive": ("ent_coef", "vf_coef", "checkpoint_every", "stop_at_step", "eval_episodes"),
}  # fmt: skip
# the Args that steer a run without changing what it learns: a resume takes them from the command line
RUN_CONTROL = {"progress", "torch_threads", "save_model", "checkpoint_every", "stop_at_step", "resume", "eval_episodes",
               "eval_deterministic", "eval_checkpoint", "capture_video",
               "track", "wandb_project_name", "wandb_entity"}  # fmt: skip
RECIPES: dict[str, dict] = {}  # named sets of defaults for --recipe (none in this script)


def check_env(args: Args) -> None:
    """Refuse an env this script cannot learn, in one line."""
    env = known_env(args.env_id)
    obs_space, act_space = env.observation_space, env.action_space
    env.close()
    if isinstance(act_space, gym.spaces.Box):
        raise UsageError(f"{args.env_id} has continuous actions; use ppo_continuous_action.py")
    if not isinstance(act_space, gym.spaces.Discrete):
        raise UsageError(f"{args.env_id} has {type(act_space).__name__} actions; {SCRIPT} handles Discrete only")
    if isinstance(obs_space, gym.spaces.Box) and len(obs_space.shape) in (2, 3):
        raise UsageError(f"{args.env_id} has image observations {obs_space.shape}; use ppo_atari.py")
    if not isinstance(obs_space, gym.spaces.Box) or len(obs_space.shape) != 1:
        raise UsageError(f"{args.env_id} has observations {obs_space}; {SCRIPT} handles flat vectors only")


def make_env(env_id: str, video_folder: str | None = None, name_prefix: str = "rl-video") -> gym.Env:
    """One env; with a video folder, its episodes are recorded there (RecordVideo: 0, 1, 8, 27, ..., 1000, ...)."""
    # (the passive env checker is left out: on these cheap envs its extra layer costs 10% of the run)
    env = gym.make(env_id, disable_env_checker=True, render_mode="rgb_array" if video_folder else None)
    if video_folder:
        env = gym.wrappers.RecordVideo(env, video_folder, name_prefix=name_prefix, disable_logger=True)
    return gym.wrappers.RecordEpisodeStatistics(env)  # info["episode"] at each episode's end


def make_envs(env_id: str, num_envs: int, video_folder: str | None = None, video_prefix: str = "rl-video"):
    # (core 1) vectorized envs. SAME_STEP autoreset: the step that ends an episode returns the next one's
    # first observation (the last in infos["final_obs"]), so no bogus NEXT_STEP "autoreset step" is stored.
    # copy=False: each observation is copied into the rollout buffer before the next step overwrites it.
    return gym.vector.SyncVectorEnv(
        [lambda i=i: make_env(env_id, video_folder if i == 0 else None, video_prefix) for i in range(num_envs)],
        autoreset_mode=gym.vector.AutoresetMode.SAME_STEP,
        copy=False,
    )


def layer_init(layer: nn.Module, std: float = np.sqrt(2), bias_const: float = 0.0) -> nn.Module:
    # (core 2) orthogonal initialization of weights, constant (zero) biases
    torch.nn.init.orthogonal_(layer.weight, std)
    torch.nn.init.constant_(layer.bias, bias_const)
    return layer


def mlp(in_dim: int, out_dim: int, out_std: float) -> nn.Sequential:
    # (core 13) 64-64 tanh; (core 2) hidden layers gain sqrt(2), the head its own gain
    hidden = [layer_init(nn.Linear(in_dim, 64)), nn.Tanh(), layer_init(nn.Linear(64, 64)), nn.Tanh()]
    return nn.Sequential(*hidden, layer_init(nn.Linear(64, out_dim), std=out_std))


class Agent(nn.Module):
    def __init__(self, obs_dim: int, n_actions: int):
        super().__init__()
        # (core 13) separate actor and critic networks; (core 2) value head gain 1, policy head gain 0.01
        self.critic, self.actor = mlp(obs_dim, 1, 1.0), mlp(obs_dim, n_actions, 0.01)

    def get_value(self, obs: torch.Tensor) -> torch.Tensor:
        return self.critic(obs).squeeze(-1)

    def evaluate(self, obs: torch.Tensor, action: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """(log-probability of `action`, entropy, value); the categorical distribution written out."""
        logp_all = self.actor(obs).log_softmax(-1)
        logprob = logp_all.gather(-1, action.unsqueeze(-1)).squeeze(-1)
        return logprob, -(logp_all.exp() * logp_all).sum(-1), self.get_value(obs)

    def action(self, obs: torch.Tensor, deterministic: bool) -> torch.Tensor:
        """The trained policy's action (evaluation): the most likely one, or a sample."""
        logits = self.actor(obs)
        return logits.argmax(-1) if deterministic else torch.distributions.Categorical(logits=logits).sample()

    def play(self, obs: np.ndarray, deterministic: bool) -> int:
        """The action for one env's observation, as the env takes it (evaluation)."""
        with torch.no_grad():
            return int(self.action(torch.as_tensor(obs, dtype=torch.float32)[None], deterministic)[0])


def make_agent(args: Args, obs_space: gym.Space, action_space: gym.Space) -> Agent:
    return Agent(obs_space.shape[0], int(action_space.n))


NUMPY_ACTIVATIONS = {nn.Tanh: np.tanh, nn.ReLU: lambda x: np.maximum(x, 0.0)}  # (RolloutPolicy) the networks' own


class RolloutPolicy:
    """(speed) The actor and critic in numpy, for the rollout's calls of one observation per env: at this
    size a torch call costs ~5x its arithmetic in overhead. The weights are numpy views of the parameters
    (CPU tensors share memory), so every optimizer step shows here at once; sampling has its own RNG."""

    def __init__(self, agent: Agent, seed: int):
        def layers(net: nn.Sequential) -> list:  # a Linear as numpy views (weight, bias), an activation as its twin
            found = []
            for m in net:
                if isinstance(m, nn.Linear):
                    found.append((m.weight.detach().numpy(), m.bias.detach().numpy()))
                else:
                    found.append(NUMPY_ACTIVATIONS[type(m)])
            return found

        self.actor, self.critic = layers(agent.actor), layers(agent.critic)
        self.rng = np.random.default_rng(seed)

    @staticmethod
    def forward(layers: list, x: np.ndarray) -> np.ndarray:
        for layer in layers:
            if isinstance(layer, tuple):  # a Linear layer's (weight, bias)
                x = x @ layer[0].T + layer[1]
            else:  # an activation, in numpy
                x = layer(x)
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
        return action, logits[np.arange(len(action)), action] - log_normalizer


class RolloutBuffer:
    """One rollout: `num_steps` transitions of `num_envs` environments, each array indexed [step, env]."""

    def __init__(self, num_steps: int, num_envs: int, obs_shape: tuple):
        def zeros(*shape, dtype=np.float32):
            return np.zeros((num_steps, num_envs) + shape, dtype=dtype)

        self.obs = zeros(*obs_shape)
        self.actions = zeros(dtype=np.int64)
        self.logprobs, self.values, self.rewards = zeros(), zeros(), zeros()
        self.terminations = zeros()  # 1.0 where the episode reached a terminal state
        self.truncations = zeros()  # 1.0 where a time limit cut it (and it did not terminate)
        self.truncation_values = zeros()  # V(true final observation) where truncated, else 0


def collect_rollout(policy: RolloutPolicy, envs: gym.vector.VectorEnv, next_obs: np.ndarray, buf: RolloutBuffer):
    """Fill `buf` from `next_obs`; returns the observation to go on from and the episodes that ended, as
    (step, env, return, length)."""
    episodes = []
    for step in range(buf.obs.shape[0]):
        action, logprob = policy.act(next_obs)
        buf.obs[step], buf.actions[step], buf.logprobs[step] = next_obs, action, logprob
        next_obs, reward, terminated, truncated, infos = envs.step(action)
        truncated = truncated & ~terminated  # an episode that both terminates and truncates is over
        buf.rewards[step], buf.terminations[step], buf.truncations[step] = reward, terminated, truncated
        buf.truncation_values[step] = 0.0
        if truncated.any():  # (gymnasium 1.x) cut, not ended: bootstrap from its true last observation
            buf.truncation_values[step, truncated] = policy.value(np.stack(infos["final_obs"][truncated]))
        episodes += ended_episodes(infos, step)
    # all the rollout's values in one call (the weights do not change during a rollout)
    buf.values[:] = policy.value(buf.obs.reshape((-1,) + buf.obs.shape[2:])).reshape(buf.values.shape)
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


def make_optimizer(agent: Agent, args: Args) -> torch.optim.Adam:
    # (core 3) Adam with epsilon 1e-5 (fused: one kernel updates all parameters, in place)
    return torch.optim.Adam(agent.parameters(), lr=args.learning_rate, eps=1e-5, fused=True)


def ppo_update(agent: Agent, optimizer, buf: RolloutBuffer, advantages, returns, args: Args,
               clip_coef: float | None = None, kl_beta: float | None = None) -> dict[str, float]:  # fmt: skip
    """Epochs of minibatch gradient steps on one rollout; returns the debug metrics. `clip_coef`, `kl_beta`:
    this update's (annealed, adapted) ones, else args'. (speed) Shuffles, advantage normalization and
    metrics are done per epoch or once, not per minibatch."""
    clip_coef = args.clip_coef if clip_coef is None else clip_coef
    kl_beta = args.kl_beta if kl_beta is None else kl_beta
    batch = [  # the rollout as one batch of num_steps * num_envs transitions (views of the numpy arrays)
        torch.from_numpy(array.reshape((args.batch_size,) + array.shape[2:]))
        for array in (buf.obs, buf.actions, buf.logprobs, buf.values, advantages, returns)
    ]
    logratios, params = [], list(agent.parameters())  # (speed) the parameters listed once
    for epoch in range(args.update_epochs):
        # (core 6) shuffle the batch every epoch; row i of each [num_minibatches, minibatch_size] tensor is minibatch i
        permutation = torch.randperm(args.batch_size)
        mb_obs, mb_actions, mb_logprobs, mb_values, mb_advantages, mb_returns = (
            x[permutation].view((args.num_minibatches, args.minibatch_size) + x.shape[1:]) for x in batch
        )
        if args.norm_adv:  # (core 7) advantage normalization, per minibatch (all at once)
            mean, std = mb_advantages.mean(1, keepdim=True), mb_advantages.std(1, keepdim=True)
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
            grad_norm = torch.cat([p.grad.reshape(-1) for p in params]).norm()  # (core 11) gradient clipping (by hand)
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
        metrics["losses/kl_beta"] = kl_beta
        metrics["losses/epoch_kl"] = (last_epoch.exp() - 1 - last_epoch).mean().item()
    return metrics


def train(args: Args, resume_from: tuple[str, dict] | None = None) -> str:
    """Train as `args` says (call check_args first), or go on with `resume_from` (a load_checkpoint result);
    returns the run directory."""
    run = Run(args, resume_from)
    envs = make_envs(args.env_id, args.num_envs, run.video_folder, run.video_prefix)
    agent = make_agent(args, envs.single_observation_space, envs.single_action_space)
    policy = RolloutPolicy(agent, args.seed)
    optimizer = make_optimizer(agent, args)
    buf = RolloutBuffer(args.num_steps, args.num_envs, envs.single_observation_space.shape)
    global_step, done_iterations, kl_beta = run.global_step, run.done_iterations, args.kl_beta
    if run.checkpoint is not None:  # (resume) copied in place: the policy's numpy views stay valid
        agent.load_state_dict(run.checkpoint["agent"])
        optimizer.load_state_dict(run.checkpoint["optimizer"])
        set_rng_states(run.checkpoint["rng"], policy.rng)
        kl_beta = run.checkpoint.get("kl_beta", args.kl_beta)  # (kl-penalty) beta, adapted after each update
    next_obs, _ = envs.reset(seed=args.seed + done_iterations)  # (a resumed run starts new episodes)
    try:
        for iteration in range(done_iterations + 1, args.num_iterations + 1):
            frac = 1.0 - (iteration - 1.0) / args.num_iterations  # the share of the run still to go
            if args.anneal_lr:  # (core 4) learning rate annealed linearly to 0
                optimizer.param_groups[0]["lr"] = frac * args.learning_rate
            clip_coef = frac * args.clip_coef if args.anneal_clip else args.clip_coef  # (option) annealed alike

            next_obs, episodes = collect_rollout(policy, envs, next_obs, buf)
            run.log_episodes(episodes, global_step)
            global_step += args.batch_size
            next_value = policy.value(next_obs)
            # without truncation bootstrapping, a time limit counts as a terminal state (the old behaviour)
            terminations = np.maximum(buf.terminations, buf.truncations * (not args.bootstrap_truncation))
            advantages, returns = compute_gae(buf.rewards, buf.values, next_value, terminations, buf.truncations,
                                              buf.truncation_values, args.gamma, args.gae_lambda)  # fmt: skip
            with run.update(iteration, global_step):
                metrics = ppo_update(agent, optimizer, buf, advantages, returns, args, clip_coef, kl_beta)
            if args.loss_type == "kl-penalty":  # (PPO-Penalty) beta adapted to this update's KL
                kl_beta = adapt_kl_beta(kl_beta, metrics["losses/epoch_kl"], args.kl_target)

            metrics["charts/learning_rate"] = optimizer.param_groups[0]["lr"]
            if args.anneal_clip:
                metrics["charts/clip_coef"] = clip_coef
            run.end_iteration(metrics, iteration, global_step, agent, optimizer, policy_rng=policy.rng, kl_beta=kl_beta)
    finally:
        envs.close()  # (with --capture-video, this also writes env 0's episode in progress)
        run.close()
    run.evaluate(make_env, agent)  # (--eval-episodes)
    return run.dir


if __name__ == "__main__":
    ppo_run.main(globals())  # (this script's names: as a dict, it works under python -m cProfile or pdb too)
