"""Shared test helpers: the scripts are importable modules, and each run's TensorBoard scalars readable."""

import glob
import os
import subprocess
import sys
import time

import pytest

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, ROOT)

from benchmark.bench import read_scalars  # noqa: E402, F401  (one reader of event files for tests and benchmarks)


def read_text(run_dir: str, tag: str) -> str:
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator
    from tensorboard.util import tensor_util

    acc = EventAccumulator(run_dir, size_guidance={"tensors": 0})
    acc.Reload()
    return tensor_util.make_ndarray(acc.Tensors(f"{tag}/text_summary")[0].tensor_proto).item().decode()


def run_script(script: str, *args: str, cwd: str) -> subprocess.CompletedProcess:
    """Run one of the scripts as a user would, from `cwd`."""
    return subprocess.run(
        [sys.executable, os.path.join(ROOT, script), *args], cwd=cwd, capture_output=True, text=True, timeout=300
    )


def start_training(command: list[str], cwd, **popen) -> subprocess.Popen:
    """Start a long training process (its command must ask for --checkpoint-every 1) and return once it
    is training: its first checkpoint, written after the first iteration, says so however slow the
    machine, and then its signal handlers are in place."""
    process = subprocess.Popen(command, cwd=cwd, stderr=subprocess.PIPE, text=True, **popen)
    deadline = time.time() + 120
    while not glob.glob(os.path.join(cwd, "runs", "*", "*.cleanrl_model")) and time.time() < deadline:
        if process.poll() is not None:
            raise AssertionError(f"the run ended before its first checkpoint: {process.stderr.read()}")
        time.sleep(0.2)
    time.sleep(1)  # a few iterations more
    return process


# the TensorBoard scalars every script writes (the names plotting tools for CleanRL runs expect)
TAGS = [
    "charts/episodic_return",
    "charts/episodic_length",
    "charts/learning_rate",
    "charts/SPS",
    "losses/value_loss",
    "losses/policy_loss",
    "losses/entropy",
    "losses/old_approx_kl",
    "losses/approx_kl",
    "losses/clipfrac",
    "losses/explained_variance",
]


@pytest.fixture
def in_tmp(tmp_path, monkeypatch):
    """Run in an empty directory, so that runs/ lands there."""
    monkeypatch.chdir(tmp_path)
    return tmp_path


@pytest.fixture
def one_torch_thread():
    """Torch on one thread while a test runs, as the scripts run their rollouts (and torchrun's ranks); restored
    after."""
    import torch

    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)
