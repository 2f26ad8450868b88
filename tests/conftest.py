"""Shared test helpers: the scripts are importable modules, and each run's TensorBoard scalars readable."""

import os
import subprocess
import sys

import pytest

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, ROOT)

from benchmark.bench import read_scalars  # noqa: E402  (one reader of event files for tests and benchmarks)


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
