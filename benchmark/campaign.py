"""Long learning runs in slices: a declared list of runs, advanced from their checkpoints, a few at a time.

    python benchmark/campaign.py --hours 2.5      # advance every unfinished run for 2.5 hours, then stop
    python benchmark/campaign.py --status         # where each run stands, and nothing else

Each invocation goes on where the last one stopped: every run resumes from its last checkpoint into its own
run directory (`--resume RUN --stop-at-step BUDGET`: the learning-rate schedule stays the run's
--total-timesteps), as many at a time as --jobs (default: the cores, one torch thread each). It stops
cleanly at --hours or on SIGTERM / Ctrl-C (each run finishes its iteration and writes its checkpoint); a run
writes a checkpoint every few minutes (CHECKPOINT_EVERY), so a SIGKILL loses no more than that. Runs are
niced, so that other work on the machine keeps its pace.

The runs are declared in LANES: each lane a list of stages, each stage a set of runs that must all reach
their budget before the lane's next stage starts; the lanes go on side by side. A run is one
{env_id}__{variant}__{seed}: a later stage may name it again with a larger budget (the same run, resumed).
The study stage is benchmark/tune.py's recipe study (the same space, known recipes, objective), its trials
asked from Optuna one at a time and each trial's env runs checkpointed like any other run. The tuned stage
runs the study's best recipe; the tianshou stage then runs Tianshou's (today's --recipe tuned, as the study
ran it) on the same envs and seeds, so that the two are compared at the full budget.

Runs use a fixed commit: a run starts on the campaign's commit (the repository's HEAD when the campaign was
first started; --commit REV moves it for runs not yet started) and always resumes on the commit it started
on, from a git worktree of that commit under --home (default ../ppo-campaign beside the repository), so the
repository itself can change meanwhile. Everything measured is exported, as the runs advance, from the
TensorBoard logs to benchmark/results/runs/ (commit it: the curves are then kept even if --home is lost):
  {env_id}__{variant}__{seed}.csv           step,return,length of every episode (Atari: every game)
  {env_id}__{variant}__{seed}.scalars.csv   step,wall_time and every per-iteration tag
  runs.csv                                  each run's commit, script, flags, budget reached
  study_trials.csv                          the study's trials: parameters, per-env returns, objective
"""

import argparse
import csv
import ctypes
import fcntl
import glob
import json
import os
import shutil
import signal
import subprocess
import sys
import time
from dataclasses import dataclass, field

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
if ROOT not in sys.path:
    sys.path.insert(0, ROOT)  # run as a file, the benchmark package is still importable

from benchmark.bench import read_events  # noqa: E402

OUT = os.path.join(ROOT, "benchmark", "results", "runs")
MUJOCO = ["Hopper-v4", "HalfCheetah-v4", "Walker2d-v4", "InvertedDoublePendulum-v4", "Swimmer-v4"]
# iterations between checkpoints: a few minutes of a run at one thread (Atari ~5 s an iteration, MuJoCo ~2 s)
CHECKPOINT_EVERY = {"ppo_atari.py": 60, "ppo_atari_ale_vector.py": 60, "ppo_continuous_action.py": 100, "ppo.py": 100}
# run-control flags of every run: one thread, no progress bar (the log is a file)
CONTROL = {
    "ppo_atari.py": ["--update-threads", "1", "--gym-vector", "sync"],
    "ppo_atari_ale_vector.py": ["--update-threads", "1"],
}
# the study: benchmark/tune.py's recipe study, resumed in slices
STUDY = dict(
    envs=["InvertedDoublePendulum-v4", "Hopper-v4", "HalfCheetah-v4"],
    normalize=[9200, 3000, 5000],
    budget=300_000,
    seed=1,
    known=["cleanrl", "tianshou", "andrychowicz"],
    sampled=30,
)


@dataclass
class Spec:
    """One run of the campaign, up to one budget."""

    env_id: str
    variant: str
    seed: int
    script: str
    total: int  # --total-timesteps: the schedule
    budget: int  # the step to reach in this stage (--stop-at-step)
    flags: list[str] = field(default_factory=list)

    @property
    def key(self) -> str:
        return f"{self.env_id}__{self.variant}__{self.seed}"


def breakout(variant: str, seeds, budget: int, flags=(), script: str = "ppo_atari.py") -> list[Spec]:
    env = "BreakoutNoFrameskip-v4"
    return [Spec(env, variant, seed, script, 10_000_000, budget, list(flags)) for seed in seeds]


def mujoco(variant: str, flags=()) -> list[Spec]:
    seeds, script = [11, 12, 13], "ppo_continuous_action.py"
    return [Spec(env, variant, seed, script, 1_000_000, 1_000_000, list(flags)) for seed in seeds for env in MUJOCO]


LANES = {
    "breakout": [
        breakout("default", [1, 2, 3], 2_000_000),  # the reference schedule (10M steps), to 2M first
        breakout("vector", [1, 2, 3], 1_000_000, ["--ale-threads", "1"], script="ppo_atari_ale_vector.py"),
        breakout("default", [1, 2, 3], 10_000_000),  # then onward, as time allows
    ],
    "mujoco": ["defaults", "study", "tuned", "tianshou"],  # (built from the study's state: see stage_runs)
}


# ---------------------------------------------------------------------------------------------------------------
# State: the campaign's commit, each run's commit and flags, under --home
# ---------------------------------------------------------------------------------------------------------------
def git(*args: str) -> str:
    return subprocess.run(["git", "-C", ROOT, *args], check=True, capture_output=True, text=True).stdout.strip()


def load_state(home: str) -> dict:
    path = os.path.join(home, "state.json")
    if not os.path.exists(path):
        return {"commit": None, "runs": {}}
    with open(path) as f:
        return json.load(f)


def save_state(home: str, state: dict) -> None:
    with open(os.path.join(home, "state.json.tmp"), "w") as f:
        json.dump(state, f, indent=1)
    os.replace(os.path.join(home, "state.json.tmp"), os.path.join(home, "state.json"))


def adopt_exported(state: dict) -> None:
    """Runs that ended on a machine whose --home is gone: their exported curves (committed, in runs.csv as ended)
    are their result, so they count as done and are not run again."""
    for row in read_csv(os.path.join(OUT, "runs.csv")):
        if row["run"] not in state["runs"] and row.get("ended") == "True":
            state["runs"][row["run"]] = {
                "commit": row["commit"],
                "script": row["script"],
                "total": int(row["total_timesteps"]),
                "flags": row["flags"].split(),
                "step": int(row["checkpoint_step"]),
                "ended": True,
            }


def worktree(home: str, commit: str) -> str:
    """A checkout of `commit` under home/worktrees (made once)."""
    path = os.path.join(home, "worktrees", commit[:12])
    if not os.path.isdir(path):
        git("worktree", "prune")
        git("worktree", "add", "--detach", path, commit)
    return path


def run_dir(home: str, key: str) -> str | None:
    """The run directory of a run (the one directory under its runs/), None before it started."""
    found = glob.glob(os.path.join(home, "work", key, "runs", "*"))
    return found[0] if len(found) == 1 else None


def checkpoint_step(home: str, key: str) -> tuple[int, bool]:
    """(the global step of a run's last checkpoint (0: none yet), whether it is the run's last iteration)."""
    import torch

    path = run_dir(home, key)
    found = glob.glob(os.path.join(path, "*.cleanrl_model")) if path else []
    if not found:
        return 0, False
    checkpoint = torch.load(found[0], map_location="cpu", weights_only=True)
    return int(checkpoint["global_step"]), checkpoint["iteration"] >= checkpoint["args"]["num_iterations"]


# ---------------------------------------------------------------------------------------------------------------
# The study (benchmark/tune.py's recipe space), asked and told through Optuna; its trials are runs like any other
# ---------------------------------------------------------------------------------------------------------------
def load_study(home: str):
    import optuna

    optuna.logging.set_verbosity(optuna.logging.WARNING)
    storage = f"sqlite:///{os.path.join(home, 'study.db')}"
    try:
        earlier = len(optuna.load_study(study_name="recipe", storage=storage).trials)
    except KeyError:
        earlier = None
    # seeded by the number of trials before, so that a resumed study doesn't draw the same trials again
    sampler = optuna.samplers.TPESampler(seed=earlier or 0)
    study = optuna.create_study(
        study_name="recipe", storage=storage, load_if_exists=True, direction="maximize", sampler=sampler
    )
    if earlier is None:
        from benchmark.tune import RECIPES

        for name in STUDY["known"]:
            study.enqueue_trial(RECIPES[name], user_attrs={"recipe": name})
    return study


def trial_runs(trial_number: int, params: dict) -> list[Spec]:
    from optuna.trial import FixedTrial

    from benchmark.tune import command_flags, suggest_recipe

    flags = command_flags(suggest_recipe(FixedTrial(params)))
    budget, script = STUDY["budget"], "ppo_continuous_action.py"
    return [
        Spec(env, f"trial{trial_number:03d}", STUDY["seed"], script, budget, budget, flags) for env in STUDY["envs"]
    ]


def trial_returns(runs: list[Spec]) -> dict[str, float] | None:
    """The last-100-episode mean return of each env run of a trial, from its exported episodes."""
    import numpy as np

    returns = {}
    for spec in runs:
        episodes = read_csv(csv_path(spec))
        if not episodes or not episodes[0]["return"]:
            return None
        returns[spec.env_id] = float(np.mean([float(row["return"]) for row in episodes[-100:]]))
    return returns


def read_csv(path: str) -> list[dict]:
    if not os.path.exists(path):
        return []
    with open(path) as f:
        return list(csv.DictReader(f))


def study_stage(home: str, finished, failed, ask: bool = True) -> tuple[list[Spec], bool]:
    """(the runs of the study's open trials, whether the study is done): a trial whose env runs are all at
    their budget is told its objective; a new trial is asked while fewer than STUDY['sampled'] sampled trials
    (beyond the known recipes) are done."""
    from optuna.trial import TrialState

    study = load_study(home)
    for trial in study.get_trials(deepcopy=False, states=(TrialState.RUNNING,)):
        runs = trial_runs(trial.number, trial.params)
        if any(spec.key in failed for spec in runs):
            study.tell(trial.number, state=TrialState.FAIL)
        elif all(finished(spec) for spec in runs):
            returns = trial_returns(runs)
            if returns is None:  # (no episode ended)
                study.tell(trial.number, state=TrialState.FAIL)
                continue
            objective = [returns[env] / scale for env, scale in zip(STUDY["envs"], STUDY["normalize"])]
            study.tell(trial.number, sum(objective) / len(objective))
    trials = study.get_trials(deepcopy=False)
    done = [t for t in trials if t.state in (TrialState.COMPLETE, TrialState.FAIL) and "recipe" not in t.user_attrs]
    running = [t for t in trials if t.state == TrialState.RUNNING]
    if ask and not running and len(done) < STUDY["sampled"]:
        from benchmark.tune import suggest_recipe

        trial = study.ask()
        suggest_recipe(trial)  # (the parameters are drawn, or the enqueued recipe's taken)
        running = [trial]
    export_study(study)
    runs = [spec for t in running for spec in trial_runs(t.number, t.params)]
    return runs, len(done) >= STUDY["sampled"] and not running


def best_recipe(home: str) -> list[str]:
    """The flags of the tuned runs: the study's best recipe by its objective, if it beats Tianshou's (the
    current --recipe tuned); else --recipe tuned."""
    from optuna.trial import FixedTrial, TrialState

    from benchmark.tune import command_flags, suggest_recipe

    complete = [t for t in load_study(home).get_trials(states=(TrialState.COMPLETE,))]
    current = [t.value for t in complete if t.user_attrs.get("recipe") == "tianshou"]
    best = max(complete, key=lambda t: t.value, default=None)
    if best is None or not current or best.value <= current[0] or best.user_attrs.get("recipe") == "tianshou":
        return ["--recipe", "tuned"]
    return command_flags(suggest_recipe(FixedTrial(best.params)))


def known_recipe(home: str, name: str) -> list[str] | None:
    """The flags of one of the study's known recipes (as its trial ran them), None if it has no complete trial."""
    from optuna.trial import FixedTrial, TrialState

    from benchmark.tune import command_flags, suggest_recipe

    complete = load_study(home).get_trials(states=(TrialState.COMPLETE,))
    trials = [t for t in complete if t.user_attrs.get("recipe") == name]
    if not trials:
        return None
    return command_flags(suggest_recipe(FixedTrial(trials[0].params)))


def export_study(study) -> None:
    from optuna.trial import TrialState

    rows = []
    for t in study.get_trials(deepcopy=False):
        if t.state == TrialState.WAITING:  # (a known recipe enqueued, not yet asked: no parameters yet)
            continue
        returns = trial_returns(trial_runs(t.number, t.params)) or {}
        row = {"trial": t.number, "state": t.state.name, "recipe": t.user_attrs.get("recipe", "sampled")}
        row.update({name: t.params.get(name) for name in sorted(t.params)})
        row.update({env: returns.get(env) for env in STUDY["envs"]})
        row["objective"] = t.value
        rows.append(row)
    write_rows(os.path.join(OUT, "study_trials.csv"), rows)


def write_rows(path: str, rows: list[dict]) -> None:
    columns = list(dict.fromkeys(name for row in rows for name in row))
    os.makedirs(os.path.dirname(path), exist_ok=True)
    with open(path + ".tmp", "w", newline="") as f:
        writer = csv.DictWriter(f, columns)
        writer.writeheader()
        writer.writerows(rows)
    os.replace(path + ".tmp", path)


# ---------------------------------------------------------------------------------------------------------------
# Export: a run's TensorBoard log (what a resume purged is gone from it) to CSVs under benchmark/results/runs
# ---------------------------------------------------------------------------------------------------------------
def csv_path(spec: Spec, kind: str = "") -> str:
    """Where a run's episodes (kind "") or per-iteration scalars (kind ".scalars") are exported."""
    folder = os.path.join(OUT, "study") if spec.variant.startswith("trial") else OUT
    return os.path.join(folder, f"{spec.key}{kind}.csv")


def export(home: str, spec: Spec) -> None:
    path = run_dir(home, spec.key)
    if path is None:
        return
    events = read_events(path)
    returns, lengths = events.get("charts/episodic_return", []), events.get("charts/episodic_length", [])
    episodes = [{"step": s, "return": r, "length": int(n)} for (s, r, _), (_, n, _) in zip(returns, lengths)]
    write_rows(csv_path(spec), episodes or [{"step": None, "return": None, "length": None}])
    per_iteration = {tag: dict((s, v) for s, v, _ in values) for tag, values in events.items() if tag.count("/")}
    per_iteration = {tag: values for tag, values in per_iteration.items() if not tag.startswith("charts/episodic")}
    wall = {s: t for s, _, t in events.get("charts/SPS", [])}
    rows = [
        {"step": s, "wall_time": f"{t:.3f}", **{tag: per_iteration[tag].get(s) for tag in sorted(per_iteration)}}
        for s, t in sorted(wall.items())
    ]
    if rows:
        write_rows(csv_path(spec, ".scalars"), rows)


def export_index(state: dict) -> None:
    rows = [
        {
            "run": key,
            "commit": run["commit"],
            "script": run["script"],
            "total_timesteps": run["total"],
            "checkpoint_step": run.get("step", 0),
            "ended": run.get("ended", False),
            "flags": " ".join(run["flags"]),
        }
        for key, run in sorted(state["runs"].items())
    ]
    write_rows(os.path.join(OUT, "runs.csv"), rows)


# ---------------------------------------------------------------------------------------------------------------
# The runner
# ---------------------------------------------------------------------------------------------------------------
def die_with_parent() -> None:
    """(Linux) a run gets SIGTERM, and so writes its checkpoint and stops, when the runner dies, even by SIGKILL."""
    os.nice(10)
    try:
        ctypes.CDLL("libc.so.6", use_errno=True).prctl(1, signal.SIGTERM)  # PR_SET_PDEATHSIG
    except OSError:
        pass


def start(home: str, state: dict, spec: Spec) -> subprocess.Popen | None:
    commit = state["runs"].get(spec.key, {}).get("commit", state["commit"])
    tree = worktree(home, commit)
    if not os.path.exists(os.path.join(tree, spec.script)):  # (a run declared for a script newer than the commit)
        return None
    record = state["runs"].setdefault(
        spec.key, {"commit": commit, "script": spec.script, "total": spec.total, "flags": spec.flags}
    )
    folder = os.path.join(home, "work", spec.key)
    existing = run_dir(home, spec.key)
    if existing is not None and checkpoint_step(home, spec.key) == 0:  # stopped before its first checkpoint
        shutil.rmtree(existing)
        existing = None
    control = ["--no-progress", "--checkpoint-every", str(CHECKPOINT_EVERY[spec.script]), *CONTROL.get(spec.script, [])]
    if spec.budget < record["total"]:
        control += ["--stop-at-step", str(spec.budget)]
    if existing is None:
        learning = ["--env-id", spec.env_id, "--seed", str(spec.seed), "--total-timesteps", str(record["total"])]
        command = [*learning, *record["flags"], *control]
    else:
        command = ["--resume", existing, *control]
    os.makedirs(folder, exist_ok=True)
    log = open(os.path.join(folder, "log.txt"), "a")
    log.write(f"\n# {time.strftime('%Y-%m-%d %H:%M:%S')} {' '.join(command)}\n")
    log.flush()
    process = subprocess.Popen(
        [sys.executable, os.path.join(tree, record["script"]), *command],
        cwd=folder,
        stdout=log,
        stderr=subprocess.STDOUT,
        preexec_fn=die_with_parent,
    )
    process.log = log
    return process


def spec_of(key: str, record: dict) -> Spec:
    """The Spec of a run of the state (its budget: where its checkpoint is)."""
    env_id, variant, seed = key.split("__")
    return Spec(env_id, variant, int(seed), record["script"], record["total"], record.get("step", 0), record["flags"])


def stage_runs(home: str, state: dict, lane: str, finished, failed, ask: bool = True) -> list[Spec]:
    """The runs of a lane's first unfinished stage ([] when the lane is done)."""
    for stage in LANES[lane]:
        if stage == "defaults":
            runs = mujoco("default")
        elif stage == "study":
            runs, done = study_stage(home, finished, failed, ask)
            if not done:  # (a trial's env runs that reached their budget wait for the others)
                return [spec for spec in runs if not finished(spec)]
            continue
        elif stage == "tuned":
            if "tuned_flags" not in state and not ask:
                return []
            if "tuned_flags" not in state:
                state["tuned_flags"] = best_recipe(home)
            runs = mujoco("tuned", state["tuned_flags"])
        elif stage == "tianshou":
            # today's --recipe tuned beside the study's best, on the same seeds and commit (unless it is the best)
            flags = known_recipe(home, "tianshou")
            if flags is None or state.get("tuned_flags", ["--recipe", "tuned"]) == ["--recipe", "tuned"]:
                continue
            runs = mujoco("tianshou", flags)
        else:
            runs = stage
        unfinished = [spec for spec in runs if not finished(spec)]
        if unfinished:
            return unfinished
    return []


def status(home: str, state: dict, specs: dict[str, Spec], running: dict) -> str:
    lines = [f"{'run':44} {'steps done':>21} {'steps/s':>8} {'time left':>10}"]
    for key, spec in specs.items():
        step, ended = state["runs"].get(key, {}).get("step", 0), state["runs"].get(key, {}).get("ended", False)
        scalars = read_csv(csv_path(spec, ".scalars"))
        sps = float(scalars[-1]["charts/SPS"]) if scalars and scalars[-1].get("charts/SPS") else None
        left = f"{(spec.budget - step) / sps / 3600:8.1f} h" if sps and step < spec.budget and not ended else "-"
        mark = " (running)" if key in running else ""
        sps_text = f"{sps:8.0f}" if sps else "       -"
        lines.append(f"{key:44} {step:>10,} / {spec.budget:>10,}{sps_text} {left:>10}{mark}")
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--hours", type=float, default=2.5, help="stop (cleanly) after this long")
    parser.add_argument("--jobs", type=int, default=os.cpu_count(), help="runs at a time (one thread each)")
    parser.add_argument(
        "--home",
        default=os.path.join(os.path.dirname(ROOT), "ppo-campaign"),
        help="worktrees, run directories, the study's database",
    )
    parser.add_argument("--commit", help="start the runs not yet started on this commit (default: as before)")
    parser.add_argument("--status", action="store_true", help="print where each run stands, and stop")
    parser.add_argument("--lanes", nargs="+", default=list(LANES), choices=list(LANES), help="advance these alone")
    options = parser.parse_args()
    os.makedirs(options.home, exist_ok=True)
    lock = open(os.path.join(options.home, "campaign.lock"), "w")
    try:
        if not options.status:  # (--status only reads: it may look while a runner works)
            fcntl.flock(lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        sys.exit(f"campaign.py: error: another runner is advancing {options.home}")
    state = load_state(options.home)
    adopt_exported(state)
    if options.commit or state["commit"] is None:
        state["commit"] = git("rev-parse", options.commit or "HEAD")
    if not options.status:
        save_state(options.home, state)

    failed, running, seen = set(), {}, {}  # running: {key: (spec, lane, process)}

    def finished(spec: Spec) -> bool:
        seen[spec.key] = spec
        record = state["runs"].get(spec.key, {})
        return record.get("ended", False) or record.get("step", 0) >= spec.budget

    def measure(key: str) -> None:  # the truth is the checkpoint (a runner killed mid-way too)
        if run_dir(options.home, key) is None:  # (not started yet; or adopted: its exported record is all there is)
            state["runs"][key].setdefault("step", 0)
            return
        state["runs"][key]["step"], state["runs"][key]["ended"] = checkpoint_step(options.home, key)

    for key, record in state["runs"].items():  # (runs that went on after the last export: a runner killed)
        before = record.get("step")
        measure(key)
        stale = record["step"] != before or not os.path.exists(csv_path(spec_of(key, record)))
        if stale and not options.status:
            export(options.home, spec_of(key, record))
    if options.status:
        for lane in options.lanes:  # (so that `seen` holds every run of the stages so far)
            stage_runs(options.home, state, lane, finished, failed, ask=False)
        return print(status(options.home, state, seen, running))
    stop = {"asked": None}

    def ask_stop(signum, frame):
        stop["asked"] = signal.Signals(signum).name

    signal.signal(signal.SIGTERM, ask_stop)
    signal.signal(signal.SIGINT, ask_stop)
    deadline, last_export, refill, stopping = time.time() + options.hours * 3600, time.time(), True, False
    while True:
        if stop["asked"] is None and time.time() > deadline:
            stop["asked"] = f"--hours {options.hours}"
        if stop["asked"] is None and refill:  # fill the free slots: to the lane with the fewest runs, one by one
            waiting = {lane: stage_runs(options.home, state, lane, finished, failed) for lane in options.lanes}
            waiting = {
                lane: [s for s in runs if s.key not in running and s.key not in failed]
                for lane, runs in waiting.items()
            }
            while len(running) < options.jobs and any(waiting.values()):
                lane = min(
                    (lane for lane in waiting if waiting[lane]),
                    key=lambda name: sum(run[1] == name for run in running.values()),
                )
                spec = waiting[lane].pop(0)
                process = start(options.home, state, spec)
                if process is None:
                    failed.add(spec.key)
                    print(
                        f"{spec.key}: {spec.script} is not in commit {state['commit'][:12]}; move the campaign's "
                        "commit for new runs with --commit REV",
                        flush=True,
                    )
                    continue
                running[spec.key] = (spec, lane, process)
                print(f"{time.strftime('%H:%M:%S')} started {spec.key} toward step {spec.budget:,}", flush=True)
                save_state(options.home, state)
            refill = False
        if stop["asked"] is not None and not stopping:  # each run finishes its iteration and checkpoints
            for _, _, process in running.values():
                process.send_signal(signal.SIGTERM)
            stopping = True
        for key, (spec, _, process) in list(running.items()):
            code = process.poll()
            if code is None:
                continue
            process.log.close()
            del running[key]
            measure(key)
            export(options.home, spec)
            if code not in (0, 143, -15):
                failed.add(key)
                print(
                    f"{time.strftime('%H:%M:%S')} {key} failed (exit code {code}); see "
                    f"{os.path.join(options.home, 'work', key, 'log.txt')}",
                    flush=True,
                )
            else:
                print(f"{time.strftime('%H:%M:%S')} {key} stopped at step {state['runs'][key]['step']:,}", flush=True)
            save_state(options.home, state)
            export_index(state)
            refill = True
        if time.time() - last_export > 600:  # the running runs' curves so far (TensorBoard flushes every 2 min)
            for key, (spec, _, _) in running.items():
                measure(key)
                export(options.home, spec)
            export_index(state)
            save_state(options.home, state)
            last_export, refill = time.time(), True
        if not running and (stop["asked"] is not None or not refill):
            break
        time.sleep(2)
    export_index(state)
    print(f"stopped ({stop['asked'] or 'nothing left to run'}); where each run stands:")
    print(status(options.home, state, seen, running))
    print(f"go on with: python benchmark/campaign.py --hours H --home {options.home}")


if __name__ == "__main__":
    main()
