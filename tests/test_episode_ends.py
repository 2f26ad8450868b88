"""An episode that terminates on the very step its time limit is reached is over, not cut: the rollout
stores it as a termination only, with nothing to bootstrap (gymnasium reports both flags then)."""

import importlib

import gymnasium as gym
import numpy as np
import pytest
import torch

LIMIT = 5
ATARI = ["ppo_atari", "ppo_atari_ale_vector", "ppo_atari_multigpu"]  # ppo_atari.py and its copies


class EndsAtItsLimit(gym.Env):
    """Terminates at its 5th step, which is also its time limit: gymnasium says terminated and truncated."""

    def __init__(self, script: str, render_mode=None):
        spaces = {
            "ppo": (gym.spaces.Box(-1.0, 1.0, (4,), np.float32), gym.spaces.Discrete(2)),
            "ppo_continuous_action": (gym.spaces.Box(-1.0, 1.0, (4,), np.float32), gym.spaces.Box(-1.0, 1.0, (2,))),
        }
        frames = (gym.spaces.Box(0, 255, (4, 84, 84), np.uint8), gym.spaces.Discrete(4))  # (ppo_atari.py's copies too)
        self.observation_space, self.action_space = spaces.get(script, frames)

    def reset(self, *, seed=None, options=None):
        super().reset(seed=seed)
        self.t = 0
        return self.observation_space.sample(), {}

    def step(self, action):
        self.t += 1
        return self.observation_space.sample(), 1.0, self.t == LIMIT, False, {}


@pytest.mark.parametrize("script", ["ppo", "ppo_continuous_action", *ATARI])
def test_terminated_at_the_time_limit_is_a_termination_not_a_truncation(script):
    module = importlib.import_module(script)
    env_id = f"EndsAtItsLimit-{script}-v0"
    if env_id not in gym.registry:
        gym.register(env_id, entry_point=EndsAtItsLimit, max_episode_steps=LIMIT, kwargs={"script": script})
    torch.manual_seed(0)
    if script in ATARI:  # (its make_envs builds ALE games: a vector env like its training envs, built here)
        envs = gym.vector.SyncVectorEnv(
            [lambda: gym.make(env_id)] * 2, autoreset_mode=gym.vector.AutoresetMode.SAME_STEP
        )
        buf = module.RolloutBuffer(3 * LIMIT, 2, (4, 84, 84), torch.device("cpu"))
        rollout = (module.Agent(4), envs, envs.reset(seed=0)[0], buf)
    elif script == "ppo":
        envs = module.make_envs(env_id, 2)
        policy, buf = module.RolloutPolicy(module.Agent(4, 2), 0), module.RolloutBuffer(3 * LIMIT, 2, (4,))
        rollout = (policy, envs, envs.reset(seed=0)[0], buf)
    else:
        envs, agent = module.make_envs(env_id, 2), module.Agent(4, 2)
        policy, buf = module.RolloutPolicy(agent, 0), module.RolloutBuffer(3 * LIMIT, 2, (4,), (2,))
        obs = agent.normalize_obs(envs.reset(seed=0)[0], update=True)
        rollout = (policy, agent, envs, obs, buf, module.RewardScaler(agent.return_rms, 2, 0.99))
    _, episodes = module.collect_rollout(*rollout)
    envs.close()
    ends = np.arange(3 * LIMIT) % LIMIT == LIMIT - 1
    assert np.all(buf.terminations[ends] == 1.0) and np.all(buf.terminations[~ends] == 0.0)
    assert np.all(buf.truncations == 0.0)  # over, not cut
    assert np.all(buf.truncation_values == 0.0)  # nothing bootstrapped
    if script not in ATARI:  # (Atari logs whole games, which this env does not report)
        assert len(episodes) == 6 and all(length == LIMIT for *_, length in episodes)
