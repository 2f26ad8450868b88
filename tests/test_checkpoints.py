"""Keeping what was trained, in each of the scripts (the Atari copies too): checkpoints written atomically and read
back safely, resume that continues the same run, evaluation, interruption by a real signal, planted
numerical faults, videos, and run directories that are never reused. Real envs, tiny runs."""

import importlib
import os
import signal
import sys
import time

import pytest
import torch
from conftest import ROOT, read_scalars, run_script, start_training

import ppo_run

# per script: tiny settings (as CLI flags, which are also Args fields) that run a few iterations fast
TINY = {
    "ppo": {"--num-steps": "32", "--total-timesteps": "1024"},
    "ppo_continuous_action": {
        "--env-id": "InvertedPendulum-v4",
        "--num-steps": "64",
        "--num-minibatches": "4",
        "--update-epochs": "2",
        "--total-timesteps": "1024",
    },
    "ppo_atari": {"--gym-vector": "sync", "--num-envs": "2", "--num-steps": "32", "--total-timesteps": "512"},
    # the copies of ppo_atari.py with a variant's changes (the C++ env; torchrun, here in one process): 5 iterations
    "ppo_atari_ale_vector": {"--num-envs": "2", "--num-steps": "32", "--total-timesteps": "320"},
    "ppo_atari_multigpu": {"--gym-vector": "sync", "--num-envs": "2", "--num-steps": "32", "--total-timesteps": "320"},
}
SCRIPTS = list(TINY)
VIDEO_SCRIPTS = [s for s in SCRIPTS if s != "ppo_atari_ale_vector"]  # (the C++ env cannot render training games)
# what the run module alone decides (evaluation seeds, the --stop-at-step schedule): once per kind of script, the
# copies of ppo_atari.py left out (their train calls it as ppo_atari.py's does)
RUN_SCRIPTS = ["ppo", "ppo_continuous_action", "ppo_atari"]


def tiny_args(script: str, **overrides):
    module = importlib.import_module(script)
    fields = {flag[2:].replace("-", "_"): type(getattr(module.Args, flag[2:].replace("-", "_")))(value)
              for flag, value in TINY[script].items()}  # fmt: skip
    args = module.Args(**{**fields, "progress": False, **overrides})
    ppo_run.check_args(module, args)
    return module, args


def tiny_flags(script: str, **overrides) -> list[str]:
    flags = {**TINY[script], **{f"--{k.replace('_', '-')}": str(v) for k, v in overrides.items()}}
    return [item for pair in flags.items() for item in pair]


def checkpoint_of(run_dir: str) -> str:
    (name,) = [f for f in os.listdir(run_dir) if f.endswith(".cleanrl_model")]
    return os.path.join(run_dir, name)


def untrained_run(module, args) -> str:
    """A run directory with the checkpoint of an untrained agent, written as training writes one (for the tests
    that need a checkpoint, not the training)."""
    run_dir = ppo_run.new_run_dir(args)
    env = module.make_env(args.env_id)
    agent = module.make_agent(args, env.observation_space, env.action_space)
    env.close()
    path = os.path.join(run_dir, f"{args.exp_name}.cleanrl_model")
    ppo_run.save_checkpoint(path, agent, module.make_optimizer(agent, args), args, global_step=0, iteration=0)
    return run_dir


@pytest.mark.parametrize("script", SCRIPTS)
def test_a_real_sigint_leaves_a_checkpoint_and_the_run_resumes_where_it_stopped(in_tmp, script, monkeypatch):
    module, args = tiny_args(script)
    # a long run, stopped by a real SIGINT once it is training
    command = [sys.executable, os.path.join(ROOT, f"{script}.py"), "--no-progress", "--checkpoint-every", "1",
               *tiny_flags(script, total_timesteps=args.batch_size * 100_000)]  # fmt: skip
    process = start_training(command, str(in_tmp))
    process.send_signal(signal.SIGINT)
    _, stderr = process.communicate(timeout=120)
    assert process.returncode == 128 + signal.SIGINT, stderr
    assert "--resume" in stderr and "Traceback" not in stderr
    (run_dir,) = [os.path.join("runs", d) for d in os.listdir("runs")]
    path = checkpoint_of(run_dir)
    checkpoint = torch.load(path, weights_only=True)
    stopped_at, done = checkpoint["global_step"], checkpoint["iteration"]
    assert stopped_at == done * args.batch_size > 0
    assert not [f for f in os.listdir(run_dir) if f.endswith(".tmp")]
    scalars = read_scalars(run_dir)  # the event file was flushed and closed
    assert scalars["charts/SPS"][-1][0] == stopped_at

    # resumed with a shorter budget passed on the command line: refused, the run's Args are its own
    result = run_script(
        f"{script}.py", "--resume", run_dir, "--total-timesteps", str(stopped_at + args.batch_size), cwd=in_tmp
    )
    assert result.returncode == 2 and "cannot resume" in result.stderr and "--total-timesteps" in result.stderr

    # resumed (from the run directory) for two more iterations, then stopped by a signal again: the
    # stopped run's Args are adopted, the global step and the learning-rate schedule go on, and the
    # same event directory gets the new points
    interrupt_at_update(monkeypatch, module, 2)
    with pytest.raises(ppo_run.Interrupted):
        module.train(*resume(module, run_dir))
    assert os.listdir("runs") == [os.path.basename(run_dir)]
    scalars = read_scalars(run_dir)
    steps = [step for step, _ in scalars["charts/learning_rate"]]
    assert steps == [args.batch_size * i for i in range(1, done + 3)]  # one unbroken curve, no repeats
    iterations = checkpoint["args"]["num_iterations"]
    for i, (_, lr) in enumerate(scalars["charts/learning_rate"]):
        assert lr == pytest.approx(args.learning_rate * (1 - i / iterations), rel=1e-6)
    assert torch.load(path, weights_only=True)["global_step"] == stopped_at + 2 * args.batch_size


def interrupt_at_update(monkeypatch, module, n: int):
    """Make the module's n-th call of ppo_update first send this process a SIGINT (as Ctrl-C would);
    returns the real ppo_update."""
    update, calls = module.ppo_update, []

    def update_then_signal(*a, **kw):
        calls.append(1)
        if len(calls) == n:
            os.kill(os.getpid(), signal.SIGINT)
        return update(*a, **kw)

    monkeypatch.setattr(module, "ppo_update", update_then_signal)
    return update


def resume(module, path: str):
    """What `--resume PATH` does before training: (Args, load_checkpoint result)."""
    # TensorBoard reads a run directory's event files in name order; a name holds the whole second it was
    # created in and a per-process counter that is not zero-padded (".9" sorts after ".10"). A real
    # resume (a new process, later) writes its file in a later second; so must one in this process.
    time.sleep(1.0 - time.time() % 1.0)
    resume_from = ppo_run.load_checkpoint(path)
    args = ppo_run.resumed_args(module, module.Args(resume=path, progress=False), resume_from[1]["args"])
    ppo_run.check_args(module, args)
    return args, resume_from


@pytest.mark.parametrize("script", SCRIPTS)
def test_a_truncated_or_missing_checkpoint_is_one_clear_line(in_tmp, script):
    module, args = tiny_args(script)
    path = checkpoint_of(untrained_run(module, args))
    with open(path, "rb") as f:
        data = f.read()
    with open("truncated.cleanrl_model", "wb") as f:
        f.write(data[: len(data) // 2])
    for flags, message in [
        (["--eval-checkpoint", "truncated.cleanrl_model"], "not a readable checkpoint"),
        (["--eval-checkpoint", path, "--eval-episodes", "-1"], "--eval-episodes must be 0 or positive, got -1"),
        (["--resume", "truncated.cleanrl_model"], "not a readable checkpoint"),
        (["--resume", "nowhere.cleanrl_model"], "no checkpoint at nowhere.cleanrl_model"),
    ]:
        result = run_script(f"{script}.py", *flags, cwd=in_tmp)
        assert result.returncode == 2, result.stderr
        lines = result.stderr.strip().splitlines()
        assert len(lines) == 1 and message in lines[0] and lines[0].startswith(f"{script}.py: error: "), result.stderr


@pytest.mark.parametrize("script", SCRIPTS)
def test_resuming_with_another_env_is_refused(in_tmp, script):
    module, args = tiny_args(script)
    run_dir = untrained_run(module, args)
    other = {"ppo": "Acrobot-v1", "ppo_continuous_action": "Hopper-v4"}.get(script, "PongNoFrameskip-v4")
    with pytest.raises(module.UsageError, match=f"--env-id {args.env_id} \\(not {other}\\)"):
        ppo_run.resumed_args(
            module, module.Args(env_id=other, resume=run_dir), ppo_run.load_checkpoint(run_dir)[1]["args"]
        )


@pytest.mark.parametrize("script", SCRIPTS)
def test_a_planted_nan_stops_the_run_naming_the_iteration_and_the_last_good_checkpoint(in_tmp, script, monkeypatch):
    module, args = tiny_args(script, checkpoint_every=1)
    minibatches_per_iteration = args.num_minibatches * args.update_epochs
    calls = {"n": 0}
    value_loss = module.value_loss

    def nan_from_the_third_iteration(*a, **kw):  # a test-only fault: the value loss turns NaN
        calls["n"] += 1
        loss = value_loss(*a, **kw)
        return loss * float("nan") if calls["n"] > 2 * minibatches_per_iteration else loss

    monkeypatch.setattr(module, "value_loss", nan_from_the_third_iteration)
    with pytest.raises(module.NonFiniteError, match="at iteration 3 .*last good checkpoint: runs/") as error:
        module.train(args)
    path = str(error.value).rsplit("last good checkpoint: ", 1)[1]
    checkpoint = torch.load(path, weights_only=True)
    assert checkpoint["iteration"] == 2
    assert all(torch.isfinite(v).all() for v in checkpoint["agent"].values())


@pytest.mark.parametrize("script", SCRIPTS)
def test_run_directories_are_never_reused(in_tmp, script):
    module, args = tiny_args(script)
    first, second = ppo_run.new_run_dir(args), ppo_run.new_run_dir(args)
    assert first != second and os.path.isdir(first) and os.path.isdir(second)


@pytest.mark.parametrize("script", SCRIPTS)
def test_evaluation_after_training_and_of_a_saved_checkpoint(in_tmp, script):
    module, args = tiny_args(script, eval_episodes=2)
    run_dir = module.train(args)
    assert len(read_scalars(run_dir)["eval/episodic_return"]) == 2
    result = run_script(
        f"{script}.py", "--eval-checkpoint", run_dir, "--eval-episodes", "3", "--eval-deterministic", cwd=in_tmp
    )
    assert result.returncode == 0, result.stderr
    assert "over 3 episodes (deterministic actions)" in result.stdout


@pytest.mark.parametrize("script", VIDEO_SCRIPTS)
def test_capture_video_writes_playable_mp4s(in_tmp, script):
    import cv2

    module, args = tiny_args(script, capture_video=True, eval_episodes=1)
    run_name = os.path.basename(module.train(args))
    videos = sorted(os.listdir(os.path.join("videos", run_name)))
    assert any(v.startswith("rl-video") for v in videos) and any(v.startswith("eval") for v in videos), videos
    for video in videos:
        capture = cv2.VideoCapture(os.path.join("videos", run_name, video))
        ok, frame = capture.read()
        assert ok and frame.ndim == 3 and frame.size > 0, video
        capture.release()
