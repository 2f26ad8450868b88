"""Run by tests/test_distributed.py under torchrun (2 ranks, gloo): each rank writes what it saw to OUT/rank<r>.pt.

    python -m torch.distributed.run --standalone --nproc_per_node 2 tests/torchrun_worker.py OUT

1. One `ppo_update` (one epoch, one minibatch, no clipping) on this rank's share of a fixed batch (`fixed_batch`):
   its gradient, weights and metrics, to compare with one process's update on the whole batch; the same under
   --loss-type kl-penalty (its epoch KL, from which beta adapts); and one where rank 1 alone has a non-finite loss.
2. A short `train` run of ppo_atari_multigpu.py's own loop, recorded from outside (wrappers around its functions, as
   the tests of tests/test_ppo_atari.py do): the final weights, the envs' reset seeds, torch's seed, the episodes that
   this rank's envs ended and the checkpoints it wrote.
"""

import os
import sys

import gymnasium as gym
import numpy as np
import torch

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
import ppo_atari_multigpu  # noqa: E402
import ppo_run

SPACES = gym.spaces.Box(0, 255, (4, 84, 84), np.uint8), gym.spaces.Discrete(4)


def update_args(num_envs: int, loss_type: str = "clip") -> ppo_atari_multigpu.Args:
    """One epoch of one minibatch (the whole batch), the gradient left unclipped, on `num_envs` envs of 8 steps."""
    args = ppo_atari_multigpu.Args(
        num_envs=num_envs, num_steps=8, num_minibatches=1, update_epochs=1, max_grad_norm=1e9, loss_type=loss_type
    )
    args.batch_size = args.minibatch_size = num_envs * 8
    return args


def fixed_batch(envs: slice) -> tuple:
    """(buffer, advantages, returns) of the envs `envs` of one fixed rollout of 4 envs x 8 steps."""
    rng = np.random.default_rng(0)
    obs = rng.integers(0, 256, (8, 4, 4, 84, 84), dtype=np.uint8)
    actions = rng.integers(0, 4, (8, 4))
    logprobs, values = rng.normal(-1.4, 0.05, (2, 8, 4)).astype(np.float32)
    advantages, returns = rng.normal(0.5, 1.0, (2, 8, 4)).astype(np.float32)  # (not normalized: a mean and a std)
    n = len(range(4)[envs])
    buf = ppo_atari_multigpu.RolloutBuffer(8, n, (4, 84, 84), torch.device("cpu"))
    buf.obs.copy_(torch.from_numpy(obs[:, envs]))
    buf.actions[:], buf.logprobs[:], buf.values[:] = actions[:, envs], logprobs[:, envs], values[:, envs]
    return buf, np.ascontiguousarray(advantages[:, envs]), np.ascontiguousarray(returns[:, envs])


def one_update(args: ppo_atari_multigpu.Args, envs: slice) -> dict:
    """The gradient and the weights after one update of a fresh agent (seed 0) on `envs` of the fixed batch."""
    torch.manual_seed(0)
    agent = ppo_atari_multigpu.make_agent(args, *SPACES)
    optimizer = ppo_atari_multigpu.make_optimizer(agent, args)
    metrics = ppo_atari_multigpu.ppo_update(agent, optimizer, *fixed_batch(envs), args)
    grads = {name: p.grad.clone() for name, p in agent.named_parameters()}
    return {"grads": grads, "weights": {k: v.clone() for k, v in agent.state_dict().items()}, "metrics": metrics}


def non_finite_update(args: ppo_atari_multigpu.Args, envs: slice, rank: int) -> bool:
    """Whether an update where rank 1 alone has a non-finite value target (and loss) stops this rank."""
    torch.manual_seed(0)
    agent = ppo_atari_multigpu.make_agent(args, *SPACES)
    buf, advantages, returns = fixed_batch(envs)
    returns[0, 0] = np.nan if rank == 1 else returns[0, 0]
    try:
        ppo_atari_multigpu.ppo_update(
            agent, ppo_atari_multigpu.make_optimizer(agent, args), buf, advantages, returns, args
        )
    except ppo_atari_multigpu.NonFiniteError:
        return True
    return False


def short_breakout() -> str:
    """Breakout cut after 200 frames (about 50 steps), so that tiny runs see games end (as tests/test_ppo_atari.py)."""
    ppo_atari_multigpu.register_atari_envs()
    env_id = "BreakoutShort-v4"
    if env_id not in gym.registry:
        kwargs = {**gym.spec("BreakoutNoFrameskip-v4").kwargs, "max_num_frames_per_episode": 200}
        gym.register(env_id, entry_point="ale_py.env:AtariEnv", kwargs=kwargs)
    return env_id


def recorded_train(args: ppo_atari_multigpu.Args) -> dict:
    seen = {"reset_seeds": [], "episodes": [], "saves": 0, "torch_seed": None, "agent": None}
    make_envs, collect_rollout, ppo_update = (
        ppo_atari_multigpu.make_envs,
        ppo_atari_multigpu.collect_rollout,
        ppo_atari_multigpu.ppo_update,
    )
    save_checkpoint = ppo_run.save_checkpoint

    def recording_make_envs(*a, **kw):
        envs = make_envs(*a, **kw)
        reset = envs.reset

        def recording_reset(**kwargs):
            seen["reset_seeds"].append((kwargs.get("seed"), envs.num_envs))
            return reset(**kwargs)

        envs.reset = recording_reset
        return envs

    def recording_collect_rollout(*a, **kw):
        if seen["torch_seed"] is None:
            seen["torch_seed"] = torch.initial_seed()
        next_obs, episodes = collect_rollout(*a, **kw)
        seen["episodes"] += episodes
        return next_obs, episodes

    def recording_ppo_update(agent, *a, **kw):
        seen["agent"] = agent
        return ppo_update(agent, *a, **kw)

    def recording_save_checkpoint(*a, **kw):
        seen["saves"] += 1
        return save_checkpoint(*a, **kw)

    ppo_atari_multigpu.make_envs, ppo_atari_multigpu.collect_rollout = recording_make_envs, recording_collect_rollout
    ppo_atari_multigpu.ppo_update, ppo_run.save_checkpoint = recording_ppo_update, recording_save_checkpoint
    seen["run_dir"] = ppo_atari_multigpu.train(args)
    seen["agent"] = {k: v.clone() for k, v in seen["agent"].state_dict().items()}
    return seen


def main() -> None:
    out = sys.argv[1]
    rank, world_size = ppo_atari_multigpu.rank_and_world()
    assert world_size == 2
    torch.set_num_threads(1)
    share = update_args(4 // world_size)
    ppo_atari_multigpu.init_distributed(share)
    result = {"update": one_update(share, slice(rank * 2, rank * 2 + 2))}
    result["kl_penalty_update"] = one_update(update_args(4 // world_size, "kl-penalty"), slice(rank * 2, rank * 2 + 2))
    result["non_finite_stops"] = non_finite_update(share, slice(rank * 2, rank * 2 + 2), rank)
    args = ppo_atari_multigpu.Args(env_id=short_breakout(), num_envs=2, num_steps=32, total_timesteps=256,
                                   progress=False, gym_vector="sync", update_threads=1)  # fmt: skip
    ppo_run.check_args(ppo_atari_multigpu, args)
    result["train"] = recorded_train(args)
    torch.save(result, os.path.join(out, f"rank{rank}.pt"))


if __name__ == "__main__":
    main()
