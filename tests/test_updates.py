"""Golden update tests: one `ppo_update` of each script, for each loss type, on a fixed buffer and fixed
shuffles, against a plain PPO update written here in CleanRL's style (torch.distributions for the
policy, a per-parameter Adam, nn.utils.clip_grad_norm_). The parameters after the update and the logged
metrics must agree to float rounding, so that any broken detail of the update (a loss, a clipping, the
advantage normalization, the shuffling, the optimizer, the metrics) shows as a difference."""

import copy
import importlib

import numpy as np
import pytest
import torch
import torch.nn as nn
from torch.distributions import Categorical, Normal

ATARI = ("ppo_atari", "ppo_atari_ale_vector", "ppo_atari_multigpu")  # ppo_atari.py and its copies
# (script, loss type, Args overrides): every loss type, and the switches that change the update
CASES = [
    *[(script, loss, {}) for script in ("ppo", "ppo_continuous_action") for loss in ("clip", "kl-penalty", "pg")],
    *[(script, "clip", {}) for script in ATARI],
    *[("ppo_atari", loss, {}) for loss in ("kl-penalty", "pg")],
    *[
        (script, "clip", {"norm_adv": False, "clip_vloss": False})
        for script in ("ppo", "ppo_continuous_action", *ATARI)
    ],
    *[(script, "clip", {"target_kl": 1e-9}) for script in ("ppo", "ppo_continuous_action", *ATARI)],
    ("ppo_continuous_action", "clip", {"critic_learning_rate": 1e-3, "tanh_mean": True}),
    ("ppo_continuous_action", "clip", {"fixed_std": 0.5}),
]  # fmt: skip
OBS_DIM, N_ACTIONS, ACTION_DIM = 4, 3, 2


def make_case(script: str, loss_type: str, overrides: dict):
    """(module, args, agent, buffer, advantages, returns): a random agent moved off its init, and a buffer
    whose old log-probabilities and values are perturbed, so that both clippings and the gradient clipping
    engage."""
    module = importlib.import_module(script)
    atari = script in ATARI
    args = module.Args(num_envs=2 if atari else 4, num_steps=8, num_minibatches=4, update_epochs=3, ent_coef=0.01,
                       loss_type=loss_type, kl_beta=0.7, **overrides)  # fmt: skip
    args.batch_size = args.num_envs * args.num_steps
    args.minibatch_size = args.batch_size // args.num_minibatches
    shape, dtype = (
        (args.num_steps, args.num_envs),
        np.float64 if torch.get_default_dtype() == torch.float64 else np.float32,
    )
    rng = np.random.default_rng(0)
    torch.manual_seed(0)
    if atari:
        agent = module.Agent(N_ACTIONS)
        buf = module.RolloutBuffer(args.num_steps, args.num_envs, (4, 84, 84), torch.device("cpu"))
        buf.obs.copy_(torch.from_numpy(rng.integers(0, 256, buf.obs.shape, dtype=np.uint8)))
        buf.actions[:] = rng.integers(0, N_ACTIONS, shape)
        obs, actions = buf.obs.reshape(-1, 4, 84, 84), torch.from_numpy(buf.actions.reshape(-1))
    elif script == "ppo":
        agent = module.Agent(OBS_DIM, N_ACTIONS)
        buf = module.RolloutBuffer(args.num_steps, args.num_envs, (OBS_DIM,))
        buf.obs, buf.actions = rng.normal(size=shape + (OBS_DIM,)).astype(dtype), rng.integers(0, N_ACTIONS, shape)
        obs, actions = torch.from_numpy(buf.obs.reshape(-1, OBS_DIM)), torch.from_numpy(buf.actions.reshape(-1))
    else:
        agent = module.Agent(OBS_DIM, ACTION_DIM, fixed_std=args.fixed_std, tanh_mean=args.tanh_mean)
        buf = module.RolloutBuffer(args.num_steps, args.num_envs, (OBS_DIM,), (ACTION_DIM,))
        buf.obs, buf.actions = (rng.normal(size=shape + (n,)).astype(dtype) for n in (OBS_DIM, ACTION_DIM))
        obs, actions = (torch.from_numpy(x.reshape(-1, x.shape[-1])) for x in (buf.obs, buf.actions))
    with torch.no_grad():
        for p in agent.parameters():  # off the init: the policy head's outputs are no longer all about 0
            p.add_(torch.randn_like(p) * 0.05)
        logprob, _, value = reference_evaluate(agent, obs, actions)
    buf.logprobs = (logprob.numpy() + rng.normal(0, 0.3, logprob.shape)).reshape(shape).astype(dtype)
    buf.values = (value.numpy() + rng.normal(0, 0.5, value.shape)).reshape(shape).astype(dtype)
    advantages = (rng.normal(0.5, 2.0, shape)).astype(dtype)
    returns = advantages + buf.values
    return module, args, agent, buf, advantages, returns


def reference_evaluate(agent: nn.Module, obs: torch.Tensor, actions: torch.Tensor):
    """(log-probability, entropy, value) with torch.distributions, from the agent's own layers."""
    if hasattr(agent, "network"):  # Atari: the Nature-CNN on pixels scaled to [0, 1]
        hidden = agent.network(obs.float() / 255.0)
        dist, value = Categorical(logits=agent.actor(hidden)), agent.critic(hidden)
    elif hasattr(agent, "actor_mean"):  # a diagonal Gaussian, dimensions summed
        mean = agent.actor_mean(obs)
        mean = torch.tanh(mean) if agent.tanh_mean else mean
        dist = Normal(mean, agent.actor_logstd.exp().expand_as(mean))
        return dist.log_prob(actions).sum(1), dist.entropy().sum(1), agent.critic(obs).view(-1)
    else:
        dist, value = Categorical(logits=agent.actor(obs)), agent.critic(obs)
    return dist.log_prob(actions), dist.entropy(), value.view(-1)


def reference_update(agent, buf, advantages, returns, args, shuffles: list[torch.Tensor]) -> dict:
    """PPO's update as CleanRL writes it (one loss type at a time); returns the metrics it would log."""
    critic = [p for name, p in agent.named_parameters() if name.startswith("critic.")]
    actor = [p for name, p in agent.named_parameters() if not name.startswith("critic.")]
    critic_lr = getattr(args, "critic_learning_rate", None) or args.learning_rate
    optimizer = torch.optim.Adam(
        [{"params": actor, "lr": args.learning_rate}, {"params": critic, "lr": critic_lr}], eps=1e-5, foreach=False
    )
    b_obs = buf.obs.reshape((args.batch_size,) + buf.obs.shape[2:])
    b_obs = b_obs if isinstance(b_obs, torch.Tensor) else torch.from_numpy(b_obs)
    b_actions, b_logprobs, b_values, b_advantages, b_returns = (
        torch.from_numpy(x.reshape((args.batch_size,) + x.shape[2:]))
        for x in (buf.actions, buf.logprobs, buf.values, advantages, returns)
    )
    loss_type, beta = args.loss_type, args.kl_beta
    clipfracs, grad_norms, epoch_kls = [], [], []
    for epoch in range(args.update_epochs):
        b_inds = shuffles[epoch]
        epoch_kls = []
        for start in range(0, args.batch_size, args.minibatch_size):
            mb = b_inds[start : start + args.minibatch_size]
            newlogprob, entropy, newvalue = reference_evaluate(agent, b_obs[mb], b_actions[mb])
            logratio = newlogprob - b_logprobs[mb]
            ratio = logratio.exp()
            with torch.no_grad():
                old_approx_kl = (-logratio).mean()
                approx_kl = ((ratio - 1) - logratio).mean()
                epoch_kls.append(approx_kl)
                clipfracs.append(((ratio - 1.0).abs() > args.clip_coef).float().mean())
            mb_advantages = b_advantages[mb]
            if args.norm_adv:
                mb_advantages = (mb_advantages - mb_advantages.mean()) / (mb_advantages.std() + 1e-8)
            pg_loss1 = -mb_advantages * ratio
            pg_loss2 = -mb_advantages * torch.clamp(ratio, 1 - args.clip_coef, 1 + args.clip_coef)
            if loss_type == "clip":
                pg_loss = torch.max(pg_loss1, pg_loss2).mean()
            elif loss_type == "pg":
                pg_loss = pg_loss1.mean()
            else:  # kl-penalty
                pg_loss = pg_loss1.mean() + beta * ((ratio - 1) - logratio).mean()
            if args.clip_vloss:
                v_loss_unclipped = (newvalue - b_returns[mb]) ** 2
                v_clipped = b_values[mb] + torch.clamp(newvalue - b_values[mb], -args.clip_coef, args.clip_coef)
                v_loss = 0.5 * torch.max(v_loss_unclipped, (v_clipped - b_returns[mb]) ** 2).mean()
            else:
                v_loss = 0.5 * ((newvalue - b_returns[mb]) ** 2).mean()
            entropy_loss = entropy.mean()
            loss = pg_loss - args.ent_coef * entropy_loss + v_loss * args.vf_coef
            optimizer.zero_grad()
            loss.backward()
            grad_norms.append(nn.utils.clip_grad_norm_(agent.parameters(), args.max_grad_norm).item())
            optimizer.step()
        if args.target_kl is not None and approx_kl > args.target_kl:
            break
    y_pred, y_true = buf.values.ravel(), returns.ravel()
    metrics = {
        "losses/value_loss": v_loss.item(),
        "losses/policy_loss": pg_loss.item(),
        "losses/entropy": entropy_loss.item(),
        "losses/old_approx_kl": old_approx_kl.item(),
        "losses/approx_kl": approx_kl.item(),
        "losses/clipfrac": torch.stack(clipfracs).mean().item(),
        "losses/explained_variance": float(1 - np.var(y_true - y_pred) / np.var(y_true)),
        "losses/update_epochs": epoch + 1,
    }
    if loss_type == "kl-penalty":
        metrics["losses/kl_beta"] = beta
        metrics["losses/epoch_kl"] = torch.stack(epoch_kls).mean().item()
    return metrics, grad_norms


@pytest.fixture
def float64_except_atari(request):
    """ppo.py and the continuous script in float64, so that the two updates agree to 1e-9 (Atari's frames
    become float32 in the network, so it runs in float32)."""
    before = torch.get_default_dtype()
    torch.set_default_dtype(torch.float32 if request.node.callspec.params["script"] in ATARI else torch.float64)
    yield
    torch.set_default_dtype(before)


@pytest.mark.parametrize(
    "script, loss_type, overrides",
    [pytest.param(*case, id="-".join([case[0], case[1], *case[2]])) for case in CASES],
)
def test_one_update_equals_the_reference_update(script, loss_type, overrides, float64_except_atari):
    module, args, agent, buf, advantages, returns = make_case(script, loss_type, overrides)
    reference = copy.deepcopy(agent)
    before = {k: v.clone() for k, v in agent.state_dict().items()}

    optimizer = module.make_optimizer(agent, args)
    torch.manual_seed(7)  # the shuffles: each update draws one permutation per epoch
    metrics = module.ppo_update(agent, optimizer, buf, advantages, returns, args)
    torch.manual_seed(7)
    shuffles = [torch.randperm(args.batch_size) for _ in range(args.update_epochs)]
    expected, grad_norms = reference_update(reference, buf, advantages, returns, args, shuffles)

    # the case engages what it is meant to test: the gradient clipping, and (clip loss) the ratio clipping
    assert max(grad_norms) > args.max_grad_norm
    assert loss_type != "clip" or expected["losses/clipfrac"] > 0
    tol = {"rtol": 1e-4, "atol": 1e-6} if script in ATARI else {"rtol": 1e-9, "atol": 1e-12}
    ours, theirs = agent.state_dict(), reference.state_dict()
    for name in before:
        moved = (theirs[name] - before[name]).abs().max()
        assert moved > 0 or name.startswith("obs_rms") or name.startswith("return_rms") or "logstd" in name, name
        torch.testing.assert_close(ours[name] - before[name], theirs[name] - before[name], **tol, msg=name)
    assert set(expected) <= set(metrics)
    for tag, value in expected.items():
        assert metrics[tag] == pytest.approx(value, rel=tol["rtol"], abs=tol["atol"]), tag


@pytest.mark.parametrize("script", ["ppo", "ppo_continuous_action", "ppo_atari"])
def test_the_loss_types_give_three_different_updates(script, float64_except_atari):
    # the same buffer under clip, kl-penalty and pg moves the actor three different ways
    actors = []
    for loss_type in ("clip", "kl-penalty", "pg"):
        module, args, agent, buf, advantages, returns = make_case(script, loss_type, {})
        torch.manual_seed(7)
        module.ppo_update(agent, module.make_optimizer(agent, args), buf, advantages, returns, args)
        actors.append(torch.cat([p.detach().reshape(-1) for n, p in agent.named_parameters() if "critic" not in n]))
    for i, j in [(0, 1), (0, 2), (1, 2)]:
        assert not torch.allclose(actors[i], actors[j], rtol=1e-6, atol=1e-9), (i, j)
