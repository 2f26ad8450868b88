"""Resume through the real entry point (`main`, as `python <script> --resume RUN` runs it), in each of the
scripts (the Atari copies too): a run stopped after a checkpoint and resumed starts its first iteration with exactly the
checkpoint's weights, optimizer moments and step, RNG streams (torch's, the rollout policy's), normalization
statistics and learning rate, and two resumes of one checkpoint log the same numbers. Also what a resume must
never do: drop a flag, overwrite the stopped run's videos, or die on a checkpoint of the run's last iteration."""

import copy
import hashlib
import os
import shutil
import sys
import time

import pytest
import torch
from conftest import read_scalars, run_script
from test_checkpoints import (
    RUN_SCRIPTS,
    SCRIPTS,
    VIDEO_SCRIPTS,
    checkpoint_of,
    interrupt_at_update,
    tiny_args,
    tiny_flags,
)

import ppo_run


def run_main(monkeypatch, module, *flags: str) -> int:
    """`python <script> FLAGS` in this process; returns its exit code."""
    monkeypatch.setattr(sys, "argv", [module.SCRIPT, *flags])
    try:
        ppo_run.main(module)
    except SystemExit as e:
        return e.code
    return 0


def stopped_run(monkeypatch, script: str, *flags: str):
    """A tiny run through main, stopped by a SIGINT during its 3rd update: (module, args, run dir, checkpoint)."""
    module, args = tiny_args(script)
    update = interrupt_at_update(monkeypatch, module, 3)
    assert run_main(monkeypatch, module, "--no-progress", "--checkpoint-every", "0", *tiny_flags(script), *flags) == 130
    monkeypatch.setattr(module, "ppo_update", update)
    (run_dir,) = [os.path.join("runs", d) for d in os.listdir("runs")]
    checkpoint = torch.load(checkpoint_of(run_dir), weights_only=True)
    assert checkpoint["iteration"] == 3
    # TensorBoard orders a directory's event files by name, whose time stamp is in whole seconds: a real
    # resume is a later process; one in this process starts in a later second
    time.sleep(1.0 - time.time() % 1.0)
    return module, args, run_dir, checkpoint


def first_iteration_spy(monkeypatch, module) -> dict:
    """Record what the first rollout and the first update of a run start from."""
    seen = {}
    collect_rollout, ppo_update = module.collect_rollout, module.ppo_update

    def rollout(*a, **kw):
        if "rng" not in seen:
            seen["rng"] = {"torch": torch.get_rng_state()}
            if hasattr(a[0], "rng"):  # the numpy rollout policy's own generator (ppo.py, continuous)
                seen["rng"]["policy"] = copy.deepcopy(a[0].rng.bit_generator.state)
            agent = next((x for x in a if hasattr(x, "obs_rms")), None)
            if agent is not None:  # (continuous) the statistics before the first rollout step
                seen["stats"] = {k: v.clone() for k, v in agent.state_dict().items() if "_rms." in k}
        return collect_rollout(*a, **kw)

    def update(agent, optimizer, *a, **kw):
        if "agent" not in seen:
            seen["agent"] = {k: v.clone() for k, v in agent.state_dict().items() if "_rms." not in k}
            seen["optimizer"] = copy.deepcopy(optimizer.state_dict())
        return ppo_update(agent, optimizer, *a, **kw)

    monkeypatch.setattr(module, "collect_rollout", rollout)
    monkeypatch.setattr(module, "ppo_update", update)
    return seen


@pytest.mark.parametrize("script", SCRIPTS)
def test_a_resumed_run_starts_from_exactly_its_checkpoint_and_two_resumes_log_alike(in_tmp, script, monkeypatch):
    module, args, run_dir, checkpoint = stopped_run(monkeypatch, script)
    shutil.copytree(run_dir, "copy")
    seen = first_iteration_spy(monkeypatch, module)
    assert run_main(monkeypatch, module, "--no-progress", "--resume", run_dir) == 0

    # the weights, and the optimizer's moments and step, are the checkpoint's (the rollout changes neither)
    for name, value in seen["agent"].items():
        assert torch.equal(value, checkpoint["agent"][name]), name
    saved_opt, opt = checkpoint["optimizer"], seen["optimizer"]
    assert opt["state"].keys() == saved_opt["state"].keys() and opt["state"]
    for i, state in opt["state"].items():
        for key in ("step", "exp_avg", "exp_avg_sq"):
            assert torch.equal(state[key], saved_opt["state"][i][key]), (i, key)
    # the learning rate goes on from the checkpoint's place in the schedule
    iterations = checkpoint["args"]["num_iterations"]
    for group in opt["param_groups"]:
        assert group["lr"] == pytest.approx(args.learning_rate * (1 - 3 / iterations), rel=1e-9)
    # every RNG stream is where the stopped run left it
    rng = checkpoint["rng"]
    assert torch.equal(seen["rng"]["torch"], rng["torch"])
    if "policy" in rng:
        assert seen["rng"]["policy"] == rng["policy"]
    if "stats" in seen:
        # (continuous) the statistics are the checkpoint's, with the new episodes' first observations merged in
        saved = {k: v for k, v in checkpoint["agent"].items() if "_rms." in k}
        assert torch.equal(seen["stats"]["return_rms.mean"], saved["return_rms.mean"])
        assert torch.equal(seen["stats"]["return_rms.var"], saved["return_rms.var"])
        assert seen["stats"]["obs_rms.count"] == saved["obs_rms.count"] + args.num_envs
        rms = module.RunningMeanStd(saved["obs_rms.mean"].shape)
        rms.load_state_dict({k.split(".", 1)[1]: v for k, v in saved.items() if k.startswith("obs_rms.")})
        envs = module.make_envs(args.env_id, args.num_envs)
        rms.update(envs.reset(seed=args.seed + 3)[0])
        envs.close()
        torch.testing.assert_close(seen["stats"]["obs_rms.mean"], rms.mean, rtol=0, atol=0)
        torch.testing.assert_close(seen["stats"]["obs_rms.var"], rms.var, rtol=0, atol=0)

    # a second resume of the same checkpoint logs the same numbers as the first
    time.sleep(1.0 - time.time() % 1.0)
    assert run_main(monkeypatch, module, "--no-progress", "--resume", "copy") == 0
    first, second = read_scalars(run_dir), read_scalars("copy")
    assert first.keys() == second.keys()
    for tag in first:
        if tag != "charts/SPS":
            assert first[tag] == second[tag], tag
    assert [step for step, _ in first["charts/learning_rate"]] == [
        args.batch_size * i for i in range(1, iterations + 1)
    ]


@pytest.mark.parametrize("script", SCRIPTS)
def test_a_flag_named_on_the_command_line_is_refused_not_dropped_when_it_contradicts(in_tmp, script, monkeypatch):
    module, args, run_dir, checkpoint = stopped_run(monkeypatch, script)
    default = module.Args().total_timesteps  # named with its default value: still refused
    result = run_script(f"{script}.py", "--resume", run_dir, "--total-timesteps", str(default), cwd=in_tmp)
    assert result.returncode == 2, result.stderr
    assert result.stderr.strip().splitlines() == [
        f"{script}.py: error: cannot resume {run_dir}: it was trained with --total-timesteps "
        f"{args.total_timesteps} (not {default})"
    ]
    # what the command line names, as a parser would read it
    named = ppo_run.given_flags(module, ["--total-timesteps", "5", "--no-anneal-lr", "--gamma=0.9", "--resume", "x"])
    assert named == {"total_timesteps", "anneal_lr", "gamma", "resume"}
    # a flag that agrees with the checkpoint is accepted, and a run-control flag is taken from the command line
    given = {"env_id", "checkpoint_every"}
    resumed = ppo_run.resumed_args(
        module, module.Args(env_id=args.env_id, resume=run_dir, checkpoint_every=7), checkpoint["args"], given
    )
    assert resumed.checkpoint_every == 7 and resumed.total_timesteps == args.total_timesteps


@pytest.mark.parametrize("script", VIDEO_SCRIPTS)
def test_a_resumed_run_keeps_the_stopped_runs_videos(in_tmp, script, monkeypatch):
    module, args, run_dir, checkpoint = stopped_run(monkeypatch, script, "--capture-video")
    folder = os.path.join("videos", os.path.basename(run_dir))

    def digests():
        return {f: hashlib.sha256(open(os.path.join(folder, f), "rb").read()).hexdigest() for f in os.listdir(folder)}

    before = digests()
    assert before
    assert run_main(monkeypatch, module, "--no-progress", "--capture-video", "--resume", run_dir) == 0
    after = digests()
    assert {f: after[f] for f in before} == before  # every video of the stopped run is still there, unchanged
    assert any(f.startswith("rl-video-from-step-") for f in after), sorted(after)


@pytest.mark.parametrize("script", SCRIPTS)
def test_train_resumed_from_the_checkpoint_of_the_last_iteration_just_returns(in_tmp, script):
    module, args = tiny_args(script)
    run_dir = module.train(args)
    resume_from = ppo_run.load_checkpoint(run_dir)
    assert resume_from[1]["iteration"] == args.num_iterations
    assert module.train(args, resume_from) == run_dir


@pytest.mark.parametrize("script", RUN_SCRIPTS)
def test_evaluation_episodes_are_seeded_apart_from_the_training_envs(in_tmp, script, monkeypatch):
    module, args = tiny_args(script)
    seeds = []
    reset = __import__("gymnasium").Env.reset

    def spy(self, *a, seed=None, **kw):
        seeds.append(seed)
        return reset(self, *a, seed=seed, **kw)

    agent = ppo_run.load_agent(module, ppo_run.load_checkpoint(module.train(args))[1])
    monkeypatch.setattr(__import__("gymnasium").Env, "reset", spy)
    ppo_run.evaluate(module.make_env, agent, args.env_id, 3, False, args.seed)
    given = [s for s in seeds if s is not None]
    assert len(set(given)) == 3  # one seed per episode, all different
    # training resets env i of the vector env with seed + iteration + i, a few thousand at most here
    assert not set(given) & set(range(args.seed, args.seed + 10_000)), given


@pytest.mark.parametrize("script", RUN_SCRIPTS)
def test_a_run_paused_at_a_step_goes_on_with_the_same_schedule_as_one_that_was_not(in_tmp, script, monkeypatch):
    module, args = tiny_args(script)
    whole = module.train(args)
    pause_at = 2 * args.batch_size + 1  # paused after the iteration that passes it: the third
    assert run_main(monkeypatch, module, "--no-progress", *tiny_flags(script), "--stop-at-step", str(pause_at)) == 0
    (run_dir,) = [os.path.join("runs", d) for d in os.listdir("runs") if d != os.path.basename(whole)]
    checkpoint = torch.load(checkpoint_of(run_dir), weights_only=True)
    assert (checkpoint["iteration"], checkpoint["global_step"]) == (3, 3 * args.batch_size)
    # a pause must be before the checkpoint's step, else one line and exit code 2
    assert run_main(monkeypatch, module, "--resume", run_dir, "--stop-at-step", str(pause_at)) == 2
    time.sleep(1.0 - time.time() % 1.0)  # (a later event file name, as a later process would have)
    assert run_main(monkeypatch, module, "--no-progress", "--resume", run_dir) == 0
    lr, lr_whole = read_scalars(run_dir)["charts/learning_rate"], read_scalars(whole)["charts/learning_rate"]
    assert [step for step, _ in lr] == [step for step, _ in lr_whole]  # every iteration once, to the end
    assert [value for _, value in lr] == pytest.approx([value for _, value in lr_whole])
    assert run_main(monkeypatch, module, "--no-progress", *tiny_flags(script), "--stop-at-step", "1",
                    "--no-save-model") == 2  # fmt: skip
