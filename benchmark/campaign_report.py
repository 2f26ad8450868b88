"""RESULTS.md's section on the long runs, written from the CSVs that benchmark/campaign.py exports, alone.

    python benchmark/campaign_report.py

Reads benchmark/results/runs/*.csv (episodes: step,return,length; .scalars.csv: per-iteration tags and wall time;
runs.csv: commit and flags; study_trials.csv) and writes the section "(g) At the reference scale" of
benchmark/RESULTS.md (the page's other sections are kept) with its curves under benchmark/results/. A run that has not
reached its budget yet is reported where it stands, and said to be partial.
"""

import glob
import os
import sys

import numpy as np

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
if ROOT not in sys.path:
    sys.path.insert(0, ROOT)

from benchmark.campaign import STUDY, read_csv  # noqa: E402
from benchmark.experiments import bootstrap_ci, iqm, plot_curves  # noqa: E402
from benchmark.results import splice  # noqa: E402

RUNS = os.path.join(ROOT, "benchmark", "results", "runs")
TITLE = "## (g) At the reference scale: the campaign's runs"
# published final returns at the same budget (the mean of the last 100 training episodes, or the paper's figure)
REFERENCES = {
    ("BreakoutNoFrameskip-v4", "default"): "414.66 ± 28.09 at 10M (CleanRL)",
    ("HalfCheetah-v4", "default"): "1,442.64 ± 46.03 (CleanRL)",
    ("Hopper-v4", "default"): "2,382.86 ± 271.74 (CleanRL)",
    ("Walker2d-v4", "default"): "2,287.95 ± 571.78 (CleanRL)",
    ("HalfCheetah-v4", "tuned"): "5,819 (rl-zoo3), 5,784 (Tianshou)",
    ("Hopper-v4", "tuned"): "2,410 (rl-zoo3), 2,609 (Tianshou)",
    ("Walker2d-v4", "tuned"): "3,479 (rl-zoo3)",
    ("InvertedDoublePendulum-v4", "tuned"): "9,231 (Tianshou)",
    ("HalfCheetah-v4", "tianshou"): "5,784 (Tianshou)",
    ("Hopper-v4", "tianshou"): "2,609 (Tianshou)",
    ("InvertedDoublePendulum-v4", "tianshou"): "9,231 (Tianshou)",
}
# the step at which a Breakout run is compared (its stage's budget: the targets); else the run's end
BUDGETS = {("BreakoutNoFrameskip-v4", "default"): 2_000_000, ("BreakoutNoFrameskip-v4", "vector"): 1_000_000}


def load_rows(folder: str = RUNS, budgets: dict = BUDGETS) -> list[dict]:
    """One row per exported run (experiments.py's row format), its final return the mean of the last 100
    episodes up to its budget step (Breakout: 2M at its defaults, 1M on the C++ vector env; else all it ran)."""
    index = {row["run"]: row for row in read_csv(os.path.join(folder, "runs.csv"))}
    rows = []
    for path in sorted(glob.glob(os.path.join(folder, "*__*__*.csv"))):
        if path.endswith(".scalars.csv"):
            continue
        key = os.path.basename(path)[: -len(".csv")]
        env_id, variant, seed = key.split("__")
        episodes = [r for r in read_csv(path) if r["step"]]
        scalars_path = path[: -len(".csv")] + ".scalars.csv"
        if not episodes or not os.path.exists(scalars_path) or key not in index:
            continue
        scalars = read_csv(scalars_path)  # (the first row's step is one batch: a run whose next batch would pass
        # its --total-timesteps has ended)
        upto = budgets.get((env_id, variant), int(index[key]["total_timesteps"]))
        steps = np.array([int(r["step"]) for r in episodes])
        returns = np.array([float(r["return"]) for r in episodes])
        kept = steps <= upto
        walls = [float(r["wall_time"]) for r in scalars]
        done = int(scalars[-1]["step"])
        rows.append(
            {
                "script": index[key]["script"],
                "env_id": env_id,
                "variant": variant,
                "seed": int(seed),
                "final_return": float(returns[kept][-100:].mean()),
                "steps": min(done, upto),
                "done": done,
                "partial": done < upto and done + int(scalars[0]["step"]) <= int(index[key]["total_timesteps"]),
                "sps": float(np.median([float(r["charts/SPS"]) for r in scalars])),
                "wall_s": walls[-1] - walls[0],
                "curve": [steps[kept].tolist(), returns[kept].tolist()],
                "times": list(np.interp(steps[kept], [int(r["step"]) for r in scalars], walls) - walls[0]),
                "commit": index[key]["commit"][:7],
            }
        )
    return rows


def table(rows: list[dict]) -> list[str]:
    lines = [
        "| env | variant | seeds (steps reached) | final return (mean ± std) | IQM [95% CI] | each seed | published |",
        "|---|---|---|---|---|---|---|",
    ]
    groups = {}
    for row in rows:
        groups.setdefault((row["env_id"], row["variant"]), []).append(row)
    for (env_id, variant), group in sorted(groups.items()):
        # (the figures over seeds take the runs at their budget alone: a partial run shows in its own column)
        finals = np.array([row["final_return"] for row in group if not row["partial"]])
        reached = ", ".join(f"{row['seed']}: {row['steps']:,}{' (partial)' * row['partial']}" for row in group)
        each = " / ".join(f"{row['final_return']:,.1f}{' (partial)' * row['partial']}" for row in group)
        published = REFERENCES.get((env_id, variant), "")
        mean, interval = "-", "-"
        if len(finals):
            low, high = bootstrap_ci(finals)
            mean = f"{finals.mean():,.2f} ± {finals.std():,.2f} ({len(finals)} of {len(group)} seeds)"
            interval = f"{iqm(finals):,.2f} [{low:,.2f}, {high:,.2f}]"
        lines.append(f"| {env_id} | {variant} | {reached} | {mean} | {interval} | {each} | {published} |")
    return lines


def study_table(folder: str = RUNS) -> list[str]:
    """The recipe study's trials (study_trials.csv), the best first: the known recipes and the sampled ones."""
    path = os.path.join(folder, "study_trials.csv")
    if not os.path.exists(path):
        return []
    trials = read_csv(path)
    done = [t for t in trials if t["state"] == "COMPLETE"]
    done.sort(key=lambda t: -float(t["objective"]))
    envs = [name for name in trials[0] if name.endswith("-v4")]
    params = [name for name in trials[0] if name not in ("trial", "state", "recipe", "objective", *envs)]
    sampled = sum(t["recipe"] == "sampled" for t in done)
    lines = [
        f"### The recipe study: {len(done)} trials complete ({sampled} sampled, {len(done) - sampled} known recipes)"
        f", {len(trials) - len(done)} failed or running",
        "",
        f"benchmark/tune.py's objective: each env's last-100 mean return at {STUDY['budget']:,} steps (seed "
        f"{STUDY['seed']}) divided by its target ({', '.join(f'{n:,}' for n in STUDY['normalize'])}), averaged over "
        "the envs; the best first (study_trials.csv holds every trial).",
        "",
        "| trial | recipe | objective | " + " | ".join(envs) + " | " + " | ".join(f"`{p}`" for p in params) + " |",
        "|" + "---|" * (3 + len(envs) + len(params)),
    ]
    for t in done:
        returns = " | ".join(f"{float(t[env]):,.0f}" for env in envs)
        values = []
        for name in params:
            try:
                values.append(f"{float(t[name]):.4g}")
            except ValueError:
                values.append(t[name])
        lines.append(
            f"| {t['trial']} | {t['recipe']} | {float(t['objective']):.3f} | {returns} | {' | '.join(values)} |"
        )
    return lines + [""]


def section(rows: list[dict], images: str, folder: str = RUNS) -> list[str]:
    lines = [
        TITLE,
        "",
        "Written by `python benchmark/campaign_report.py` from benchmark/results/runs/ alone (the CSVs that "
        "`python benchmark/campaign.py` exports from its runs' TensorBoard logs; runs.csv names the commit and "
        "flags of each run). Final return: the mean of a seed's last 100 training episodes (Breakout: games, "
        "the real score) up to 2M steps for Breakout at its defaults and 1M on the vector env (their stages' "
        "budgets), else up to the run's end; mean ± std and IQM with a "
        "bootstrap 95% interval over the seeds that reached the budget. Runs still going are marked partial: "
        "their figure (each seed's column alone) is where they stand, not a result at the budget.",
        "",
    ]
    lines += table(rows) + [""]
    if any(row["variant"] == "vector" for row in rows):
        at_1m = {key: 1_000_000 for key in BUDGETS}
        breakout = [row for row in load_rows(folder, at_1m) if row["env_id"] in {env for env, _ in BUDGETS}]
        lines += [
            "Breakout's two envs at 1M steps (the vector stage's budget; the defaults' runs up to 1M): ppo_atari.py "
            "on gymnasium's wrappers and ppo_atari_ale_vector.py on ale-py's C++ vector env, the same schedule.",
            "",
            *table(breakout),
            "",
        ]
    for env_id in sorted({row["env_id"] for row in rows}):
        env_rows = [row for row in rows if row["env_id"] == env_id]
        name = f"campaign_{env_id.split('-')[0].lower()}.png"
        plot_curves(env_rows, os.path.join(images, name), "steps")
        lines += [f"![{env_id}: episodic return against steps, mean ± std over seeds](results/{name})", ""]
    return lines + study_table(folder)


def main() -> None:
    rows = load_rows()
    images = os.path.join(ROOT, "benchmark", "results")
    page = os.path.join(ROOT, "benchmark", "RESULTS.md")
    lines = splice(page, {TITLE: section(rows, images)})
    with open(page, "w") as f:
        f.write("\n".join(lines).rstrip("\n") + "\n")
    print("\n".join(table(rows)))


if __name__ == "__main__":
    main()
