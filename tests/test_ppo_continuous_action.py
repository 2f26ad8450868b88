"""Tests of ppo_continuous_action.py: the Gaussian policy against torch.distributions, action
clipping, the normalization statistics (updated, frozen, saved and loaded), reward scaling on
hand-made rewards, truncation bootstrapping on a real MuJoCo env, determinism, logging, bad input,
the options, and one short learning run."""

import copy
import glob
import os

import gymnasium as gym
import numpy as np
import pytest
import torch
from conftest import TAGS, read_scalars, read_text, run_script
from torch.distributions import Normal

import ppo_continuous_action as ppo
import ppo_run

gym.register(
    "InvertedPendulumLimit5-v4",
    entry_point="gymnasium.envs.mujoco.inverted_pendulum_v4:InvertedPendulumEnv",
    max_episode_steps=5,
)


def perturbed_agent(obs_dim: int, action_dim: int, seed: int = 0, **kwargs) -> ppo.Agent:
    """An agent moved off its initialization, so that means, stds and values differ per input."""
    torch.manual_seed(seed)
    agent = ppo.Agent(obs_dim, action_dim, **kwargs)
    with torch.no_grad():
        for p in agent.parameters():
            p.normal_(0, 0.5)
    return agent


def normal(agent: ppo.Agent, obs: torch.Tensor) -> Normal:
    return Normal(agent.action_mean(obs), agent.actor_logstd.exp().expand(len(obs), -1))


@pytest.mark.parametrize("kwargs", [{}, {"fixed_std": 0.3, "tanh_mean": True}])
def test_log_prob_and_entropy_match_torch_normal_summed_over_dimensions(kwargs):
    agent = perturbed_agent(5, 3, **kwargs)
    rng = np.random.default_rng(0)
    obs = torch.from_numpy(rng.normal(size=(16, 5)).astype(np.float32))
    actions = torch.from_numpy(rng.normal(size=(16, 3)).astype(np.float32) * 2)
    logprob, entropy, value = agent.evaluate(obs, actions)
    dist = normal(agent, obs)
    torch.testing.assert_close(logprob, dist.log_prob(actions).sum(-1))
    torch.testing.assert_close(entropy, dist.entropy().sum(-1))
    torch.testing.assert_close(value, agent.critic(obs)[:, 0])
    # the gradient reaches a learned log-std; a fixed one is a constant, no parameter
    logprob.sum().backward()
    if "fixed_std" in kwargs:
        assert "actor_logstd" not in dict(agent.named_parameters())
    else:
        assert agent.actor_logstd.grad.abs().sum() > 0


def test_gae_hand_computed_with_termination_and_truncation():
    # one env, four steps: terminated after step 1, truncated after step 2 (V(final obs) = 2.0)
    rewards = np.array([[1.0], [1.0], [1.0], [1.0]], np.float32)
    values = np.array([[0.5], [0.4], [0.3], [0.2]], np.float32)
    terminations = np.array([[0.0], [1.0], [0.0], [0.0]], np.float32)
    truncations = np.array([[0.0], [0.0], [1.0], [0.0]], np.float32)
    truncation_values = np.array([[0.0], [0.0], [2.0], [0.0]], np.float32)
    adv, ret = ppo.compute_gae(
        rewards, values, np.array([1.0], np.float32), terminations, truncations, truncation_values, 0.9, 0.5
    )
    # deltas: 1 + .9*.4 - .5 = .86 | 1 - .4 = .6 | 1 + .9*2 - .3 = 2.5 | 1 + .9*1 - .2 = 1.7
    np.testing.assert_allclose(adv[:, 0], [0.86 + 0.45 * 0.6, 0.6, 2.5, 1.7], rtol=1e-6)
    np.testing.assert_allclose(ret[:, 0], adv[:, 0] + values[:, 0], rtol=1e-6)


def test_rollout_policy_matches_the_torch_network():
    agent = perturbed_agent(5, 3)
    policy = ppo.RolloutPolicy(agent, seed=0)
    obs = np.random.default_rng(0).normal(size=(8, 5)).astype(np.float32)
    (action, logprob), value = policy.act(obs), policy.value(obs)
    t_obs, t_action = torch.from_numpy(obs), torch.from_numpy(action)
    with torch.no_grad():
        np.testing.assert_allclose(logprob, normal(agent, t_obs).log_prob(t_action).sum(-1), rtol=1e-5, atol=1e-5)
        np.testing.assert_allclose(value, agent.get_value(t_obs), rtol=1e-5, atol=1e-5)
        # the numpy weights and log-std are views: in-place updates of the torch tensors are seen at once
        agent.critic[4].bias += 1.0
        agent.actor_logstd += 0.5
        np.testing.assert_allclose(policy.value(obs), value + 1.0, rtol=1e-5, atol=1e-5)
        action, logprob = policy.act(obs)
        expected = normal(agent, t_obs).log_prob(torch.from_numpy(action)).sum(-1)
        np.testing.assert_allclose(logprob, expected, rtol=1e-5, atol=1e-5)


def test_rollout_policy_samples_the_gaussian():
    agent = ppo.Agent(1, 2)
    with torch.no_grad():
        for p in agent.actor_mean.parameters():
            p.zero_()
        agent.actor_mean[4].bias.copy_(torch.tensor([1.0, -2.0]))  # a mean independent of the observation
        agent.actor_logstd.copy_(torch.log(torch.tensor([[0.5, 2.0]])))
    policy = ppo.RolloutPolicy(agent, seed=0)
    actions, logprobs = policy.act(np.zeros((20000, 1), np.float32))
    np.testing.assert_allclose(actions.mean(0), [1.0, -2.0], atol=0.05)
    np.testing.assert_allclose(actions.std(0), [0.5, 2.0], rtol=0.03)
    expected = Normal(torch.tensor([1.0, -2.0]), torch.tensor([0.5, 2.0])).log_prob(torch.from_numpy(actions)).sum(-1)
    np.testing.assert_allclose(logprobs, expected.numpy(), rtol=1e-4, atol=1e-4)


def spy_on_step(envs):
    """Record the action each envs.step receives, and the observation and infos it returns."""
    calls = []
    step = envs.step

    def spy(action):
        result = step(action)
        calls.append((action.copy(), result[0].copy(), result[4]))  # (copy=False: the env reuses its arrays)
        return result

    envs.step = spy
    return calls


def test_stored_action_is_unclipped_and_the_env_gets_it_clipped():
    envs = ppo.make_envs("Reacher-v5", 1)  # two actions, each within [-1, 1]
    agent = ppo.Agent(envs.single_observation_space.shape[0], 2)
    with torch.no_grad():
        agent.actor_mean[4].bias.copy_(torch.tensor([5.0, -5.0]))  # means far outside the bounds
    policy = ppo.RolloutPolicy(agent, seed=0)
    scaler = ppo.RewardScaler(agent.return_rms, 1, 0.99)
    buf = ppo.RolloutBuffer(16, 1, envs.single_observation_space.shape, (2,))
    sent, mujoco = [], envs.envs[0].unwrapped  # what the MuJoCo env itself gets, under make_env's wrappers
    mujoco_step = mujoco.step
    mujoco.step = lambda action: sent.append(np.array(action)) or mujoco_step(action)
    obs = agent.normalize_obs(envs.reset(seed=0)[0], update=True)
    ppo.collect_rollout(policy, agent, envs, obs, buf, scaler)
    envs.close()

    sent, stored = np.stack(sent), buf.actions[:, 0]
    assert sent.shape == stored.shape
    assert np.all(stored[:, 0] > 1.0) and np.all(stored[:, 1] < -1.0)  # (5 or -5, give or take a std of 1)
    np.testing.assert_array_equal(sent, np.broadcast_to([1.0, -1.0], sent.shape))
    # the stored log-probability is that of the unclipped action
    with torch.no_grad():
        expected = normal(agent, torch.from_numpy(buf.obs[:, 0])).log_prob(torch.from_numpy(stored)).sum(-1)
    np.testing.assert_allclose(buf.logprobs[:, 0], expected.numpy(), rtol=1e-5, atol=1e-5)


def test_observation_statistics_update_in_rollouts_freeze_and_survive_save_and_load(tmp_path):
    envs = ppo.make_envs("InvertedDoublePendulum-v5", 2)
    agent = perturbed_agent(9, 1)
    policy = ppo.RolloutPolicy(agent, seed=0)
    scaler = ppo.RewardScaler(agent.return_rms, 2, 0.99)
    buf = ppo.RolloutBuffer(64, 2, (9,), (1,))
    calls = spy_on_step(envs)
    raw, _ = envs.reset(seed=0)
    seen = [raw.copy()]
    obs = agent.normalize_obs(raw, update=True)
    next_obs, _ = ppo.collect_rollout(policy, agent, envs, obs, buf, scaler)
    envs.close()
    seen += [raw for _, raw, _ in calls]

    # the statistics are those of every observation the policy saw: the reset one and each step's
    seen = np.concatenate(seen)
    assert agent.obs_rms.count.item() == pytest.approx(len(seen) + 1e-4)
    np.testing.assert_allclose(agent.obs_rms.mean.numpy(), seen.mean(0), rtol=1e-3, atol=1e-6)
    np.testing.assert_allclose(agent.obs_rms.var.numpy(), seen.var(0), rtol=1e-3, atol=1e-6)
    # the last observation was normalized (and clipped to [-10, 10]) with the final statistics
    expected = np.clip((seen[-2:] - seen.mean(0)) / np.sqrt(seen.var(0) + 1e-8), -10, 10)
    np.testing.assert_allclose(next_obs, expected, rtol=1e-3, atol=1e-3)
    assert np.all(np.abs(buf.obs) <= 10.0) and np.abs(buf.obs).max() > 1.0
    assert agent.return_rms.count.item() == pytest.approx(64 * 2 + 1e-4)  # one discounted return per env and step
    with torch.no_grad():  # the values stored are the critic's, of the normalized observations
        np.testing.assert_allclose(buf.values, agent.get_value(torch.from_numpy(buf.obs)), rtol=1e-5, atol=1e-5)

    # frozen: normalizing leaves the statistics as they are
    before = {k: v.clone() for k, v in agent.state_dict().items()}
    frozen = agent.normalize_obs(seen[:5] * 3.0, update=False)
    outliers = agent.normalize_obs(seen[:1] + np.where(np.arange(9) % 2, 1e3, -1e3), update=False)
    for key, value in agent.state_dict().items():
        assert torch.equal(value, before[key]), key
    np.testing.assert_array_equal(outliers, np.where(np.arange(9) % 2, 10.0, -10.0)[None])  # clipped to [-10, 10]

    # saved with the weights, restored by load_state_dict, also into an agent whose policy already exists
    path = tmp_path / "agent.pt"
    torch.save(agent.state_dict(), path)
    state = torch.load(path, weights_only=True)
    assert {"obs_rms.mean", "obs_rms.var", "obs_rms.count", "return_rms.var"} <= set(state)
    restored = ppo.Agent(9, 1)
    restored_policy = ppo.RolloutPolicy(restored, seed=0)
    restored.load_state_dict(state)
    for key, value in restored.state_dict().items():
        assert torch.equal(value, before[key]), key
    np.testing.assert_array_equal(restored.normalize_obs(seen[:5] * 3.0, update=False), frozen)
    np.testing.assert_array_equal(restored_policy.value(frozen), policy.value(frozen))


def test_reward_scaling_divides_by_the_running_std_of_the_discounted_return():
    gamma, steps = 0.9, 160
    rewards = np.random.default_rng(0).normal(1.0, 2.0, size=(steps, 2))
    rewards[150, 1] = 500.0  # far out: scaled beyond 10, so clipped
    ended = np.zeros((steps, 2), bool)
    ended[[7, 19, 80], 0] = True
    ended[[12, 100], 1] = True
    scaler = ppo.RewardScaler(ppo.RunningMeanStd(), 2, gamma)
    scaled = np.array([scaler(rewards[t], ended[t]) for t in range(steps)])

    # straightforwardly: the discounted return of each env, restarted after each episode end ...
    returns, ret = np.zeros((steps, 2)), np.zeros(2)
    for t in range(steps):
        ret = gamma * ret + rewards[t]
        returns[t] = ret
        ret = np.where(ended[t], 0.0, ret)
    expected = np.zeros((steps, 2))
    for t in range(steps):
        # ... and the variance of all returns so far, pooled with the prior (mean 0, variance 1, weight 1e-4)
        seen = returns[: t + 1].ravel()
        total = len(seen) + 1e-4
        mean = seen.sum() / total
        var = (1e-4 * (1.0 + mean**2) + ((seen - mean) ** 2).sum()) / total
        expected[t] = np.clip(rewards[t] / np.sqrt(var + 1e-8), -10, 10)
    np.testing.assert_allclose(scaled, expected, rtol=1e-9)
    assert scaled[150, 1] == 10.0 and np.sum(np.abs(scaled) == 10.0) == 1
    # the mean is not subtracted: each reward keeps its sign
    assert np.all(np.sign(scaled) == np.sign(rewards))


def test_truncation_bootstrap_uses_the_normalized_final_observation():
    # real InvertedPendulum with a 5-step time limit; near-zero actions keep the pole up, so it is truncated
    envs = ppo.make_envs("InvertedPendulumLimit5-v4", 1)
    agent = perturbed_agent(4, 1, fixed_std=1e-3)
    with torch.no_grad():
        agent.actor_mean[4].weight.zero_()
        agent.actor_mean[4].bias.zero_()
    policy = ppo.RolloutPolicy(agent, seed=0)
    buf = ppo.RolloutBuffer(5, 1, (4,), (1,))
    calls = spy_on_step(envs)
    obs = agent.normalize_obs(envs.reset(seed=3)[0], update=True)
    next_obs, episodes = ppo.collect_rollout(policy, agent, envs, obs, buf, ppo.RewardScaler(agent.return_rms, 1, 0.99))
    envs.close()

    assert buf.truncations[:, 0].tolist() == [0, 0, 0, 0, 1] and not buf.terminations.any()
    assert [(step, length) for step, _, _, length in episodes] == [(4, 5)]
    final_obs = calls[-1][2]["final_obs"][0]
    # the statistics used are those after the last step: 1 reset + 5 steps; the final observation was not added
    assert agent.obs_rms.count.item() == pytest.approx(6 + 1e-4)
    normalized = agent.normalize_obs(final_obs[None], update=False)
    assert buf.truncation_values[4, 0] == pytest.approx(policy.value(normalized)[0], rel=1e-6)
    # ... which is not V of the raw final observation (nor of the next episode's first observation)
    assert buf.truncation_values[4, 0] != pytest.approx(policy.value(final_obs[None].astype(np.float32))[0], rel=1e-3)
    assert buf.truncation_values[4, 0] != pytest.approx(policy.value(next_obs)[0], rel=1e-3)


def test_a_deep_copy_of_the_agent_has_parameters_and_statistics_of_its_own():
    agent = ppo.Agent(4, 2)
    # (say, of the best agent so far)
    clone = copy.deepcopy(agent)
    assert clone.critic[4].bias.data_ptr() != agent.critic[4].bias.data_ptr()
    assert torch.equal(clone.critic[4].weight, agent.critic[4].weight)
    clone.normalize_obs(np.ones((1, 4)), update=True)
    assert clone.obs_rms.count.item() == pytest.approx(1 + 1e-4) and agent.obs_rms.count.item() == 1e-4


@pytest.mark.parametrize("kwargs", [{}, {"fixed_std": 0.3, "tanh_mean": True}])
def test_a_saved_and_loaded_agent_acts_values_and_normalizes_alike_and_evaluation_freezes_it(tmp_path, kwargs):
    args = ppo.Args(env_id="Hopper-v5", **kwargs)  # 11 observations, 3 actions within [-1, 1]
    agent = perturbed_agent(11, 3, **kwargs)
    rng = np.random.default_rng(0)
    # non-trivial statistics: observations around 3 with std 2, returns with std 5
    agent.normalize_obs(rng.normal(3.0, 2.0, size=(500, 11)), update=True)
    agent.return_rms.update(rng.normal(0.0, 5.0, size=300))
    optimizer = ppo.make_optimizer(agent, args)
    policy = ppo.RolloutPolicy(agent, seed=0)
    ppo_run.save_checkpoint(str(tmp_path / "run.cleanrl_model"), agent, optimizer, args, 0, 0, policy_rng=policy.rng)

    path, checkpoint = ppo_run.load_checkpoint(str(tmp_path))  # (a run directory names its one checkpoint)
    assert path == str(tmp_path / "run.cleanrl_model")
    loaded = ppo_run.load_agent(ppo, checkpoint)
    assert loaded.tanh_mean == args.tanh_mean and ("actor_logstd" in dict(loaded.named_parameters())) == (not kwargs)
    before = {k: v.clone() for k, v in agent.state_dict().items()}
    for key, value in loaded.state_dict().items():
        assert torch.equal(value, before[key]), key
    assert loaded.obs_rms.count.item() == pytest.approx(500 + 1e-4) and loaded.return_rms.var.item() > 10

    raw = rng.normal(3.0, 2.0, size=(8, 11))
    obs = agent.normalize_obs(raw, update=False)
    np.testing.assert_array_equal(loaded.normalize_obs(raw, update=False), obs)
    t_obs = torch.from_numpy(obs)
    with torch.no_grad():
        torch.testing.assert_close(loaded.action(t_obs, True), agent.action(t_obs, True), rtol=0, atol=0)
        torch.testing.assert_close(loaded.get_value(t_obs), agent.get_value(t_obs), rtol=0, atol=0)
        torch.manual_seed(7)
        sample = agent.action(t_obs, False)
        torch.manual_seed(7)
        torch.testing.assert_close(loaded.action(t_obs, False), sample, rtol=0, atol=0)
    assert not torch.equal(sample, agent.action(t_obs, True))  # a sample, not the mean
    # the rollout's numpy policy of the loaded agent: the same values and, seeded alike, the same samples
    loaded_policy = ppo.RolloutPolicy(loaded, seed=3)
    np.testing.assert_array_equal(loaded_policy.value(obs), ppo.RolloutPolicy(agent, seed=3).value(obs))
    for a, b in zip(loaded_policy.act(obs), ppo.RolloutPolicy(agent, seed=3).act(obs)):
        np.testing.assert_array_equal(a, b)

    # evaluation plays with frozen statistics (and changes nothing of the agent) ...
    returns = ppo_run.evaluate(ppo.make_env, loaded, "Hopper-v5", 2, deterministic=False, seed=0)
    assert len(returns) == 2
    deterministic = ppo_run.evaluate(ppo.make_env, loaded, "Hopper-v5", 1, deterministic=True, seed=5)
    for key, value in loaded.state_dict().items():
        assert torch.equal(value, before[key]), key
    # ... and its returns are the env's own: the sum of the raw rewards of the mean actions, clipped
    env = gym.make("Hopper-v5")
    raw_obs, _ = env.reset(seed=ppo_run.EVAL_SEEDS + 5)  # (evaluation seeds its episodes apart from training)
    expected, done = 0.0, False
    while not done:
        with torch.no_grad():
            mean = agent.action_mean(torch.from_numpy(agent.normalize_obs(raw_obs[None], update=False)))[0].numpy()
        raw_obs, reward, terminated, truncated, _ = env.step(np.clip(mean, -1.0, 1.0))
        expected, done = expected + reward, terminated or truncated
    env.close()
    assert deterministic == [pytest.approx(expected, rel=1e-9)]


def test_resuming_loads_into_the_parameters_that_the_optimizer_and_the_policy_hold(tmp_path):
    args = ppo.Args(env_id="InvertedPendulum-v4")

    def step(agent, optimizer):  # one optimizer step on a fixed loss
        optimizer.zero_grad()
        logprob, _, value = agent.evaluate(torch.ones(3, 4), torch.ones(3, 2))
        (logprob.sum() + value.square().sum()).backward()
        optimizer.step()

    trained = perturbed_agent(4, 2)
    trained.normalize_obs(np.random.default_rng(0).normal(size=(50, 4)), update=True)
    trained_optimizer = ppo.make_optimizer(trained, args)
    step(trained, trained_optimizer)
    path = str(tmp_path / "run.cleanrl_model")
    ppo_run.save_checkpoint(
        path, trained, trained_optimizer, args, 0, 1, policy_rng=ppo.RolloutPolicy(trained, seed=0).rng
    )
    _, checkpoint = ppo_run.load_checkpoint(path)
    agent_state, optimizer_state = checkpoint["agent"], checkpoint["optimizer"]

    # as train() resumes: the agent, its policy and its optimizer exist first, then the state is loaded
    agent = ppo.Agent(4, 2)
    policy = ppo.RolloutPolicy(agent, seed=0)
    optimizer = ppo.make_optimizer(agent, args)
    agent.load_state_dict(agent_state)
    optimizer.load_state_dict(optimizer_state)
    for p, trained_p in zip(agent.parameters(), trained.parameters()):
        assert torch.equal(p, trained_p)
    obs = agent.normalize_obs(np.ones((2, 4)), update=False)  # (the statistics' numpy views see the loaded ones)
    np.testing.assert_array_equal(obs, trained.normalize_obs(np.ones((2, 4)), update=False))
    np.testing.assert_array_equal(policy.value(obs), ppo.RolloutPolicy(trained, seed=0).value(obs))
    assert {id(p) for group in optimizer.param_groups for p in group["params"]} == {id(p) for p in agent.parameters()}
    # the optimizer's moments belong to the parameters: the next step is the same as the trained run's
    step(agent, optimizer)
    step(trained, trained_optimizer)
    for (name, p), q in zip(agent.named_parameters(), trained.parameters()):
        assert torch.equal(p, q), name
    np.testing.assert_array_equal(policy.value(obs), ppo.RolloutPolicy(trained, seed=0).value(obs))


def test_separate_critic_learning_rate_makes_two_groups():
    agent = ppo.Agent(4, 2)
    actor, critic = ppo.make_optimizer(agent, ppo.Args(critic_learning_rate=1e-3)).param_groups
    assert (actor["lr"], critic["lr"]) == (3e-4, 1e-3)
    assert {id(p) for p in critic["params"]} == {id(p) for p in agent.critic.parameters()}
    assert {id(p) for p in actor["params"]} == {id(p) for p in [*agent.actor_mean.parameters(), agent.actor_logstd]}
    (single,) = ppo.make_optimizer(agent, ppo.Args()).param_groups
    assert single["lr"] == 3e-4 and len(single["params"]) == len(list(agent.parameters()))
    # a fixed std is a buffer: saved with the agent, but no parameter to train
    fixed = ppo.Agent(4, 2, fixed_std=0.5)
    assert "actor_logstd" not in dict(fixed.named_parameters()) and "actor_logstd" in fixed.state_dict()
    assert len(ppo.make_optimizer(fixed, ppo.Args()).param_groups[0]["params"]) == len(list(agent.parameters())) - 1


def test_tanh_mean_keeps_the_mean_within_one():
    agent = ppo.Agent(3, 2, tanh_mean=True)
    with torch.no_grad():
        agent.actor_mean[4].bias.copy_(torch.tensor([50.0, -50.0]))
    obs = np.ones((4, 3), np.float32)
    np.testing.assert_allclose(agent.action_mean(torch.from_numpy(obs)).detach().numpy(), [[1.0, -1.0]] * 4)
    np.testing.assert_allclose(ppo.RolloutPolicy(agent, seed=0).mean(obs), [[1.0, -1.0]] * 4)


def short_run(**overrides) -> str:
    args = ppo.Args(
        **{"total_timesteps": 1024, "num_steps": 256, "num_minibatches": 4, "update_epochs": 4, "progress": False}
        | overrides
    )
    ppo_run.check_args(ppo, args)
    return ppo.train(args)


def test_short_run_writes_every_tag_and_is_deterministic(in_tmp):
    first = read_scalars(short_run())
    assert set(TAGS) <= set(first)
    assert len(first["losses/value_loss"]) == 4
    hyperparameters = read_text(os.path.join("runs", os.listdir("runs")[0]), "hyperparameters")
    assert "|env_id|InvertedDoublePendulum-v4|" in hyperparameters and "|fixed_std|None|" in hyperparameters
    second = read_scalars(short_run(exp_name="again"))
    for tag in first:
        if tag != "charts/SPS":  # wall-clock speed is the one thing allowed to differ
            assert first[tag] == second[tag], tag
    third = read_scalars(short_run(seed=2, exp_name="other_seed"))
    assert first["losses/value_loss"] != third["losses/value_loss"]


def test_options_in_a_run(in_tmp):
    scalars = read_scalars(short_run(env_id="Hopper-v5", fixed_std=0.5, critic_learning_rate=1e-3, tanh_mean=True))
    # a fixed std keeps the entropy constant: three action dimensions, each 1/2 + log(0.5 sqrt(2 pi))
    entropy = [value for _, value in scalars["losses/entropy"]]
    assert entropy == pytest.approx([3 * (0.5 + np.log(0.5 * np.sqrt(2 * np.pi)))] * 4)
    # both learning rates are annealed
    assert [v for _, v in scalars["charts/learning_rate"]] == pytest.approx([3e-4, 2.25e-4, 1.5e-4, 0.75e-4])
    assert [v for _, v in scalars["charts/critic_learning_rate"]] == pytest.approx([1e-3, 0.75e-3, 0.5e-3, 0.25e-3])


@pytest.mark.parametrize("env_id", ["Pendulum-v1", "HalfCheetah-v4"])
def test_runs_on_other_envs(in_tmp, env_id):
    scalars = read_scalars(short_run(env_id=env_id, num_envs=2, num_steps=128))
    assert len(scalars["losses/value_loss"]) == 4


@pytest.mark.parametrize(
    "args, message",
    [
        (
            ["--env-id", "InvertedDoublePendulum-v9"],
            "unknown environment id 'InvertedDoublePendulum-v9'; did you mean InvertedDoublePendulum-v",
        ),
        (["--env-id", "CartPole-v1"], "CartPole-v1 has discrete actions; use ppo.py"),
        (["--env-id", "BreakoutNoFrameskip-v4"], "image observations (210, 160, 3); use ppo_atari.py"),
        (["--num-minibatches", "3"], "does not split into --num-minibatches 3"),
        (["--num-steps", "0"], "--num-steps must be positive"),
        (["--fixed-std", "-1"], "--fixed-std must be positive"),
        (["--total-timesteps", "100"], "less than one batch"),
    ],
)
def test_bad_input_is_one_line_exit_2_and_no_run_directory(tmp_path, args, message):
    result = run_script("ppo_continuous_action.py", *args, cwd=str(tmp_path))
    assert result.returncode == 2
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("ppo_continuous_action.py: error: "), result.stderr
    assert message in lines[0], result.stderr
    assert not os.path.exists(tmp_path / "runs")


def test_learns_inverted_pendulum(in_tmp):
    # at the default settings but 40,960 steps (20 iterations, about half a minute here), the last 20
    # episodes of seeds 1 to 4 average 913 to 995 (the most is 1000); 30,720 steps would give 580 to 666
    args = ppo.Args(env_id="InvertedPendulum-v4", total_timesteps=40960, progress=False)
    ppo_run.check_args(ppo, args)
    returns = [value for _, value in read_scalars(ppo.train(args))["charts/episodic_return"]]
    assert np.mean(returns[-20:]) >= 600, returns[-20:]


@pytest.mark.parametrize(
    "net, index, gain",
    [
        ("actor_mean", 0, 2**0.5),
        ("actor_mean", 2, 2**0.5),
        ("actor_mean", 4, 0.01),
        ("critic", 0, 2**0.5),
        ("critic", 4, 1.0),
    ],  # fmt: skip
)
def test_orthogonal_init_gains_zero_biases_and_log_std_zero(net, index, gain):
    torch.manual_seed(0)
    agent = ppo.Agent(11, 3)
    layer = getattr(agent, net)[index]
    w = layer.weight.detach().double()
    gram = w @ w.T if w.shape[0] <= w.shape[1] else w.T @ w  # (scaled) identity for an orthogonal matrix
    np.testing.assert_allclose(gram.numpy(), gain**2 * np.eye(min(w.shape)), atol=1e-6 * max(1, gain**2))
    assert torch.all(layer.bias == 0)
    assert torch.all(agent.actor_logstd == 0)  # (continuous 2) a standard deviation of 1 to start


def test_the_rollout_restarts_the_scalers_discounted_return_at_every_episode_end():
    # real InvertedPendulum cut at 5 steps, random actions: episodes end by falling and by the time limit,
    # and every raw reward is 1, so the scaler's running return is the discounted count since the last end
    envs = ppo.make_envs("InvertedPendulumLimit5-v4", 2)
    agent = perturbed_agent(4, 1)
    policy, buf, gamma = ppo.RolloutPolicy(agent, seed=0), ppo.RolloutBuffer(23, 2, (4,), (1,)), 0.9
    scaler = ppo.RewardScaler(agent.return_rms, 2, gamma)
    ppo.collect_rollout(policy, agent, envs, agent.normalize_obs(envs.reset(seed=0)[0], update=True), buf, scaler)
    envs.close()
    assert buf.terminations.sum() > 0 and buf.truncations.sum() > 0
    for env in range(2):
        ends = np.flatnonzero(np.maximum(buf.terminations[:, env], buf.truncations[:, env]))
        since = 23 - 1 - ends[-1]  # steps after the last episode end
        assert scaler.returns[env] == pytest.approx(sum(gamma**k for k in range(since))), (env, ends)


def test_recipe_options_set_the_initial_std_and_the_widths_and_the_rollout_policy_follows():
    envs = ppo.make_envs("Hopper-v4", 1)
    agent = ppo.make_agent(ppo.Args(init_logstd=-0.5, actor_width=32, critic_width=128),
                           envs.single_observation_space, envs.single_action_space)  # fmt: skip
    envs.close()
    assert [m.out_features for m in agent.actor_mean if isinstance(m, torch.nn.Linear)] == [32, 32, 3]
    assert [m.out_features for m in agent.critic if isinstance(m, torch.nn.Linear)] == [128, 128, 1]
    assert torch.all(agent.actor_logstd == -0.5) and agent.actor_logstd.requires_grad  # (still learned)
    # the rollout's samples have that std, and its numpy networks are the torch ones at these widths
    policy = ppo.RolloutPolicy(agent, seed=0)
    obs = np.random.default_rng(1).normal(size=(4000, 11)).astype(np.float32)
    action, logprob = policy.act(obs)
    np.testing.assert_allclose((action - policy.mean(obs)).std(0), np.exp(-0.5), rtol=0.05)
    with torch.no_grad():
        t_obs = torch.from_numpy(obs)
        np.testing.assert_allclose(policy.value(obs), agent.get_value(t_obs), rtol=1e-5, atol=1e-5)
        expected = normal(agent, t_obs).log_prob(torch.from_numpy(action)).sum(-1)
    np.testing.assert_allclose(logprob, expected, rtol=1e-5, atol=1e-5)


def truncated_rollout(agent: ppo.Agent, args: ppo.Args):
    """A rollout of `args`' env (cut at 5 steps) with `agent`: (policy, buffer, observation after it)."""
    envs = ppo.make_envs(args.env_id, args.num_envs)
    policy = ppo.RolloutPolicy(agent, seed=0)
    buf = ppo.RolloutBuffer(args.num_steps, args.num_envs, (4,), (1,))
    obs = agent.normalize_obs(envs.reset(seed=0)[0], update=True)
    scaler = ppo.RewardScaler(agent.return_rms, args.num_envs, args.gamma)
    next_obs, _ = ppo.collect_rollout(policy, agent, envs, obs, buf, scaler)
    envs.close()
    return policy, buf, next_obs


def test_recompute_adv_refreshes_values_advantages_and_returns_before_every_epoch_but_the_first():
    args = ppo.Args(env_id="InvertedPendulumLimit5-v4", num_envs=2, num_steps=32, num_minibatches=2, update_epochs=3)
    ppo_run.check_args(ppo, args)
    agent = perturbed_agent(4, 1, fixed_std=1e-3)
    with torch.no_grad():  # actions near 0 keep the pole up: the episodes are cut at 5 steps, not ended
        agent.actor_mean[4].weight.zero_()
        agent.actor_mean[4].bias.zero_()
    policy, buf, next_obs = truncated_rollout(agent, args)
    assert buf.truncations.sum() >= 4
    # with the critic of the rollout, recomputing changes nothing (the final observations were kept) ...
    once, before = ppo.rollout_advantages(policy, buf, next_obs, args), buf.truncation_values.copy()
    for fresh, kept in zip(ppo.rollout_advantages(policy, buf, next_obs, args, recompute=True), once):
        np.testing.assert_allclose(fresh, kept, rtol=1e-6, atol=1e-6)
    np.testing.assert_allclose(buf.truncation_values, before, rtol=1e-6, atol=1e-6)
    # ... with a moved critic, every value is the critic's now, the cut episodes' final ones too
    with torch.no_grad():
        agent.critic[4].bias += 1.0
        agent.critic[2].weight.mul_(1.5)
    advantages, returns = ppo.rollout_advantages(policy, buf, next_obs, args, recompute=True)
    cut = buf.truncations > 0
    with torch.no_grad():
        values = agent.get_value(torch.from_numpy(buf.obs)).numpy()
        final_values = np.where(cut, agent.get_value(torch.from_numpy(buf.final_obs)).numpy(), 0.0)
        next_value = agent.get_value(torch.from_numpy(next_obs)).numpy()
    assert not np.allclose(final_values[cut], before[cut])
    np.testing.assert_allclose(buf.values, values, rtol=1e-5, atol=1e-5)
    np.testing.assert_allclose(buf.truncation_values, final_values, rtol=1e-5, atol=1e-5)
    expected = ppo.compute_gae(buf.rewards, values, next_value, buf.terminations, buf.truncations, final_values,
                               args.gamma, args.gae_lambda)  # fmt: skip
    np.testing.assert_allclose(advantages, expected[0], rtol=1e-4, atol=1e-5)
    np.testing.assert_allclose(returns, expected[1], rtol=1e-4, atol=1e-5)

    # an update of 3 epochs with recompute is 3 one-epoch updates, each on advantages of the critic of its start
    twin, twin_buf = copy.deepcopy(agent), copy.deepcopy(buf)
    twin_policy = ppo.RolloutPolicy(twin, seed=0)
    one_epoch = ppo.Args(**{**vars(args), "update_epochs": 1})
    torch.manual_seed(3)
    optimizer = ppo.make_optimizer(agent, args)
    recompute = lambda: ppo.rollout_advantages(policy, buf, next_obs, args, recompute=True)  # noqa: E731
    ppo.ppo_update(
        agent, optimizer, buf, *ppo.rollout_advantages(policy, buf, next_obs, args), args, recompute=recompute
    )
    torch.manual_seed(3)
    twin_optimizer = ppo.make_optimizer(twin, args)
    for epoch in range(3):
        adv, ret = ppo.rollout_advantages(twin_policy, twin_buf, next_obs, args, recompute=epoch > 0)
        ppo.ppo_update(twin, twin_optimizer, twin_buf, adv, ret, one_epoch)
    for mine, theirs in zip(agent.parameters(), twin.parameters()):
        torch.testing.assert_close(mine, theirs)
    assert agent.critic[0].weight.abs().sum() > 0  # (sanity: trained)


@pytest.mark.parametrize("recompute_adv", [False, True])
def test_train_recomputes_advantages_only_with_the_flag(in_tmp, monkeypatch, recompute_adv):
    calls = []
    original = ppo.rollout_advantages

    def counted(*args, **kwargs):
        calls.append(bool(kwargs.get("recompute", args[4] if len(args) > 4 else False)))
        return original(*args, **kwargs)

    monkeypatch.setattr(ppo, "rollout_advantages", counted)
    short_run(recompute_adv=recompute_adv)  # 4 iterations of 4 epochs
    assert calls == ([False, True, True, True] if recompute_adv else [False]) * 4


def test_recipe_tuned_sets_its_defaults_and_the_flags_given_still_win(tmp_path):
    result = run_script("ppo_continuous_action.py", "--recipe", "tuned", "--num-envs", "2", "--num-steps", "64",
                        "--total-timesteps", "128", "--no-progress", cwd=str(tmp_path))  # fmt: skip
    assert result.returncode == 0, result.stderr
    (run_dir,) = glob.glob(str(tmp_path / "runs" / "*"))
    table = dict(line.strip("|").split("|") for line in read_text(run_dir, "hyperparameters").splitlines()[2:])
    for name, value in ppo.RECIPES["tuned"].items():
        if name not in ("num_envs", "num_steps"):
            assert table[name] == str(value), name
    assert (table["num_envs"], table["num_steps"]) == ("2", "64")  # given: not the recipe's
    assert table["learning_rate"] == str(ppo.Args().learning_rate)  # not in the recipe: CleanRL's
    assert ppo.RECIPES["tuned"]["recipe"] == "tuned" and ppo.Args().recipe == "cleanrl"
