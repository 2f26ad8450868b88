"""The policy objectives besides the clipped surrogate, in ppo.py and ppo_continuous_action.py alike:
PPO-Penalty (--loss-type kl-penalty) with its adaptive beta, the unclipped surrogate (--loss-type pg),
the annealed clipping coefficient (--anneal-clip), target-KL early stopping made visible in the log, and
the global gradient clipping that every update applies. The maths on hand-computed numbers, then tiny
real runs (including a resume that continues beta)."""

import importlib
import math
import os
import shutil

import numpy as np
import pytest
import torch
from conftest import read_scalars, run_script
from test_checkpoints import checkpoint_of, interrupt_at_update, resume, tiny_args

import ppo_run

SCRIPTS = ["ppo", "ppo_continuous_action", "ppo_atari"]  # the runs; the loss functions on the Atari copies too
ALL = [*SCRIPTS, "ppo_atari_ale_vector", "ppo_atari_multigpu"]


def values(scalars: dict, tag: str) -> list[float]:
    return [value for _, value in scalars[tag]]


@pytest.mark.parametrize("script", ALL)
def test_adapt_kl_beta_halves_below_the_band_doubles_above_it_and_keeps_it_within(script):
    adapt = importlib.import_module(script).adapt_kl_beta
    target = 0.01  # the band is [target / 1.5, target * 1.5] = [0.00667, 0.015]
    assert adapt(1.0, 0.001, target) == 0.5
    assert adapt(0.5, 0.0, target) == 0.25
    assert adapt(1.0, 0.02, target) == 2.0
    assert adapt(4.0, 1.0, target) == 8.0
    assert adapt(0.25, 0.01, target) == 0.25
    # the band's edges keep beta (the paper's inequalities are strict); just outside them it moves
    assert adapt(1.0, target / 1.5, target) == 1.0
    assert adapt(1.0, target * 1.5, target) == 1.0
    assert adapt(1.0, target / 1.5 * (1 - 1e-9), target) == 0.5
    assert adapt(1.0, target * 1.5 * (1 + 1e-9), target) == 2.0


@pytest.mark.parametrize("script", ALL)
def test_pg_loss_is_unclipped_its_gradient_minus_advantage_over_n_where_clip_gives_none(script):
    module = importlib.import_module(script)
    advantages = torch.tensor([1.0, -1.0, 2.0, -0.5])
    # ratios far outside [0.8, 1.2]: the clipped surrogate gives the first two no gradient
    ratio = torch.tensor([3.0, 0.1, 1.0, 5.0], requires_grad=True)
    loss = module.surrogate_loss(advantages, ratio)
    assert loss.item() == pytest.approx(-(3.0 + 0.1 * -1.0 + 2.0 + 5.0 * -0.5) / 4)
    loss.backward()
    np.testing.assert_allclose(ratio.grad.numpy(), -advantages.numpy() / 4, rtol=1e-6)

    clipped_ratio = ratio.detach().clone().requires_grad_()
    module.clipped_policy_loss(advantages, clipped_ratio, clip_coef=0.2).backward()
    # (the pessimistic bound clips ratio 3 with a positive advantage and 0.1 with a negative one)
    np.testing.assert_allclose(clipped_ratio.grad.numpy(), [0.0, 0.0, -2.0 / 4, 0.5 / 4], atol=1e-7)


@pytest.mark.parametrize("script", SCRIPTS[:2])  # (a vector agent)
def test_pg_loss_at_ratio_one_has_the_plain_policy_gradient(script):
    # one epoch of one minibatch: the only step is at ratio 1, where the gradient of -(ratio * A).mean()
    # is that of -(log pi * A).mean()
    module = importlib.import_module(script)
    torch.manual_seed(0)
    agent = module.Agent(4, 2)
    actor = [p for name, p in agent.named_parameters() if not name.startswith("critic.")]
    obs, advantages = torch.randn(16, 4), torch.randn(16)
    actions = torch.randint(0, 2, (16,)) if script == "ppo" else torch.randn(16, 2)
    logprob = agent.evaluate(obs, actions)[0]
    pg = torch.autograd.grad(module.surrogate_loss(advantages, (logprob - logprob.detach()).exp()), actor)
    plain = torch.autograd.grad(-(advantages * agent.evaluate(obs, actions)[0]).mean(), actor)
    for a, b in zip(pg, plain):
        assert b.abs().sum() > 0
        torch.testing.assert_close(a, b)


@pytest.mark.parametrize("script", ALL)
def test_kl_penalty_loss_is_the_surrogate_plus_beta_times_the_kl_estimate(script):
    module = importlib.import_module(script)
    advantages = torch.tensor([1.0, -1.0, 2.0])
    r = np.array([1.5, 0.5, 1.0])
    logratio = torch.log(torch.tensor(r, dtype=torch.float32)).requires_grad_()
    ratio = logratio.exp()
    loss = module.kl_penalty_loss(advantages, ratio, logratio, beta=2.0)
    surrogate = -(1.5 - 0.5 + 2.0) / 3
    kl = ((0.5 - math.log(1.5)) + (-0.5 - math.log(0.5)) + 0.0) / 3  # mean of (r - 1) - log r
    assert loss.item() == pytest.approx(surrogate + 2.0 * kl, rel=1e-6)
    assert module.kl_penalty_loss(advantages, ratio, logratio, beta=0.0).item() == pytest.approx(surrogate)
    loss.backward()
    # d/d log r of each sample's term: (-A r + beta (r - 1)) / n
    np.testing.assert_allclose(logratio.grad.numpy(), (-advantages.numpy() * r + 2.0 * (r - 1)) / 3, rtol=1e-5)


@pytest.mark.parametrize("script", SCRIPTS)
def test_a_kl_penalty_run_adapts_beta_by_the_rule_and_a_resumed_run_continues_it(in_tmp, script, monkeypatch):
    # a target this small has these tiny runs' beta both doubled and halved
    module, args = tiny_args(script, loss_type="kl-penalty", kl_target=5e-5, checkpoint_every=0)
    adapt = module.adapt_kl_beta
    update = interrupt_at_update(monkeypatch, module, 3)
    with pytest.raises(ppo_run.Interrupted):
        module.train(args)
    monkeypatch.setattr(module, "ppo_update", update)
    (run_dir,) = [os.path.join("runs", d) for d in os.listdir("runs")]
    checkpoint = torch.load(checkpoint_of(run_dir), weights_only=True)
    assert checkpoint["iteration"] == 3
    scalars = read_scalars(run_dir)
    betas, kls = values(scalars, "losses/kl_beta"), values(scalars, "losses/epoch_kl")
    assert len(betas) == 3 and betas[0] == args.kl_beta
    # the checkpoint holds the beta for the 4th update: the 3rd's, adapted to the KL it reached
    assert checkpoint["kl_beta"] == adapt(betas[2], kls[2], args.kl_target) != args.kl_beta
    # an older checkpoint, without kl_beta: a copy of the run resumes at args.kl_beta
    shutil.copytree(run_dir, "legacy")
    del checkpoint["kl_beta"]
    torch.save(checkpoint, checkpoint_of("legacy"))

    module.train(*resume(module, run_dir))
    scalars = read_scalars(run_dir)
    betas, kls = values(scalars, "losses/kl_beta"), values(scalars, "losses/epoch_kl")
    assert len(betas) == args.num_iterations  # every iteration logs beta, and the run finishes
    for i in range(len(betas) - 1):  # one chain of the rule, unbroken by the resume
        assert betas[i + 1] == adapt(betas[i], kls[i], args.kl_target), (i, betas, kls)
    assert {2.0, 0.5} <= {b / a for a, b in zip(betas, betas[1:])}, betas
    assert torch.load(checkpoint_of(run_dir), weights_only=True)["kl_beta"] == adapt(betas[-1], kls[-1], args.kl_target)
    # the target-KL early stopping is off: every update ran all its epochs; no annealed clip is logged
    assert values(scalars, "losses/update_epochs") == [args.update_epochs] * args.num_iterations
    assert "charts/clip_coef" not in scalars

    module.train(*resume(module, "legacy"))
    assert values(read_scalars("legacy"), "losses/kl_beta")[3] == args.kl_beta


@pytest.mark.parametrize("script", SCRIPTS)
def test_a_pg_run_of_one_epoch_of_one_minibatch_steps_at_ratio_one(in_tmp, script):
    module, args = tiny_args(script, loss_type="pg", update_epochs=1, num_minibatches=1)
    scalars = read_scalars(module.train(args))
    assert len(scalars["losses/policy_loss"]) == args.num_iterations
    # the log-ratios are those before the step: the rollout's log-probabilities, up to float rounding
    assert max(abs(kl) for kl in values(scalars, "losses/old_approx_kl")) < 1e-5
    assert values(scalars, "losses/clipfrac") == [0.0] * args.num_iterations
    assert "losses/kl_beta" not in scalars


@pytest.mark.parametrize("script", SCRIPTS)
def test_anneal_clip_scales_the_surrogate_and_value_clipping_as_the_learning_rate(in_tmp, script, monkeypatch):
    module, args = tiny_args(script, anneal_clip=True)
    seen = {"policy": [], "value": []}
    clipped_policy_loss, value_loss = module.clipped_policy_loss, module.value_loss

    def spy_policy(advantages, ratio, clip_coef):
        seen["policy"].append(clip_coef)
        return clipped_policy_loss(advantages, ratio, clip_coef)

    def spy_value(new_values, returns, old_values, clip_coef, clip):
        seen["value"].append(clip_coef)
        return value_loss(new_values, returns, old_values, clip_coef, clip)

    monkeypatch.setattr(module, "clipped_policy_loss", spy_policy)
    monkeypatch.setattr(module, "value_loss", spy_value)
    scalars = read_scalars(module.train(args))
    n = args.num_iterations
    expected = [args.clip_coef * (1 - i / n) for i in range(n)]  # e.g. 0.2 * (1 - 2 / n) at the 3rd iteration
    assert values(scalars, "charts/clip_coef") == pytest.approx(expected)
    lr_fractions = [lr / args.learning_rate for lr in values(scalars, "charts/learning_rate")]
    assert [c / args.clip_coef for c in values(scalars, "charts/clip_coef")] == pytest.approx(lr_fractions)
    per_update = args.update_epochs * args.num_minibatches
    assert seen["policy"] == seen["value"] == [c for c in expected for _ in range(per_update)]


@pytest.mark.parametrize("script", SCRIPTS)
def test_target_kl_early_stopping_is_logged_as_the_epochs_done(in_tmp, script):
    # a high learning rate moves the policy far in one epoch, past a small target KL
    module, args = tiny_args(script, update_epochs=4, learning_rate=0.01, target_kl=1e-4)
    scalars = read_scalars(module.train(args))
    epochs, kls = values(scalars, "losses/update_epochs"), values(scalars, "losses/approx_kl")
    assert len(epochs) == args.num_iterations and min(epochs) < args.update_epochs, epochs
    for done, kl in zip(epochs, kls):
        assert 1 <= done <= args.update_epochs and done == int(done)
        if done < args.update_epochs:  # stopped early: the last epoch's KL passed the target
            assert kl > args.target_kl


@pytest.mark.parametrize("script", ALL)
@pytest.mark.parametrize("name, value", [("kl_beta", 0.0), ("kl_target", -0.01), ("kl_beta", float("nan"))])
def test_kl_beta_and_kl_target_must_be_positive(script, name, value):
    module = importlib.import_module(script)
    with pytest.raises(module.UsageError, match=f"^--{name.replace('_', '-')} must be positive, got {value}$"):
        ppo_run.check_args(module, module.Args(**{name: value}))


@pytest.mark.parametrize("script", SCRIPTS)
def test_the_cli_shows_the_new_flags_and_refuses_a_bad_beta_in_one_line(tmp_path, script):
    result = run_script(f"{script}.py", "--help", cwd=str(tmp_path))
    assert result.returncode == 0, result.stderr
    for text in ["--loss-type", "kl-penalty", "--kl-beta", "--kl-target", "--anneal-clip", "PPO-Penalty"]:
        assert text in result.stdout, text
    result = run_script(f"{script}.py", "--kl-beta", "0", cwd=str(tmp_path))
    assert result.returncode == 2
    assert result.stderr.strip().splitlines() == [f"{script}.py: error: --kl-beta must be positive, got 0.0"]
    assert not os.path.exists(tmp_path / "runs")
