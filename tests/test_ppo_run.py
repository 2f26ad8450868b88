"""The run module's own tests, beyond what the scripts' tests exercise through it (checkpoints, resume, signals,
evaluation, bad input: tests/test_checkpoints.py, test_resume.py, test_args.py): tracking with Weights & Biases."""

import glob
import json
import os
import subprocess
import sys
import types

import pytest
import torch
from conftest import ROOT, read_scalars
from test_resume import run_main

import ppo
import ppo_run


def wandb_records(path: str) -> list:
    """The records of a W&B run file (run-<id>.wandb): a 7-byte header, then LevelDB's log format (32 KiB blocks of
    chunks, each with a 7-byte header: checksum, length, type; types 1 and 4 end a record)."""
    from wandb.proto import wandb_internal_pb2

    with open(path, "rb") as f:
        data = f.read()
    pos, block, chunks, records = 7, 32768, b"", []
    while pos + 7 <= len(data):
        if block - pos % block < 7:  # (a block's tail too short for a header is padding)
            pos += block - pos % block
            continue
        length, kind = int.from_bytes(data[pos + 4 : pos + 6], "little"), data[pos + 6]
        chunks += data[pos + 7 : pos + 7 + length]
        pos += 7 + length
        if kind in (1, 4):
            record = wandb_internal_pb2.Record()
            record.ParseFromString(chunks)
            records.append(record)
            chunks = b""
    return records


def offline_run(path: str) -> tuple[str, list[tuple[int, float]]]:
    """(the run's id, the (step, value) of each charts/episodic_return it holds)."""
    records = wandb_records(path)
    (run_id,) = [r.run.run_id for r in records if r.WhichOneof("record_type") == "run"]
    returns = []
    for r in records:
        if r.WhichOneof("record_type") == "history":
            items = {item.key or "/".join(item.nested_key): json.loads(item.value_json) for item in r.history.item}
            if "charts/episodic_return" in items:
                returns.append((items["global_step"], items["charts/episodic_return"]))
    return run_id, returns


def test_a_tracked_run_offline_holds_its_episodic_returns_and_a_resume_goes_on_in_the_same_wandb_run(tmp_path):
    env = {**os.environ, "WANDB_MODE": "offline", "WANDB_SILENT": "true"}
    command = [sys.executable, os.path.join(ROOT, "ppo.py"), "--track", "--no-progress"]
    first = [*command, "--total-timesteps", "4096", "--stop-at-step", "2048"]
    done = subprocess.run(first, cwd=tmp_path, env=env, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr
    (run_dir,) = glob.glob(str(tmp_path / "runs" / "*"))
    resumed = [*command, "--resume", run_dir]
    done = subprocess.run(resumed, cwd=tmp_path, env=env, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr
    runs = [offline_run(path) for path in sorted(glob.glob(str(tmp_path / "wandb" / "offline-run-*" / "run-*.wandb")))]
    assert len(runs) == 2 and runs[0][0] == runs[1][0]  # one W&B run, in two parts
    logged = sorted(step_return for _, returns in runs for step_return in returns)
    assert logged and logged == sorted(read_scalars(run_dir)["charts/episodic_return"])


@pytest.fixture
def fake_wandb(monkeypatch):
    """A wandb module whose calls are recorded (and can be made to fail), in place of the real one."""
    calls = {"init": [], "finish": 0}
    module = types.SimpleNamespace(Video=lambda path: path, log=lambda data: None, define_metric=lambda *a, **kw: None)
    module.init = lambda **kwargs: calls["init"].append(kwargs)

    def finish():
        calls["finish"] += 1

    module.finish = finish
    monkeypatch.setitem(sys.modules, "wandb", module)
    return module, calls


def test_track_without_wandb_or_with_a_wandb_that_cannot_start_is_one_line_and_nothing_written(
    in_tmp, monkeypatch, capsys, fake_wandb
):
    module, _ = fake_wandb
    flags = ["--track", "--no-progress", "--total-timesteps", "1024"]

    def no_network(**kwargs):
        raise RuntimeError("Network error (ConnectionError), entering retry loop.\nmore")

    monkeypatch.setattr(module, "init", no_network)
    assert run_main(monkeypatch, ppo, *flags) == 2
    assert capsys.readouterr().err == (
        "ppo.py: error: --track: Weights & Biases did not start: Network error (ConnectionError), entering retry "
        "loop.\n"
    )
    monkeypatch.setitem(sys.modules, "wandb", None)  # (not installed: importing it raises ImportError)
    assert run_main(monkeypatch, ppo, *flags) == 2
    assert capsys.readouterr().err == "ppo.py: error: --track needs wandb (pip install wandb)\n"
    assert not os.path.exists("runs")


def test_a_wandb_failing_mid_run_costs_one_warning_not_the_run(in_tmp, monkeypatch, capsys, fake_wandb):
    module, calls = fake_wandb
    logged = []

    def log(data):  # the service dies after a few scalars
        if len(logged) == 5:
            raise OSError("wandb-core exited\n...")
        logged.append(data)

    monkeypatch.setattr(module, "log", log)
    assert run_main(monkeypatch, ppo, "--track", "--no-progress", "--total-timesteps", "2048") == 0
    assert capsys.readouterr().err == (
        "ppo.py: warning: Weights & Biases failed, training goes on without it: wandb-core exited\n"
    )
    (run_dir,) = glob.glob("runs/*")
    checkpoint = torch.load(glob.glob(os.path.join(run_dir, "*.cleanrl_model"))[0], weights_only=True)
    assert checkpoint["global_step"] == 2048 and len(read_scalars(run_dir)["charts/SPS"]) == 4  # trained to its end
    assert calls["finish"] == 0 and len(logged) == 5  # (nothing more sent to a W&B that failed)
    (init,) = calls["init"]
    assert (
        init["config"]["env_id"] == "CartPole-v1"
        and init["project"] == "cleanRL"
        and init["id"] == checkpoint["wandb_id"]
    )
    assert logged[0]["global_step"] == 52 and logged[0]["charts/episodic_return"] == 13.0


def test_the_run_module_is_the_same_for_every_script_and_names_what_it_reads_from_them():
    for name in ["Args", "RANGES", "RUN_CONTROL", "RECIPES", "check_env", "make_env", "make_agent", "train"]:
        assert name in ppo_run.__doc__
        for script in ["ppo", "ppo_continuous_action", "ppo_atari"]:
            assert hasattr(__import__(script), name), (script, name)


def test_a_script_runs_under_a_profiler_which_executes_it_outside_its_module(tmp_path):
    # (python -m cProfile runs the file's code in a namespace of its own: sys.modules["__main__"] is cProfile's)
    script = os.path.join(ROOT, "ppo.py")
    command = [sys.executable, "-m", "cProfile", "-o", os.devnull, script, "--no-progress", "--total-timesteps", "1024"]
    done = subprocess.run(command, cwd=tmp_path, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr
    (run_dir,) = glob.glob(str(tmp_path / "runs" / "*"))
    assert len(read_scalars(run_dir)["charts/SPS"]) == 2
