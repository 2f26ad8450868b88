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
c.STUDY.update(envs=["InvertedPendulum-v4", "Pendulum-v1"], normalize=[1000, 1000], budget=2048,
               known=["cleanrl", "tianshou"], sampled=1)
CART = lambda seed, total, budget: c.Spec("CartPole-v1", "default", seed, "ppo.py", total, budget)
c.LANES = {{
    "cart": [[CART(1, 40960, 10240)], [CART(1, 40960, 40960), CART(2, 10240, 10240)]],
    "study": ["study", "tuned", "tianshou"],
    "later": [[c.Spec("CartPole-v1", "default", 9, "ppo_not_yet.py", 1024, 1024)]],
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
    head = subprocess.run(["git", "-C", ROOT, "rev-parse", "HEAD"], capture_output=True, text=True).stdout.strip()
    index = {row["run"]: row for row in rows(os.path.join(out, "runs.csv"))}
    assert index["CartPole-v1__default__1"]["commit"] == head
    assert index["CartPole-v1__default__1"]["checkpoint_step"] == "40960"
    # the study: the known recipe, then one sampled trial, each told its objective; then the tuned runs
    trials = rows(os.path.join(out, "study_trials.csv"))
    expected = [("cleanrl", "COMPLETE"), ("tianshou", "COMPLETE"), ("sampled", "COMPLETE")]
    assert [(t["recipe"], t["state"]) for t in trials] == expected
    means = []  # (each env run of a trial once: the first to reach its budget waits for the other)
    for env in ["InvertedPendulum-v4", "Pendulum-v1"]:
        returns = rows(os.path.join(out, "study", f"{env}__trial000__1.csv"))
        means.append(sum(float(r["return"]) for r in returns[-100:]) / len(returns[-100:]))
    assert float(trials[0]["objective"]) == pytest.approx(sum(means) / 2000)
    assert os.path.exists(os.path.join(out, "InvertedPendulum-v4__tuned__3.csv"))
    # then Tianshou's recipe (today's --recipe tuned) beside it, as its trial ran it, unless it was the best
    if index["InvertedPendulum-v4__tuned__3"]["flags"] == "--recipe tuned":
        assert "InvertedPendulum-v4__tianshou__3" not in index
    else:
        flags = index["InvertedPendulum-v4__tianshou__3"]["flags"].split()
        assert flags[:2] == ["--num-envs", "8"] and "--recompute-adv" in flags and "--no-norm-adv" in flags
        assert os.path.exists(os.path.join(out, "InvertedPendulum-v4__tianshou__3.csv"))
    # a run of a script that the campaign's commit does not have: one line, the other lanes go on
    assert "CartPole-v1__default__9: ppo_not_yet.py is not in commit" in done.stdout
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


def test_the_report_is_written_from_the_csvs_alone(tmp_path, monkeypatch):
    from benchmark import campaign_report

    runs = tmp_path / "runs"
    runs.mkdir()
    (runs / "runs.csv").write_text(
        "run,commit,script,total_timesteps,checkpoint_step,flags\n"
        "Hopper-v4__default__11,abcdef0123,ppo_continuous_action.py,1000000,999424,\n"
        "Hopper-v4__default__12,abcdef0123,ppo_continuous_action.py,1000000,409600,\n"
    )
    for seed, last in [(11, 999424), (12, 409600)]:
        # returns 1..399 (seed 12: 101..499), the last 100: 300..399 (400..499)
        episodes = [(1000 * i, float(i + 100 * (seed - 11)), 1000) for i in range(1, 400)]
        (runs / f"Hopper-v4__default__{seed}.csv").write_text(
            "step,return,length\n" + "".join(f"{s},{r},{n}\n" for s, r, n in episodes)
        )
        (runs / f"Hopper-v4__default__{seed}.scalars.csv").write_text(
            "step,wall_time,charts/SPS\n2048,100.0,1000\n" + f"{last},600.0,1000\n"
        )
    # Breakout on the 10M schedule: the defaults compared at 2M, the vector env at 1M (their stages' budgets)
    for variant, last in [("default", 2000896), ("vector", 1000448)]:
        (runs / "runs.csv").write_text(
            (runs / "runs.csv").read_text() + f"BreakoutNoFrameskip-v4__{variant}__1,abcdef0123,x.py,10000000,{last},\n"
        )
        (runs / f"BreakoutNoFrameskip-v4__{variant}__1.csv").write_text(
            "step,return,length\n" + "".join(f"{s},{s // 1000},1000\n" for s in range(10000, last, 10000))
        )
        (runs / f"BreakoutNoFrameskip-v4__{variant}__1.scalars.csv").write_text(
            "step,wall_time,charts/SPS\n1024,100.0,250\n" + f"{last},600.0,250\n"
        )
    atari = {row["variant"]: row for row in campaign_report.load_rows(str(runs)) if row["env_id"].startswith("B")}
    assert not atari["default"]["partial"] and atari["default"]["steps"] == 2000000
    assert atari["default"]["final_return"] == pytest.approx(1505)  # the last 100 games up to 2M: 1,010..2,000
    assert not atari["vector"]["partial"] and atari["vector"]["final_return"] == pytest.approx(505)
    # ... and side by side at 1M, the defaults' games up to 1M (10..1,000) beside the vector env's
    text = "\n".join(campaign_report.section(list(atari.values()), str(tmp_path), str(runs)))
    assert "| BreakoutNoFrameskip-v4 | default | 1: 2,000,000 | 1,505.00 ± 0.00 (1 of 1 seeds)" in text
    assert "| BreakoutNoFrameskip-v4 | default | 1: 1,000,000 | 505.00 ± 0.00 (1 of 1 seeds)" in text
    for variant in ["default", "vector"]:
        for path in runs.glob(f"BreakoutNoFrameskip-v4__{variant}__1*"):
            path.unlink()
    rows = {row["seed"]: row for row in campaign_report.load_rows(str(runs))}
    assert rows[11]["final_return"] == pytest.approx(349.5) and not rows[11]["partial"]  # at its end (999,424)
    assert rows[12]["partial"] and rows[12]["steps"] == 409600
    page = tmp_path / "RESULTS.md"
    page.write_text("# Benchmark results\n\n## (a) Kept\n\ntext\n")
    lines = campaign_report.splice(str(page), {campaign_report.TITLE: campaign_report.table(list(rows.values()))})
    text = "\n".join(lines)
    assert "## (a) Kept\n\ntext" in text and "| Hopper-v4 | default | 11: 999,424, 12: 409,600 (partial) |" in text
    # the figures over seeds take the run at its budget alone; the partial one shows in its own column
    assert "| 349.50 ± 0.00 (1 of 2 seeds) | 349.50 [349.50, 349.50] | 349.5 / 449.5 (partial) |" in text
    # the study's trials, the best first; failed and running ones counted, not listed
    (runs / "study_trials.csv").write_text(
        "trial,state,recipe,learning_rate,Hopper-v4,objective\n"
        "0,FAIL,cleanrl,0.0003,,\n1,COMPLETE,cleanrl,0.0003,1500.0,0.5\n2,COMPLETE,sampled,0.0001,2400.0,0.8\n"
        "3,RUNNING,sampled,0.001,,\n"
    )
    # ... written into the page's section, after the runs' table and curves
    study = "\n".join(campaign_report.section(list(rows.values()), str(tmp_path), str(runs)))
    assert study.index("| Hopper-v4 | default |") < study.index("### The recipe study")
    assert "2 trials complete (1 sampled, 1 known recipes), 2 failed or running" in study
    assert "| 2 | sampled | 0.800 | 2,400 | 0.0001 |\n| 1 | cleanrl | 0.500 | 1,500 | 0.0003 |" in study


def test_a_run_that_ended_on_a_lost_machine_counts_as_done_from_its_committed_record(campaign):
    command, home, out = campaign
    os.makedirs(out)
    with open(os.path.join(out, "runs.csv"), "w") as f:  # (its curves committed; its --home gone with the machine)
        f.write("run,commit,script,total_timesteps,checkpoint_step,ended,flags\n")
        f.write("CartPole-v1__default__1,0123456789abcdef,ppo.py,40960,40960,True,\n")
        f.write("CartPole-v1__default__2,0123456789abcdef,ppo.py,10240,5120,False,\n")  # (partial: runs anew)
    status = subprocess.run([*command, "--status", "--lanes", "cart"], capture_output=True, text=True, timeout=120)
    assert status.returncode == 0, status.stderr
    lines = {line.split()[0]: line for line in status.stdout.splitlines()[1:]}
    assert "40,960 /     40,960" in lines["CartPole-v1__default__1"]
    assert "     0 /     10,240" in lines["CartPole-v1__default__2"]
    assert not os.path.exists(os.path.join(home, "work"))  # (--status starts nothing)
