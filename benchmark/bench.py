"""Benchmark a script: several seeds at its defaults, optionally side by side with a reference script.

    python benchmark/bench.py ppo.py --seeds 1 2 3 --threshold 475
    python benchmark/bench.py ppo.py --reference /path/to/cleanrl/ppo.py      # speed ratio, same settings
    python benchmark/bench.py ppo_continuous_action.py -- --total-timesteps 200000   # flags after -- go to both
    python benchmark/bench.py ppo_continuous_action.py --reference-runs REF_RUN_DIR ...  # finished reference runs
    python benchmark/bench.py ppo_atari.py --reference ppo_atari.py \
        --reference-launcher="-m torch.distributed.run --standalone --nproc_per_node 2"  # the same under torchrun

Each run is a fresh process, started from benchmark/out/<script>/ so that its runs/ lands there. With
a reference, the runs alternate (ours seed 1, reference seed 1, ours seed 2, ...), so that both see the
same machine conditions and their speed ratio is measured side by side. With --reference-runs, finished
runs of a reference (too slow to run again alongside, say) are read instead, for their returns and curves;
their steps/s are as they logged them, in whatever conditions they ran. Our runs go through
benchmark/timed.py, which splits the wall time into env stepping, rollout inference and update.

Reported per run and as medians: the mean return of the last 100 episodes, wall time (of the whole
process), steps per second (of training, as the run logs it in charts/SPS), and the first step at which the
100-episode mean return reaches --threshold. The curves
(episodic return vs steps) are plotted to <out>/curves.png, the numbers written to <out>/results.json
and printed as a Markdown table.
"""

import argparse
import glob
import json
import os
import shlex
import statistics
import subprocess
import sys
import time

import numpy as np

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def read_events(run_dir: str) -> dict[str, list[tuple[int, float, float]]]:
    """All scalars of a run directory's event files, as {tag: [(step, value, wall_time), ...]}, wall_time
    in seconds since the epoch (when the run logged the value)."""
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    acc = EventAccumulator(run_dir, size_guidance={"scalars": 0, "tensors": 0})
    acc.Reload()
    return {tag: [(e.step, e.value, e.wall_time) for e in acc.Scalars(tag)] for tag in acc.Tags()["scalars"]}


def read_scalars(run_dir: str) -> dict[str, list[tuple[int, float]]]:
    """All scalars of a run directory's event files, as {tag: [(step, value), ...]}."""
    return {tag: [(step, value) for step, value, _ in events] for tag, events in read_events(run_dir).items()}


def running_mean(values, window: int) -> np.ndarray:
    """The mean of each value and the window - 1 before it (fewer at the start)."""
    sums = np.concatenate([[0.0], np.cumsum(np.asarray(values, dtype=float))])
    end = np.arange(1, len(sums))
    start = np.maximum(0, end - window)
    return (sums[end] - sums[start]) / (end - start)


def summarize(run_dir: str, wall: float, threshold: float | None, scalars: dict | None = None) -> dict:
    """The figures of one finished run, from its TensorBoard scalars (read here unless given)."""
    scalars = read_scalars(run_dir) if scalars is None else scalars
    episodes = scalars.get("charts/episodic_return", [])
    steps = np.array([event[0] for event in episodes])
    returns = np.array([event[1] for event in episodes])
    total_steps = scalars["charts/SPS"][-1][0]
    reached = None
    if threshold is not None:
        # the 100-episode running mean (fewer at the start), and the first step where it reaches the threshold
        running = running_mean(returns, 100)
        hits = np.flatnonzero(running >= threshold)
        reached = int(steps[hits[0]]) if len(hits) else None
    return {
        "run_dir": run_dir,
        "final_return": float(returns[-100:].mean()) if len(returns) else float("nan"),
        "episodes": len(returns),
        "steps": int(total_steps),
        "wall_s": wall,
        "sps": scalars["charts/SPS"][-1][1],  # as the run logged it: steps / training time
        "reached_step": reached,
        "curve": [steps.tolist(), returns.tolist()],
    }


def run_one(script: str, seed: int, flags: list[str], out: str, exp_name: str, ours: bool, launcher=()) -> dict:
    """Run a script once, from `out` (`python *launcher script ...`), and return its run directory and wall time (and
    time split)."""
    before = set(glob.glob(os.path.join(out, "runs", "*")))
    split_json = os.path.join(out, f"split_{exp_name}_{seed}.json")
    command = [script, "--seed", str(seed), "--exp-name", exp_name, *flags]
    if ours:
        command = [os.path.join(ROOT, "benchmark", "timed.py"), split_json, *command, "--no-progress"]
    start = time.perf_counter()
    subprocess.run([sys.executable, *launcher, *command], cwd=out, check=True, stdout=subprocess.DEVNULL)
    wall = time.perf_counter() - start
    (run_dir,) = set(glob.glob(os.path.join(out, "runs", "*"))) - before
    result = {"seed": seed, "wall_s": wall, "run_dir": run_dir}
    if ours:
        with open(split_json) as f:
            result["split"] = json.load(f)
    return result


def split_fractions(split: dict) -> dict:
    """Shares of a run's wall time: env stepping, rollout inference (and bookkeeping), update, the rest."""
    inference = split["rollout"] - split["env_step"]
    other = split["total"] - split["rollout"] - split["update"]
    return {
        key: value / split["total"]
        for key, value in [
            ("env", split["env_step"]),
            ("inference", inference),
            ("update", split["update"]),
            ("other", other),
        ]
    }


def median(rows: list[dict], key: str):
    values = [row[key] for row in rows if row[key] is not None]
    return statistics.median(values) if values else None


def fmt(value, spec: str) -> str:
    return "n/a" if value is None else format(value, spec)


def table(name: str, rows: list[dict]) -> str:
    lines = [
        f"| {name} seed | last-100 mean return | wall time (s) | steps/s | step reaching threshold "
        "| env / inference / update / other |",
        "|---|---|---|---|---|---|",
    ]
    for row in rows + [
        {"seed": "median", **{k: median(rows, k) for k in ("final_return", "wall_s", "sps", "reached_step")}}
    ]:
        shares = row.get("fractions")
        shares = " / ".join(f"{shares[k]:.0%}" for k in ("env", "inference", "update", "other")) if shares else ""
        lines.append(
            f"| {row['seed']} | {fmt(row['final_return'], '.1f')} | {fmt(row['wall_s'], '.0f')} | "
            f"{fmt(row['sps'], ',.0f')} | {fmt(row['reached_step'], ',')} | {shares} |"
        )
    return "\n".join(lines)


def pyplot():
    """matplotlib's pyplot, drawing to files only (no display needed)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def plot(results: dict[str, list[dict]], path: str, title: str) -> None:
    plt = pyplot()
    fig, ax = plt.subplots(figsize=(7, 4))
    for (name, rows), color in zip(results.items(), ["tab:blue", "tab:orange"]):
        for i, row in enumerate(rows):
            steps, returns = row["curve"]
            # each episode's return, smoothed over the last 20 episodes for legibility
            ax.plot(steps, running_mean(returns, 20), color=color, alpha=0.8, label=name if i == 0 else None)
    ax.set(xlabel="environment steps", ylabel="episodic return (20-episode mean)", title=title)
    ax.grid(alpha=0.3)
    ax.legend()
    fig.tight_layout()
    fig.savefig(path, dpi=100)


def parse_args_and_flags(parser: argparse.ArgumentParser) -> tuple[argparse.Namespace, list[str]]:
    """The command line before `--`, parsed, and the flags after it (passed on to the scripts unchanged)."""
    argv = sys.argv[1:]
    split_at = argv.index("--") if "--" in argv else len(argv)
    return parser.parse_args(argv[:split_at]), argv[split_at + 1 :]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("script", help="the script to benchmark, e.g. ppo.py")
    parser.add_argument("--seeds", type=int, nargs="+", default=[1, 2, 3])
    reference = parser.add_mutually_exclusive_group()
    reference.add_argument("--reference", help="a reference script to run alternately at the same settings")
    reference.add_argument(
        "--reference-runs", nargs="+", metavar="RUN_DIR", help="finished runs of a reference to compare with"
    )
    parser.add_argument("--reference-launcher", default="", metavar="PYTHON_OPTIONS",
                        help='python options before the reference script, e.g. --reference-launcher="-m '
                        'torch.distributed.run --standalone --nproc_per_node 2" (torchrun)')  # fmt: skip
    parser.add_argument("--threshold", type=float, help="report the first step where the 100-episode mean reaches this")
    parser.add_argument("--out", help="output folder (default benchmark/out/<script name>)")
    cli, flags = parse_args_and_flags(parser)
    cli.flags = flags  # flags for both scripts, after --

    script = os.path.abspath(cli.script)
    name = os.path.basename(script)[: -len(".py")]
    out = os.path.abspath(cli.out or os.path.join(ROOT, "benchmark", "out", name))
    os.makedirs(out, exist_ok=True)
    runners = [("ours", script)] + ([("reference", cli.reference)] if cli.reference else [])
    results = {label: [] for label, _ in runners}
    if (
        cli.reference_runs
    ):  # read first, so that a wrong path fails before any run (names: {env_id}__{exp_name}__{seed}__{time})
        results["reference"] = [
            {
                "seed": int(os.path.basename(os.path.normpath(run_dir)).split("__")[-2]),
                **summarize(run_dir, None, cli.threshold),
            }
            for run_dir in cli.reference_runs
        ]
    for seed in cli.seeds:
        for label, path in runners:
            launcher = shlex.split(cli.reference_launcher) if label == "reference" else []
            run = run_one(os.path.abspath(path), seed, cli.flags, out, f"bench_{label}", label == "ours", launcher)
            row = {**run, **summarize(run["run_dir"], run["wall_s"], cli.threshold)}
            if "split" in run:
                row["fractions"] = split_fractions(run["split"])
            results[label].append(row)
            print(f"{label} seed {seed}: {row['final_return']:.1f} return, {row['sps']:,.0f} steps/s", flush=True)

    report = [f"`python benchmark/bench.py {' '.join(sys.argv[1:])}`", ""]
    report += [table(label, rows) + "\n" for label, rows in results.items()]
    if cli.reference:  # (only a side-by-side run gives a fair speed ratio)
        ratio = median(results["ours"], "sps") / median(results["reference"], "sps")
        report.append(f"Speed ratio (median steps/s, ours / reference): {ratio:.2f}x")
    print("\n" + "\n".join(report))
    with open(os.path.join(out, "results.json"), "w") as f:
        json.dump(results, f)
    plot(results, os.path.join(out, "curves.png"), f"{name}: {' '.join(cli.flags) or 'defaults'}")
    print(f"\ncurves: {os.path.join(out, 'curves.png')}")


if __name__ == "__main__":
    main()
