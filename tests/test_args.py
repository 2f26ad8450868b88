"""Every bad number is refused before anything is written, in each of the scripts: learning rates
positive and finite, gamma and the GAE lambda in [0, 1], clip coefficients, max grad norm and target KL
positive, entropy and value coefficients finite and not negative, minibatches of at least 2 samples
where advantages are normalized, NaN and infinity anywhere. In-process through check_args, and once per
script through the command line (one line on stderr, exit 2, no run directory)."""

import importlib
import os

import pytest
from conftest import run_script

import ppo_run

NAN, INF = float("nan"), float("inf")
COMMON = [
    ("learning_rate", NAN, "positive"), ("learning_rate", 0.0, "positive"), ("learning_rate", INF, "finite"),
    ("gamma", 1.01, "in [0, 1]"), ("gamma", -0.1, "in [0, 1]"), ("gamma", NAN, "in [0, 1]"),
    ("gae_lambda", 1.5, "in [0, 1]"), ("gae_lambda", -1.0, "in [0, 1]"),
    ("clip_coef", -1.0, "positive"), ("clip_coef", 0.0, "positive"), ("clip_coef", INF, "finite"),
    ("max_grad_norm", -1.0, "positive"), ("max_grad_norm", 0.0, "positive"), ("max_grad_norm", NAN, "positive"),
    ("ent_coef", NAN, "0 or positive"), ("ent_coef", -0.01, "0 or positive"), ("ent_coef", INF, "finite"),
    ("vf_coef", -1.0, "0 or positive"), ("vf_coef", INF, "finite"),
    ("target_kl", 0.0, "positive"), ("target_kl", -0.1, "positive"), ("target_kl", NAN, "positive"),
    ("target_kl", INF, "finite"),
]  # fmt: skip
PER_SCRIPT = {
    "ppo": [("kl_beta", INF, "finite"), ("kl_target", NAN, "positive"), ("torch_threads", 0, "positive")],
    "ppo_continuous_action": [
        ("torch_threads", 0, "positive"),
        ("kl_beta", INF, "finite"),
        ("kl_target", NAN, "positive"),
        ("critic_learning_rate", NAN, "positive"),
        ("critic_learning_rate", -1.0, "positive"),
        ("critic_learning_rate", INF, "finite"),
        ("fixed_std", 0.0, "positive"),
        ("fixed_std", INF, "finite"),
        ("actor_width", 0, "positive"),
        ("critic_width", -64, "positive"),
        ("init_logstd", NAN, "finite"),
    ],  # fmt: skip
    "ppo_atari": [("update_threads", -1, "0 or positive")],
    "ppo_atari_ale_vector": [("update_threads", -1, "0 or positive"), ("ale_threads", -2, "0 or positive")],
    "ppo_atari_multigpu": [("update_threads", -1, "0 or positive")],
}
CASES = [(script, *case) for script in PER_SCRIPT for case in COMMON + PER_SCRIPT[script]]


@pytest.mark.parametrize("script, name, value, asked", CASES)
def test_a_bad_number_is_refused_by_name(script, name, value, asked):
    module = importlib.import_module(script)
    with pytest.raises(module.UsageError) as error:
        ppo_run.check_args(module, module.Args(**{name: value}))
    assert str(error.value) == f"--{name.replace('_', '-')} must be {asked}, got {value}"


@pytest.mark.parametrize("script", list(PER_SCRIPT))
def test_the_edges_of_the_ranges_are_accepted(script):
    module = importlib.import_module(script)
    for overrides in [{"gamma": 0.0, "gae_lambda": 0.0}, {"gamma": 1.0, "gae_lambda": 1.0},
                      {"ent_coef": 0.0, "vf_coef": 0.0}, {"target_kl": 1e-9, "learning_rate": 1e-9}]:  # fmt: skip
        ppo_run.check_args(module, module.Args(**overrides))


@pytest.mark.parametrize("script", list(PER_SCRIPT))
def test_minibatches_of_one_sample_are_refused_only_where_advantages_are_normalized(script):
    module = importlib.import_module(script)
    batch = module.Args().num_envs * module.Args().num_steps
    with pytest.raises(module.UsageError, match=f"--num-minibatches {batch} leaves 1 sample per minibatch"):
        ppo_run.check_args(module, module.Args(num_minibatches=batch))
    ppo_run.check_args(module, module.Args(num_minibatches=batch, norm_adv=False))  # (nothing to normalize)
    ppo_run.check_args(module, module.Args(num_minibatches=batch // 2))  # 2 samples each: a std exists


@pytest.mark.parametrize("script", list(PER_SCRIPT))
@pytest.mark.parametrize("flags, message", [(["--learning-rate", "nan"], "--learning-rate must be positive, got nan"),
                                            (["--gamma", "2"], "--gamma must be in [0, 1], got 2.0")])  # fmt: skip
def test_the_command_line_refuses_a_bad_number_in_one_line_and_writes_nothing(tmp_path, script, flags, message):
    result = run_script(f"{script}.py", *flags, cwd=str(tmp_path))
    assert result.returncode == 2
    assert result.stderr.strip().splitlines() == [f"{script}.py: error: {message}"]
    assert not os.path.exists(tmp_path / "runs") and not os.path.exists(tmp_path / "videos")
