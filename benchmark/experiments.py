"""Run a grid of training runs (scripts x envs x variants x seeds) in parallel, then tabulate and plot them.

    python benchmark/experiments.py ppo.py:CartPole-v1 ppo_continuous_action.py:InvertedPendulum-v4 \\
        --variant clip= --variant "kl-penalty=--loss-type kl-penalty" --seeds 1 2 3 -- --total-timesteps 100000

A variant is a name and the flags it adds (none: the script's defaults); flags after `--` go to every run.
Each run is a fresh process of the script, started from its own folder
<out>/<script>/<env id>/<flags>/seed<seed>/ so that its runs/ lands there, its output in log.txt. A run
that ends well leaves done.json there (its command, run directory, start time, wall time); a run whose
done.json holds the same command is complete and is not run again, so a grid that was stopped resumes
where it was (after changing a script, remove its folders or give another --out, to run them again).
The folder is named by the flags, not by the variant, so that variants (of several experiments) that
come to the same command share their runs. Runs go in parallel, as many at once as this process has
CPUs (--jobs to change it); each script trains on one thread. Steps per second are measured under that
load.

Reported per (env, variant): the final return, which is each seed's mean return over its last 100
episodes, as mean ± standard deviation over seeds (numpy's std, ddof 0) and as interquartile mean (IQM)
over seeds with a percentile-bootstrap 95% confidence interval; the median over seeds of steps per second
(as the run logs it in charts/SPS: steps / training time) and of the wall time of the whole process.
With the default variant only, published final returns (REFERENCES) stand beside ours. Curves
(<out>/curves_steps.png, <out>/curves_time.png): each seed's episodic returns, smoothed over 20
episodes, interpolated onto a common grid of steps (or of seconds since the process started, as the
run logged them: at the end of each rollout); the line
is their mean over seeds, the band the mean ± one standard deviation over seeds. Table: <out>/table.md.
"""

import argparse
import ast
import hashlib
import json
import os
import re
import shlex
import subprocess
import sys
import time
from concurrent.futures import ThreadPoolExecutor, as_completed
from dataclasses import dataclass

import numpy as np

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
if ROOT not in sys.path:
    sys.path.insert(0, ROOT)  # run as a file, the benchmark package is still importable

from benchmark.bench import fmt, median, parse_args_and_flags, pyplot, read_events, running_mean, summarize  # noqa: E402

# Published final returns to set ours beside (CleanRL's documentation: rl-algorithms/ppo.md, and for
# InvertedDoublePendulum its 8M-step runs in rl-algorithms/rpo.md), keyed by (script, env id).
REFERENCES = {
    ("ppo.py", "CartPole-v1"): "490.04 ± 6.12 (CleanRL, 500k steps)",
    ("ppo_atari.py", "BreakoutNoFrameskip-v4"): "414.66 ± 28.09 (CleanRL, 10M steps)",
}


@dataclass(frozen=True)
class Run:
    """One training run: a script (path relative to the repository root, or absolute), an env, a seed, flags."""

    script: str
    env_id: str
    seed: int
    flags: tuple[str, ...] = ()

    def command(self) -> list[str]:
        return [os.path.basename(self.script), "--env-id", self.env_id, "--seed", str(self.seed), *self.flags]

    def folder(self, out: str) -> str:
        stem = os.path.basename(self.script)[: -len(".py")]
        return os.path.join(out, stem, self.env_id, flags_name(self.flags), f"seed{self.seed}")


def flags_name(flags) -> str:
    """A folder name for a list of flags: `--clip-coef 0.1 --no-save-model` -> clip-coef=0.1_no-save-model."""
    parts, i = [], 0
    while i < len(flags):
        has_value = i + 1 < len(flags) and not flags[i + 1].startswith("--")
        parts.append(flags[i].lstrip("-") + (f"={flags[i + 1]}" if has_value else ""))
        i += 2 if has_value else 1
    name = re.sub(r"[^A-Za-z0-9._=+-]", "-", "_".join(parts)) or "defaults"
    return name if len(name) <= 100 else name[:80] + "_" + hashlib.sha1(name.encode()).hexdigest()[:12]


def script_args(script: str) -> dict[str, object]:
    """The fields of a script's Args class with their defaults (None where the default is not a literal),
    read from its source, so without importing it."""
    tree = ast.parse(open(os.path.join(ROOT, script)).read())
    (args,) = [node for node in tree.body if isinstance(node, ast.ClassDef) and node.name == "Args"]
    fields = {}
    for node in args.body:
        if isinstance(node, ast.AnnAssign) and isinstance(node.target, ast.Name):
            try:
                fields[node.target.id] = ast.literal_eval(node.value)
            except (ValueError, TypeError, SyntaxError):
                fields[node.target.id] = None
    return fields


def unsupported_flags(script: str, flags) -> list[str]:
    """The flags (names starting with --) that the script's command line does not have."""
    fields = script_args(script)

    def known(flag: str) -> bool:
        name = flag[2:].replace("-", "_")
        return name in fields or (name.startswith("no_") and isinstance(fields.get(name[3:]), bool))

    return [flag for flag in flags if flag.startswith("--") and not known(flag)]


def read_done(run: Run, out: str) -> dict | None:
    """The record of a complete run (None if it has not run, failed, or ran with another command)."""
    path = os.path.join(run.folder(out), "done.json")
    if not os.path.isfile(path):
        return None
    with open(path) as f:
        done = json.load(f)
    return done if done["command"] == run.command() else None


def runs_in(folder: str) -> set[str]:
    """The run directories in folder/runs/ (made if missing), as paths relative to the folder."""
    os.makedirs(os.path.join(folder, "runs"), exist_ok=True)
    return {os.path.join("runs", name) for name in os.listdir(os.path.join(folder, "runs"))}


def execute(run: Run, out: str) -> str:
    """Run `run` from its folder unless it is complete: 'done' (already), 'ran' or 'failed'."""
    if read_done(run, out) is not None:
        return "done"
    folder = run.folder(out)
    before = runs_in(folder)
    start = time.time()
    with open(os.path.join(folder, "log.txt"), "w") as log:
        command = [sys.executable, os.path.join(ROOT, run.script), *run.command()[1:]]
        returncode = subprocess.run(command, cwd=folder, stdout=log, stderr=subprocess.STDOUT).returncode
    wall = time.time() - start
    new = runs_in(folder) - before
    if returncode != 0 or len(new) != 1:
        return "failed"
    done = {"command": run.command(), "run_dir": new.pop(), "start_time": start, "wall_s": wall}
    with open(os.path.join(folder, "done.json"), "w") as f:
        json.dump(done, f, indent=1)
    return "ran"


def cpus() -> int:
    """The CPUs this process may run on (what taskset allows), else os.cpu_count()."""
    return len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1


def run_all(runs, out: str, jobs: int | None = None) -> dict[str, int]:
    """Run every run not yet complete, `jobs` at a time (default: one per CPU); returns counts by outcome."""
    runs = list(dict.fromkeys(runs))  # the same run asked for twice runs once
    counts = {"done": 0, "ran": 0, "failed": 0}
    with ThreadPoolExecutor(max_workers=jobs or cpus()) as pool:
        futures = {pool.submit(execute, run, out): run for run in runs}
        for i, future in enumerate(as_completed(futures), 1):
            run, outcome = futures[future], future.result()
            counts[outcome] += 1
            where = os.path.relpath(run.folder(out), out)
            note = f" (see {os.path.join(run.folder(out), 'log.txt')})" if outcome == "failed" else ""
            print(f"[{i}/{len(runs)}] {where}: {outcome}{note}", flush=True)
    return counts


def load_run_dir(run_dir: str, wall: float | None = None, start: float | None = None) -> dict:
    """The figures and curves of one run directory: bench.summarize's, and `times`, each episode's time in
    seconds since `start` (the process start; without it, the run's first logged value). An episode's
    time is when the run logged it, at the end of the rollout it ended in."""
    events = read_events(run_dir)
    origin = start if start is not None else min(event[2] for tag in events.values() for event in tag)
    row = summarize(run_dir, wall, None, events)
    row["times"] = [event[2] - origin for event in events.get("charts/episodic_return", [])]
    if wall is None:
        row["wall_s"] = max(event[2] for tag in events.values() for event in tag) - origin
    return row


def collect(labelled, out: str) -> list[dict]:
    """The rows of the complete runs among (variant, Run) pairs; runs not complete are left out."""
    rows = []
    for variant, run in labelled:
        done = read_done(run, out)
        if done is not None:
            row = load_run_dir(os.path.join(run.folder(out), done["run_dir"]), done["wall_s"], done["start_time"])
            names = {"script": os.path.basename(run.script), "env_id": run.env_id, "variant": variant, "seed": run.seed}
            rows.append({**names, **row})
    return rows


def grid(targets, variants: dict[str, list[str]], seeds) -> list[tuple[str, Run]]:
    """(variant, Run) for each target (script, env id, flags for all its runs), variant and seed."""
    return [
        (name, Run(script, env_id, seed, (*flags, *variant_flags)))
        for script, env_id, flags in targets
        for name, variant_flags in variants.items()
        for seed in seeds
    ]


# ---------------------------------------------------------------------------------------------------
# Statistics over seeds
# ---------------------------------------------------------------------------------------------------


def iqm(values, axis: int = -1) -> np.ndarray:
    """Interquartile mean: the mean of the middle 50% of the values. Each of the n sorted values stands for
    a 1/n slice of the distribution and weighs as much of its slice as lies between the 25% and 75%
    quantiles. When 4 divides n that is the plain mean of the middle n/2 values (scipy's trim_mean(x,
    0.25)); otherwise the values at the edges count in part (3 values weigh 1/6, 2/3, 1/6, where a trimmed
    mean would trim nothing), so that the IQM stays a robust statistic for the few seeds runs have."""
    x = np.moveaxis(np.sort(np.asarray(values, dtype=float), axis=axis), axis, -1)
    edges = np.arange(x.shape[-1] + 1) / x.shape[-1]
    weights = np.clip(np.minimum(edges[1:], 0.75) - np.maximum(edges[:-1], 0.25), 0, None) / 0.5
    return x @ weights


def bootstrap_ci(
    values, statistic=iqm, resamples: int = 2000, level: float = 0.95, seed: int = 0
) -> tuple[float, float]:
    """Percentile bootstrap confidence interval of `statistic` (called with axis=-1): the values are
    resampled with replacement `resamples` times (a seeded RNG, so the same values give the same interval)."""
    x = np.asarray(values, dtype=float)
    samples = x[np.random.default_rng(seed).integers(0, len(x), size=(resamples, len(x)))]
    low, high = np.quantile(statistic(samples, axis=-1), [(1 - level) / 2, (1 + level) / 2])
    return float(low), float(high)


def grouped(rows: list[dict], *keys: str) -> dict:
    """Rows grouped by the values of `keys` (a tuple; the value itself for one key), in order of appearance."""
    groups = {}
    for row in rows:
        key = tuple(row[k] for k in keys)
        groups.setdefault(key[0] if len(keys) == 1 else key, []).append(row)
    return groups


def table(rows: list[dict], references: dict | None = None) -> str:
    """A Markdown table, one line per (script, env, variant) over its seeds; with `references` (such as
    REFERENCES, for runs at the defaults), published numbers beside the first line of each (script, env)."""
    references = references or {}
    with_references = any((row["script"], row["env_id"]) in references for row in rows)
    lines = [
        "| env | script | variant | seeds | steps | final return (mean ± std) | IQM [95% CI] | steps/s "
        "| wall time (s) |" + (" reference |" if with_references else ""),
        "|---|---|---|---|---|---|---|---|---|" + ("---|" if with_references else ""),
    ]
    referenced = set()
    for (script, env_id, variant), group in grouped(rows, "script", "env_id", "variant").items():
        finals = np.array([row["final_return"] for row in group])
        low, high = bootstrap_ci(finals)
        line = (
            f"| {env_id} | {script} | {variant} | {len(group)} | {fmt(median(group, 'steps'), ',.0f')} | "
            f"{finals.mean():.2f} ± {finals.std():.2f} | {iqm(finals):.2f} [{low:.2f}, {high:.2f}] | "
            f"{fmt(median(group, 'sps'), ',.0f')} | {fmt(median(group, 'wall_s'), ',.0f')} |"
        )
        if with_references:
            first = (script, env_id) not in referenced
            referenced.add((script, env_id))
            line += f" {references.get((script, env_id), '') if first else ''} |"
        lines.append(line)
    return "\n".join(lines)


def curve_band(rows: list[dict], x: str, points: int = 200):
    """(grid, mean, std) over seeds of the 20-episode smoothed returns against x ('steps' or 'time'); None
    without episodes."""
    curves = []
    for row in rows:
        xs = np.array(row["curve"][0] if x == "steps" else row["times"], dtype=float)
        if len(xs):
            curves.append((xs, running_mean(row["curve"][1], 20)))
    if not curves:
        return None
    # the x range all seeds cover (no seed extrapolated past its own data)
    grid_x = np.linspace(max(xs[0] for xs, _ in curves), min(xs[-1] for xs, _ in curves), points)
    ys = np.stack([np.interp(grid_x, xs, ys) for xs, ys in curves])
    return grid_x, ys.mean(axis=0), ys.std(axis=0)


def plot_curves(rows: list[dict], path: str, x: str = "steps") -> None:
    """Episodic return against steps (x='steps') or wall-clock seconds (x='time'): one panel per env, one
    line per variant, mean over seeds with a band of ± one standard deviation."""
    plt = pyplot()
    envs = grouped(rows, "env_id")
    fig, axes = plt.subplots(1, max(1, len(envs)), figsize=(5.5 * max(1, len(envs)), 4), squeeze=False)
    colors = plt.rcParams["axes.prop_cycle"].by_key()["color"]
    for ax, (env_id, env_rows) in zip(axes[0], envs.items()):
        for i, (variant, group) in enumerate(grouped(env_rows, "variant").items()):
            band = curve_band(group, x)
            if band is None:
                continue
            grid_x, mean, std = band
            color = colors[i % len(colors)]
            ax.plot(grid_x, mean, color=color, label=f"{variant} ({len(group)} seed{'s' * (len(group) > 1)})")
            ax.fill_between(grid_x, mean - std, mean + std, color=color, alpha=0.2, linewidth=0)
        xlabel = "environment steps" if x == "steps" else "wall-clock time since start (s)"
        ax.set(title=env_id, xlabel=xlabel, ylabel="episodic return (20-episode mean)")
        ax.grid(alpha=0.3)
        ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)


def report(rows: list[dict], out: str, references: dict | None = None) -> str:
    """Write <out>/table.md, <out>/curves_steps.png and <out>/curves_time.png; returns the table."""
    text = table(rows, references)
    with open(os.path.join(out, "table.md"), "w") as f:
        f.write(text + "\n")
    for x in ("steps", "time"):
        plot_curves(rows, os.path.join(out, f"curves_{x}.png"), x)
    return text


def parse_variant(text: str) -> tuple[str, list[str]]:
    name, _, flags = text.partition("=")
    return name, shlex.split(flags)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("targets", nargs="+", metavar="SCRIPT:ENV", help="e.g. ppo.py:CartPole-v1")
    parser.add_argument("--variant", action="append", type=parse_variant, metavar="NAME=FLAGS",
                        help='a variant and its flags, e.g. "kl=--loss-type kl-penalty" (repeat; default: '
                             "default=, the script's defaults)")  # fmt: skip
    parser.add_argument("--seeds", type=int, nargs="+", default=[1, 2, 3])
    parser.add_argument("--jobs", type=int, help="runs at a time (default: the CPUs this process may use)")
    parser.add_argument("--out", default=os.path.join(ROOT, "benchmark", "out", "experiments"))
    parser.add_argument("--no-run", action="store_true", help="only report the runs that are complete")
    cli, common = parse_args_and_flags(parser)

    targets = [(*target.split(":", 1), common) for target in cli.targets]
    labelled = grid(targets, dict(cli.variant or [("default", [])]), cli.seeds)
    out = os.path.abspath(cli.out)
    os.makedirs(out, exist_ok=True)
    if not cli.no_run:
        counts = run_all([run for _, run in labelled], out, cli.jobs)
        print(f"{counts['ran']} ran, {counts['done']} complete before, {counts['failed']} failed")
    rows = collect(labelled, out)
    if not rows:
        sys.exit("no complete runs to report")
    print(report(rows, out, REFERENCES if cli.variant is None else None))  # published numbers: for the defaults
    print(f"\ncurves: {os.path.join(out, 'curves_steps.png')}, {os.path.join(out, 'curves_time.png')}")


if __name__ == "__main__":
    main()
