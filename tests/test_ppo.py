"""Tests of ppo.py: the maths on hand-computed numbers, episode boundaries on a real vector env,
determinism, logging, bad input, and one short learning run."""

import os

import gymnasium as gym
import numpy as np
import pytest
import torch
from conftest import TAGS, read_scalars, read_text, run_script

import ppo
import ppo_run


def test_gae_hand_computed_with_termination_and_truncation():
    # one env, four steps: terminated after step 1, truncated after step 2 (V(final obs) = 2.0)
    rewards = np.array([[1.0], [1.0], [1.0], [1.0]], np.float32)
    values = np.array([[0.5], [0.4], [0.3], [0.2]], np.float32)
    terminations = np.array([[0.0], [1.0], [0.0], [0.0]], np.float32)
    truncations = np.array([[0.0], [0.0], [1.0], [0.0]], np.float32)
    truncation_values = np.array([[0.0], [0.0], [2.0], [0.0]], np.float32)
    next_value = np.array([1.0], np.float32)
    gamma, lam = 0.9, 0.5
    adv, ret = ppo.compute_gae(rewards, values, next_value, terminations, truncations, truncation_values, gamma, lam)
    # deltas: 1 + .9*.4 - .5 = .86 | 1 - .4 = .6 | 1 + .9*2 - .3 = 2.5 | 1 + .9*1 - .2 = 1.7
    # advantages: .86 + .45*.6 = 1.13 | .6 (episode ends) | 2.5 (episode ends) | 1.7
    np.testing.assert_allclose(adv[:, 0], [1.13, 0.6, 2.5, 1.7], rtol=1e-6)
    np.testing.assert_allclose(ret[:, 0], [1.63, 1.0, 2.8, 1.9], rtol=1e-6)

    # without truncation bootstrapping the time limit counts as a death: step 2's delta is 1 - .3
    adv, _ = ppo.compute_gae(
        rewards, values, next_value, np.maximum(terminations, truncations), truncations, truncation_values, gamma, lam
    )
    np.testing.assert_allclose(adv[:, 0], [1.13, 0.6, 0.7, 1.7], rtol=1e-6)


def test_gae_equals_discounted_td_sum_without_episode_ends():
    rng = np.random.default_rng(0)
    rewards, values = rng.normal(size=(5, 3)).astype(np.float32), rng.normal(size=(5, 3)).astype(np.float32)
    next_value = rng.normal(size=3).astype(np.float32)
    zeros = np.zeros_like(rewards)
    adv, _ = ppo.compute_gae(rewards, values, next_value, zeros, zeros, zeros, 0.99, 0.95)
    next_values = np.concatenate([values[1:], next_value[None]])
    deltas = rewards + 0.99 * next_values - values
    expected = [sum((0.99 * 0.95) ** (k - t) * deltas[k] for k in range(t, 5)) for t in range(5)]
    np.testing.assert_allclose(adv, np.array(expected), rtol=1e-5)


def test_clipped_policy_loss_on_known_numbers():
    advantages = torch.tensor([1.0, -1.0, 2.0])
    ratio = torch.tensor([1.5, 0.5, 0.9], requires_grad=True)
    loss = ppo.clipped_policy_loss(advantages, ratio, clip_coef=0.2)
    # per sample: max(-1.5, -1.2) = -1.2 | max(.5, .8) = .8 | max(-1.8, -1.8) = -1.8
    assert loss.item() == pytest.approx((-1.2 + 0.8 - 1.8) / 3)
    loss.backward()
    # clipped samples give no gradient; the unclipped one gives -advantage / n
    np.testing.assert_allclose(ratio.grad.numpy(), [0.0, 0.0, -2.0 / 3], atol=1e-7)


def test_value_loss_clipped_and_unclipped():
    new, returns, old = torch.tensor([1.0, 3.0]), torch.tensor([2.0, 2.0]), torch.tensor([0.5, 2.5])
    # clipped values: .5 + .2 = .7 and 2.5 + .2 = 2.7; max((1-2)^2, (.7-2)^2) = 1.69, max(1, .49) = 1
    assert ppo.value_loss(new, returns, old, 0.2, clip=True).item() == pytest.approx(0.5 * (1.69 + 1.0) / 2)
    assert ppo.value_loss(new, returns, old, 0.2, clip=False).item() == pytest.approx(0.5 * (1.0 + 1.0) / 2)


@pytest.mark.parametrize(
    "net, index, gain", [("actor", 0, 2**0.5), ("actor", 2, 2**0.5), ("actor", 4, 0.01), ("critic", 4, 1.0)]
)
def test_orthogonal_init_gains(net, index, gain):
    torch.manual_seed(0)
    layer = getattr(ppo.Agent(4, 2), net)[index]
    w = layer.weight.detach().double()
    gram = w @ w.T if w.shape[0] <= w.shape[1] else w.T @ w  # (scaled) identity for an orthogonal matrix
    np.testing.assert_allclose(gram.numpy(), gain**2 * np.eye(min(w.shape)), atol=1e-6 * max(1, gain**2))
    assert torch.all(layer.bias == 0)


def test_rollout_policy_matches_the_torch_network():
    torch.manual_seed(0)
    agent = ppo.Agent(4, 3)
    for p in agent.parameters():  # move off the init so that the actions' probabilities differ
        p.data.normal_(0, 0.5)
    policy = ppo.RolloutPolicy(agent, seed=0)
    obs = np.random.default_rng(0).normal(size=(8, 4)).astype(np.float32)
    action, logprob = policy.act(obs)
    value = policy.value(obs)
    t_logprob, _, t_value = agent.evaluate(torch.from_numpy(obs), torch.from_numpy(action))
    np.testing.assert_allclose(logprob, t_logprob.detach().numpy(), rtol=1e-5, atol=1e-5)
    np.testing.assert_allclose(value, t_value.detach().numpy(), rtol=1e-5, atol=1e-5)
    # the numpy weights are views: an in-place update of the torch parameters is seen at once
    with torch.no_grad():
        agent.critic[4].bias += 1.0
    np.testing.assert_allclose(policy.value(obs), value + 1.0, rtol=1e-5, atol=1e-5)


def test_rollout_policy_samples_the_softmax_distribution():
    agent = ppo.Agent(1, 3)
    with torch.no_grad():
        for p in agent.actor.parameters():
            p.zero_()
        agent.actor[4].bias.copy_(torch.tensor([0.0, 1.0, 2.0]))  # logits independent of the observation
    policy = ppo.RolloutPolicy(agent, seed=0)
    actions, logprobs = policy.act(np.zeros((20000, 1), np.float32))
    probs = torch.softmax(torch.tensor([0.0, 1.0, 2.0]), 0).numpy()
    np.testing.assert_allclose(np.bincount(actions, minlength=3) / len(actions), probs, atol=0.01)
    np.testing.assert_allclose(logprobs, np.log(probs[actions]), rtol=1e-5)


def test_transitions_at_episode_boundaries_on_a_real_vector_env():
    # real CartPole with a 15-step time limit, so that the rollout holds terminations and truncations
    gym.register("CartPoleLimit15-v1", entry_point="gymnasium.envs.classic_control:CartPoleEnv", max_episode_steps=15)
    envs = ppo.make_envs("CartPoleLimit15-v1", 2)
    torch.manual_seed(0)
    policy = ppo.RolloutPolicy(ppo.Agent(4, 2), seed=0)
    buf = ppo.RolloutBuffer(64, 2, (4,))
    obs, _ = envs.reset(seed=0)
    next_obs, episodes = ppo.collect_rollout(policy, envs, obs, buf)
    envs.close()

    # every stored transition is a real CartPole step (reward 1); an autoreset row would have reward 0
    assert np.all(buf.rewards == 1.0)
    ends = np.maximum(buf.terminations, buf.truncations)
    assert buf.terminations.sum() > 0 and buf.truncations.sum() > 0
    assert not np.any(buf.terminations * buf.truncations)
    # the reported episodes are exactly the stored stretches between episode ends: no row is missing or extra
    for env in range(2):
        end_steps = np.flatnonzero(ends[:, env])
        lengths = np.diff(np.concatenate([[-1], end_steps]))
        reported = [(step, length) for step, i, _, length in episodes if i == env]
        assert reported == list(zip(end_steps, lengths))  # the rollout starts at a reset
    for step, env in zip(*np.nonzero(buf.truncations)):
        # truncated episodes are exactly 15 steps long, and the value of their true last observation is kept
        assert [length for s, i, _, length in episodes if (s, i) == (step, env)] == [15]
        assert buf.truncation_values[step, env] != 0.0
        # the row after the cut starts a new episode (CartPole resets every state variable within +-0.05) ...
        following = buf.obs[step + 1, env] if step + 1 < 64 else next_obs[env]
        assert np.all(np.abs(following) <= 0.05)
        # ... and its value is not what was bootstrapped
        assert policy.value(following[None])[0] != pytest.approx(buf.truncation_values[step, env])
    # no truncation value where nothing was truncated
    assert np.all(buf.truncation_values[buf.truncations == 0] == 0.0)
    # the values stored (computed in one batch after the rollout) are those of the stored observations
    np.testing.assert_allclose(buf.values, policy.value(buf.obs.reshape(-1, 4)).reshape(64, 2), rtol=1e-6)


def test_truncation_bootstrap_uses_the_final_observation_value():
    # the value stored for a truncation is V of the true final observation that gymnasium reports
    gym.register("CartPoleLimit5-v1", entry_point="gymnasium.envs.classic_control:CartPoleEnv", max_episode_steps=5)
    envs = ppo.make_envs("CartPoleLimit5-v1", 1)
    policy = ppo.RolloutPolicy(ppo.Agent(4, 2), seed=0)
    obs, _ = envs.reset(seed=3)
    for step in range(5):
        _, _, terminated, truncated, infos = envs.step(np.array([step % 2]))
    assert truncated[0] and not terminated[0]
    final_obs = infos["final_obs"][0]
    envs.reset(seed=3)
    buf = ppo.RolloutBuffer(5, 1, (4,))
    # replay the same actions through collect_rollout by fixing the policy's choice
    replayed = iter(range(5))
    policy.act = lambda o: (np.array([next(replayed) % 2]), np.zeros(1))
    ppo.collect_rollout(policy, envs, obs, buf)
    assert buf.truncations[4, 0] == 1.0
    assert buf.truncation_values[4, 0] == pytest.approx(policy.value(final_obs[None])[0])


def short_run(**overrides) -> str:
    args = ppo.Args(**{"total_timesteps": 2048, "num_steps": 64, "progress": False, **overrides})
    ppo_run.check_args(ppo, args)
    return ppo.train(args)


def test_short_run_writes_every_tag_and_is_deterministic(in_tmp):
    first = read_scalars(short_run())
    assert set(TAGS) <= set(first)
    assert "|env_id|CartPole-v1|" in read_text(os.path.join("runs", os.listdir("runs")[0]), "hyperparameters")
    second = read_scalars(short_run(exp_name="again"))
    for tag in first:
        if tag != "charts/SPS":  # wall-clock speed is the one thing allowed to differ
            assert first[tag] == second[tag], tag
    third = read_scalars(short_run(seed=2, exp_name="other_seed"))
    assert first["losses/value_loss"] != third["losses/value_loss"]


@pytest.mark.parametrize(
    "args, message",
    [
        (["--env-id", "CartPole-v9"], "unknown environment id 'CartPole-v9'; did you mean CartPole-v1"),
        (["--env-id", "Pendulum-v1"], "continuous actions; use ppo_continuous_action.py"),
        (["--env-id", "BreakoutNoFrameskip-v4"], "image observations (210, 160, 3); use ppo_atari.py"),
        (["--num-minibatches", "3"], "does not split into --num-minibatches 3"),
        (["--num-envs", "0"], "--num-envs must be positive"),
        (["--total-timesteps", "-5"], "--total-timesteps must be positive"),
        (["--total-timesteps", "100"], "less than one batch"),
    ],
)
def test_bad_input_is_one_line_exit_2_and_no_run_directory(tmp_path, args, message):
    result = run_script("ppo.py", *args, cwd=str(tmp_path))
    assert result.returncode == 2
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and message in lines[0], result.stderr
    assert "Traceback" not in result.stderr
    assert not os.path.exists(tmp_path / "runs")


@pytest.mark.parametrize("env_id", ["Acrobot-v1", "MountainCar-v0"])
def test_runs_on_other_classic_control_envs(in_tmp, env_id):
    scalars = read_scalars(short_run(env_id=env_id, total_timesteps=1024))
    assert len(scalars["losses/value_loss"]) == 4


def test_learns_cartpole(in_tmp):
    # at the default settings but 100k steps (about 20 s here), the recent returns pass 195
    args = ppo.Args(total_timesteps=100_000, progress=False)
    ppo_run.check_args(ppo, args)
    returns = [value for _, value in read_scalars(ppo.train(args))["charts/episodic_return"]]
    assert np.mean(returns[-20:]) >= 195, returns[-20:]


def test_a_loaded_state_lands_where_the_optimizer_and_the_numpy_rollout_policy_see_it():
    agent = ppo.Agent(4, 2)
    # a state loaded later (as a resumed run does) is copied into the parameters in place, so the optimizer
    # and the rollout's numpy policy (views of them) see it
    policy, optimizer = ppo.RolloutPolicy(agent, seed=0), ppo.make_optimizer(agent, ppo.Args())
    other = ppo.Agent(4, 2)
    agent.load_state_dict(other.state_dict())
    assert [p for group in optimizer.param_groups for p in group["params"]] == list(agent.parameters())
    assert all(torch.equal(a, b) for a, b in zip(agent.parameters(), other.parameters()))
    obs = np.ones((2, 4), np.float32)
    np.testing.assert_array_equal(policy.value(obs), ppo.RolloutPolicy(other, seed=0).value(obs))


def test_a_saved_and_loaded_agent_acts_and_values_alike(tmp_path):
    torch.manual_seed(0)
    agent = ppo.Agent(4, 2)
    with torch.no_grad():  # move off the init so that the two actions' probabilities differ
        for p in agent.parameters():
            p.normal_(0, 0.5)
    args = ppo.Args()
    optimizer = torch.optim.Adam(agent.parameters(), lr=1e-3)
    ppo_run.save_checkpoint(
        str(tmp_path / "ppo.cleanrl_model"), agent, optimizer, args, 0, 0, policy_rng=ppo.RolloutPolicy(agent, 0).rng
    )
    path, checkpoint = ppo_run.load_checkpoint(str(tmp_path))  # (a run directory names its one checkpoint)
    assert path == str(tmp_path / "ppo.cleanrl_model")
    loaded = ppo_run.load_agent(ppo, checkpoint)
    obs = torch.from_numpy(np.random.default_rng(0).normal(size=(64, 4)).astype(np.float32))
    with torch.no_grad():
        assert torch.equal(loaded.get_value(obs), agent.get_value(obs))
        assert torch.equal(loaded.action(obs, True), agent.action(obs, True))
        torch.manual_seed(7)
        sample = agent.action(obs, False)
        torch.manual_seed(7)
        assert torch.equal(loaded.action(obs, False), sample)
    assert not torch.equal(sample, agent.action(obs, True))  # sampled, not all the most likely action
