"""The campaign runner (benchmark/campaign.py) on tiny declared runs, through its real entry point: stages in
order, a run resumed into its own directory with its schedule intact, a runner killed by SIGKILL whose runs stop
with a checkpoint and go on, the study's trials asked and told, every curve exported once per step."""

import csv
import glob
import os
import signal
import subprocess
import sys
import time

import pytest
from conftest import ROOT

DRIVER = """
import sys
sys.path.insert(0, {root!r})
from benchmark import campaign as c
c.OUT = {out!r}
c.CHECKPOINT_EVERY["ppo.py"] = 4
c.CHECKPOINT_EVERY["ppo_continuous_action.py"] = 1
c.STUDY.update(envs=["InvertedPendulum-v4"], normalize=[1000], budget=2048, known=["cleanrl"], sampled=1)
CART = lambda seed, total, budget: c.Spec("CartPole-v1", "default", seed, "ppo.py", total, budget)
c.LANES = {{
    "cart": [[CART(1, 40960, 10240)], [CART(1, 40960, 40960), CART(2, 10240, 10240)]],
    "study": ["study", "tuned"],
}}
c.mujoco = lambda variant, flags=(): [c.Spec("InvertedPendulum-v4", variant, 3, "ppo_continuous_action.py", 2048,
                                             2048, list(flags))]
c.main()
"""


@pytest.fixture
def campaign(tmp_path):
    """A driver of the runner with the tiny runs above (its home and CSVs under tmp_path); the worktrees it
    makes are removed after."""
    out, home = str(tmp_path / "out"), str(tmp_path / "home")
    driver = tmp_path / "drive.py"
    driver.write_text(DRIVER.format(root=ROOT, out=out))
    yield [sys.executable, str(driver), "--home", home, "--jobs", "2"], home, out
    for tree in glob.glob(os.path.join(home, "worktrees", "*")):
        subprocess.run(["git", "-C", ROOT, "worktree", "remove", "--force", tree], capture_output=True)


def rows(path: str) -> list[dict]:
    with open(path) as f:
        return list(csv.DictReader(f))


def test_the_campaign_runs_its_stages_in_order_and_a_resumed_run_keeps_its_schedule(campaign):
    command, home, out = campaign
    done = subprocess.run([*command, "--hours", "1"], capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stderr
    scalars = rows(os.path.join(out, "CartPole-v1__default__1.scalars.csv"))
    steps = [int(row["step"]) for row in scalars]
    assert steps == list(range(512, 40960 + 1, 512))  # two slices, every iteration logged once
    lr = [float(row["charts/learning_rate"]) for row in scalars]
    assert lr == pytest.approx([2.5e-4 * (1 - i / 80) for i in range(80)], rel=1e-5)  # the 40,960-step schedule
    episodes = rows(os.path.join(out, "CartPole-v1__default__1.csv"))
    assert list(episodes[0]) == ["step", "return", "length"] and len(episodes) > 50
    index = {row["run"]: row for row in rows(os.path.join(out, "runs.csv"))}
    head = subprocess.run(["git", "-C", ROOT, "rev-parse", "HEAD"], capture_output=True, text=True).stdout.strip()
    assert index["CartPole-v1__default__1"]["commit"] == head
    assert index["CartPole-v1__default__1"]["checkpoint_step"] == "40960"
    # the study: the known recipe, then one sampled trial, each told its objective; then the tuned runs
    trials = rows(os.path.join(out, "study_trials.csv"))
    assert [(t["recipe"], t["state"]) for t in trials] == [("cleanrl", "COMPLETE"), ("sampled", "COMPLETE")]
    returns = rows(os.path.join(out, "study", "InvertedPendulum-v4__trial000__1.csv"))
    mean = sum(float(r["return"]) for r in returns[-100:]) / len(returns[-100:])
    assert float(trials[0]["objective"]) == pytest.approx(mean / 1000)
    assert os.path.exists(os.path.join(out, "InvertedPendulum-v4__tuned__3.csv"))
    again = subprocess.run([*command, "--status"], capture_output=True, text=True, timeout=120)
    assert "CartPole-v1__default__1" in again.stdout and "40,960 /     40,960" in again.stdout


def test_a_runner_killed_by_sigkill_leaves_its_runs_checkpointed_and_the_next_goes_on(campaign):
    command, home, out = campaign
    runner = subprocess.Popen([*command, "--hours", "1"], stdout=subprocess.PIPE, text=True)
    deadline = time.time() + 120
    while not glob.glob(os.path.join(home, "work", "CartPole-v1__default__1", "runs", "*", "*.cleanrl_model")):
        assert time.time() < deadline and runner.poll() is None
        time.sleep(0.2)
    runner.send_signal(signal.SIGKILL)
    runner.wait()
    deadline = time.time() + 60  # (its runs got SIGTERM from the kernel: each ends its iteration and checkpoints)
    while subprocess.run(["pgrep", "-f", home], capture_output=True).returncode == 0:
        assert time.time() < deadline, "a run outlived its runner"
        time.sleep(0.2)
    done = subprocess.run([*command, "--hours", "1"], capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stderr
    steps = [int(row["step"]) for row in rows(os.path.join(out, "CartPole-v1__default__1.scalars.csv"))]
    assert steps == list(range(512, 40960 + 1, 512))


def test_a_second_runner_on_the_same_home_is_refused(campaign):
    command, home, out = campaign
    runner = subprocess.Popen([*command, "--hours", "1"], stdout=subprocess.DEVNULL)
    try:
        while not os.path.exists(os.path.join(home, "state.json")):
            time.sleep(0.1)
        second = subprocess.run([*command, "--hours", "1"], capture_output=True, text=True, timeout=120)
        assert second.returncode == 1 and "another runner" in second.stderr
    finally:
        runner.send_signal(signal.SIGTERM)
        assert runner.wait(timeout=120) == 0
