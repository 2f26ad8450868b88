"""Regenerate benchmark/RESULTS.md: the project's experiments, with their tables and plots.

    python benchmark/results.py                # trains what is missing (about an hour on 2 cores), writes the page
    python benchmark/results.py --no-run       # the page from the runs that are complete; trains nothing
    python benchmark/results.py --quick        # smoke run: tiny budgets, page under benchmark/out/results-quick/
    python benchmark/results.py --atari-run benchmark/out/ppo_atari_breakout_1m/runs/BreakoutNoFrameskip-v4__...

The experiments: (a) the scripts at their defaults (ppo.py on CartPole-v1 at the reference's 500k steps,
ppo_continuous_action.py on InvertedDoublePendulum-v4 at a reduced budget, ppo_atari.py only as runs
given with --atari-run); (b) the policy objective, --loss-type clip / kl-penalty / pg; (c) the clip range
0.1 / 0.2 / 0.3; (d) truncation bootstrapping on and off; (b)-(d) on CartPole-v1 (ppo.py) and
InvertedPendulum-v4 (ppo_continuous_action.py); (e) an Optuna study of ppo.py on CartPole-v1
(benchmark/tune.py), grown to --tune-trials trials; (f) ppo_continuous_action.py's tuned MuJoCo recipe (`--recipe
tuned`) against its defaults on fresh seeds (--recipe-seeds), with the study that found it (benchmark/tune.py's
default storage). The runs go through benchmark/experiments.py into
--out, where complete runs are reused: the page can be regenerated without training again, and a stopped
command resumes. A variant whose flags a script does not have is left out, and the page says so. The page
goes to --page, its PNGs into results/ beside it. `--only KEY ...` trains and rewrites those sections alone
(keys: defaults, objective, clip_range, truncation, recipe), keeping the rest of the page as it is.

    python benchmark/results.py --only recipe --out benchmark/out/recipe
"""

import argparse
import datetime
import os
import subprocess
import sys
from dataclasses import dataclass

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
if ROOT not in sys.path:
    sys.path.insert(0, ROOT)  # run as a file, the benchmark package is still importable

from benchmark import tune  # noqa: E402
from benchmark.experiments import (  # noqa: E402
    REFERENCES,
    collect,
    cpus,
    grid,
    load_run_dir,
    plot_curves,
    run_all,
    table,
    unsupported_flags,
)


@dataclass
class Experiment:
    key: str  # names its plots
    title: str
    text: str
    targets: list  # (script, env id, flags of all its runs)
    variants: dict  # variant name -> its flags
    seeds: list | None = None  # its own seeds (else --seeds)


# (f): the envs of the study that found the recipe, then two it never saw
RECIPE_ENVS = ["InvertedDoublePendulum-v4", "Hopper-v4", "HalfCheetah-v4", "Walker2d-v4", "Swimmer-v4"]
RECIPE_STUDY = ("InvertedDoublePendulum-v4", "Hopper-v4", "HalfCheetah-v4")


def experiments(cli) -> list[Experiment]:
    def target(script: str, env_id: str, steps: int):
        return (script, env_id, ["--total-timesteps", str(steps), "--no-save-model"])

    cartpole = target("ppo.py", "CartPole-v1", cli.cartpole_steps)
    pendulum = target("ppo_continuous_action.py", "InvertedPendulum-v4", cli.pendulum_steps)
    double = target("ppo_continuous_action.py", "InvertedDoublePendulum-v4", cli.double_pendulum_steps)
    return [
        Experiment("defaults", "(a) The scripts at their defaults",
                   "Every hyperparameter at the script's default (CleanRL's reference settings); only the budget "
                   "is this page's. The reference column is the published final return, at the budget it names.",
                   [cartpole, double], {"default": []}),
        Experiment("objective", "(b) Policy objective: clipped surrogate, KL penalty, plain policy gradient",
                   "`--loss-type clip` (PPO's clipped surrogate, the default), `kl-penalty` (the unclipped surrogate "
                   "plus an adaptive KL penalty, PPO-Penalty of Schulman et al. 2017, at its defaults `--kl-beta` "
                   "and `--kl-target`) and `pg` (the unclipped surrogate, no trust region); all else at defaults.",
                   [cartpole, pendulum],
                   {"clip": [], "kl-penalty": ["--loss-type", "kl-penalty"], "pg": ["--loss-type", "pg"]}),
        Experiment("clip_range", "(c) Clip range",
                   "`--clip-coef` 0.1, 0.2 (the default) and 0.3: the clip range of the surrogate, and of the value "
                   "loss (`--clip-vloss`, on by default, uses the same coefficient).",
                   [cartpole, pendulum],
                   {"0.1": ["--clip-coef", "0.1"], "0.2 (default)": [], "0.3": ["--clip-coef", "0.3"]}),
        Experiment("truncation", "(d) Bootstrapping at time-limit truncation",
                   "By default a time-limit truncation bootstraps the advantage from V(final observation); "
                   "`--no-bootstrap-truncation` treats it as a terminal state (the old behaviour). CartPole-v1 "
                   "truncates at 500 steps, InvertedPendulum-v4 at 1000, so it matters once the pole stays up.",
                   [cartpole, pendulum], {"bootstrap (default)": [], "no bootstrap": ["--no-bootstrap-truncation"]}),
        Experiment("recipe", "(f) A tuned recipe for MuJoCo",
                   "ppo_continuous_action.py at its defaults (CleanRL's) and with `--recipe tuned` (README, \"A tuned "
                   f"recipe for MuJoCo\"), {cli.recipe_steps:,} steps, on seeds that no trial of the study used. "
                   f"The study tuned on {', '.join(RECIPE_STUDY)}; the other envs are new to the recipe.",
                   [("ppo_continuous_action.py", env, ["--total-timesteps", str(cli.recipe_steps)])
                    for env in RECIPE_ENVS], {"defaults": [], "tuned": ["--recipe", "tuned"]}, cli.recipe_seeds),
    ]  # fmt: skip


def plan(experiment: Experiment, seeds) -> tuple[list, list[str]]:
    """The experiment's (variant, Run) pairs, and notes on the variants a script can't run."""
    labelled, notes = [], []
    for script, env_id, flags in experiment.targets:
        for name, variant_flags in experiment.variants.items():
            missing = unsupported_flags(script, variant_flags)
            if missing:
                notes.append(f"Not run: `{name}` with {script}, which has no {', '.join(f'`{f}`' for f in missing)}.")
            else:
                labelled += grid([(script, env_id, flags)], {name: variant_flags}, experiment.seeds or seeds)
    return labelled, notes


def atari_rows(run_dirs) -> list[dict]:
    """Rows of given ppo_atari.py run directories ({env_id}__{exp_name}__{seed}__{time}), not trained here."""
    rows = []
    for run_dir in run_dirs:
        env_id, _, seed, _ = os.path.basename(os.path.normpath(run_dir)).split("__")
        rows.append({"script": "ppo_atari.py", "env_id": env_id, "variant": "given run", "seed": int(seed),
                     **load_run_dir(run_dir)})  # fmt: skip
    return rows


def machine() -> str:
    cpuinfo = open("/proc/cpuinfo").readlines() if os.path.exists("/proc/cpuinfo") else []
    model = next((line.split(":", 1)[1].strip() for line in cpuinfo if line.startswith("model name")), "")
    git = subprocess.run(["git", "-C", ROOT, "rev-parse", "--short", "HEAD"], capture_output=True, text=True)
    commit = git.stdout.strip()
    return f"{model or 'unknown CPU'}, {os.cpu_count()} CPUs; commit {commit or 'unknown'}"


def section(experiment: Experiment, labelled, notes, extra_rows, out: str, images: str, page_dir: str) -> list[str]:
    lines = [f"## {experiment.title}", "", experiment.text, ""]
    rows = collect(labelled, out) + extra_rows
    missing = len(labelled) - (len(rows) - len(extra_rows))
    if missing:
        notes = notes + [f"{missing} of {len(labelled)} runs not complete (failed, or not run yet), left out."]
    lines += [f"- {note}" for note in notes] + ([""] if notes else [])
    if not rows:
        return lines + ["No complete runs.", ""]
    lines += [table(rows, REFERENCES if experiment.key == "defaults" else None), ""]
    for x, what in (("steps", "environment steps"), ("time", "wall-clock time")):
        path = os.path.join(images, f"{experiment.key}_{x}.png")
        plot_curves(rows, path, x)
        lines += [f"![{experiment.title}: episodic return against {what}]({os.path.relpath(path, page_dir)})", ""]
    return lines


def recipe_study_section(images: str, page_dir: str) -> list[str]:
    """The multi-env study behind --recipe tuned, from benchmark/tune.py's default storage, if it is there."""
    name = tune.study_name("ppo_continuous_action.py", list(RECIPE_STUDY))
    storage = f"sqlite:///{os.path.join(ROOT, 'benchmark', 'out', f'tune_{name}.db')}"
    study = tune.load_study("ppo_continuous_action.py", list(RECIPE_STUDY), storage)
    if study is None:
        return ["The study: not found in benchmark/out/ (run the README's tune.py command).", ""]
    path = os.path.join(images, "recipe_study.png")
    tune.plot_trials(study, path)
    return [
        "### The study",
        "",
        tune.best_table(study, k=8),
        "",
        f"![the study]({os.path.relpath(path, page_dir)})",
        "",
    ]


def splice(page: str, sections: dict[str, list[str]]) -> list[str]:
    """The lines of the page at `page` with the sections titled as `sections`' keys replaced (or appended)."""
    lines = open(page).read().split("\n") if os.path.isfile(page) else ["# Benchmark results", ""]
    starts = [i for i, line in enumerate(lines) if line.startswith("## ")] + [len(lines)]
    head, blocks = lines[: starts[0]], {lines[a]: lines[a:b] for a, b in zip(starts, starts[1:])}
    for title, section_lines in sections.items():
        blocks[title] = section_lines
    return head + [line for block in blocks.values() for line in block]


def tuning_section(cli, out: str, images: str, page_dir: str, jobs: int) -> list[str]:
    lines = ["## (e) Hyperparameter tuning", "",
             "An Optuna study (TPE sampler, median pruner) of ppo.py on CartPole-v1 over the learning rate, discount, "
             "GAE lambda, clip range, epochs, minibatches, gradient-norm clip and entropy coefficient "
             "(`benchmark/tune.py`, which gives the ranges and their sources). Each trial is one training run, "
             "one seed; the best values here are a starting point, to be checked over more seeds.", ""]  # fmt: skip
    name = f"tune_ppo_CartPole-v1_{cli.tune_steps}"  # a study per budget: another budget starts another study
    storage = f"sqlite:///{os.path.join(out, name + '.db')}"
    study = tune.load_study("ppo.py", "CartPole-v1", storage)
    done = len(study.trials) if study is not None else 0
    if not cli.no_run and cli.tune_trials > done:
        study = tune.tune("ppo.py", "CartPole-v1", cli.tune_trials - done, cli.tune_steps, storage=storage,
                          out=os.path.join(out, name), jobs=jobs)  # fmt: skip
    if study is None:
        return lines + ["Not run.", ""]
    path = os.path.join(images, "tuning.png")
    tune.plot_trials(study, path)
    return lines + [
        tune.best_table(study),
        "",
        f"![tuning: objective per trial]({os.path.relpath(path, page_dir)})",
        "",
    ]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--seeds", type=int, nargs="+", default=[1, 2, 3])
    parser.add_argument("--cartpole-steps", type=int, default=500_000, help="steps per CartPole-v1 run")
    parser.add_argument("--pendulum-steps", type=int, default=200_000, help="steps per InvertedPendulum-v4 run")
    parser.add_argument(
        "--double-pendulum-steps", type=int, default=500_000, help="steps per InvertedDoublePendulum-v4 run"
    )
    parser.add_argument("--tune-trials", type=int, default=20, help="trials the tuning study grows to")
    parser.add_argument("--tune-steps", type=int, default=100_000, help="steps per tuning trial")
    parser.add_argument("--recipe-steps", type=int, default=1_000_000, help="steps per run of (f)")
    parser.add_argument("--recipe-seeds", type=int, nargs="+", default=[11, 12, 13], help="the seeds of (f)")
    parser.add_argument("--only", nargs="+", metavar="KEY", help="rewrite these sections only (see above)")
    parser.add_argument("--atari-run", nargs="+", default=[], help="ppo_atari.py run directories to report in (a)")
    parser.add_argument("--jobs", type=int, help="runs at a time (default: the CPUs this process may use)")
    parser.add_argument("--no-run", action="store_true", help="train nothing: report the complete runs")
    parser.add_argument("--quick", action="store_true",
                        help="smoke run: 4096 steps per run, seeds 1 2, 2 tuning trials; "
                             "out and page under benchmark/out/results-quick/")  # fmt: skip
    parser.add_argument("--out", help="where the runs are kept (default benchmark/out/results)")
    parser.add_argument(
        "--page", help="the page to write (default benchmark/RESULTS.md); its PNGs go to results/ beside it"
    )
    cli = parser.parse_args()
    if cli.quick:
        cli.seeds, cli.tune_trials = cli.seeds[:2], min(cli.tune_trials, 2)
        cli.cartpole_steps = cli.pendulum_steps = cli.double_pendulum_steps = cli.tune_steps = 4096
        cli.recipe_steps, cli.recipe_seeds = 4096, cli.recipe_seeds[:2]
    default_out = os.path.join(ROOT, "benchmark", "out", "results-quick" if cli.quick else "results")
    out = os.path.abspath(cli.out or default_out)
    default_page = os.path.join(default_out if cli.quick else os.path.join(ROOT, "benchmark"), "RESULTS.md")
    page = os.path.abspath(cli.page or default_page)
    images = os.path.join(os.path.dirname(page), "results")
    os.makedirs(out, exist_ok=True)
    os.makedirs(images, exist_ok=True)
    jobs = cli.jobs or cpus()

    chosen = [e for e in experiments(cli) if cli.only is None or e.key in cli.only]
    plans = [(experiment, *plan(experiment, cli.seeds)) for experiment in chosen]
    if not cli.no_run:
        counts = run_all([run for _, labelled, _ in plans for _, run in labelled], out, jobs)
        print(f"{counts['ran']} ran, {counts['done']} complete before, {counts['failed']} failed", flush=True)

    command = " ".join(["python benchmark/results.py", *sys.argv[1:]])
    load = "This command trained nothing (`--no-run`)." if cli.no_run else (
        f"This command ran up to {jobs} runs at a time (runs complete before it ran as their own command said), "
        "each on one thread: steps/s are measured under that load.")  # fmt: skip
    lines = [
        "# Benchmark results",
        "",
        f"Written by `{command}` on {datetime.datetime.now(datetime.UTC):%Y-%m-%d %H:%M} UTC; {machine()}. {load}",
        "",
        f"Budget (environment steps per run): CartPole-v1 {cli.cartpole_steps:,}, InvertedPendulum-v4 "
        f"{cli.pendulum_steps:,}, InvertedDoublePendulum-v4 {cli.double_pendulum_steps:,}; tuning trials "
        f"{cli.tune_steps:,}. Seeds: {' '.join(map(str, cli.seeds))}. Published references ran the budgets they name.",
        "",
        "Final return: each seed's mean return over its last 100 training episodes; given as mean ± standard "
        "deviation over seeds, and as interquartile mean (IQM, with fractional weights at the quartiles for "
        "small numbers of seeds) with a percentile-bootstrap 95% confidence interval (2000 resamples of the seeds). "
        "steps/s and wall time: medians over seeds. Curves: each seed's episodic return smoothed over 20 episodes; "
        "the line is the mean over seeds, the band ± one standard deviation; against wall-clock time, seconds "
        "since the process started.",
        "",
    ]
    texts = {}  # each section's lines, by its key
    for experiment, labelled, notes in plans:
        extra = atari_rows(cli.atari_run) if experiment.key == "defaults" else []
        if experiment.key == "defaults":
            notes = notes + [f"ppo_atari.py: {len(cli.atari_run)} run(s) given with `--atari-run`, not trained by this "
                             "command, at the budget and with the flags they ran (not necessarily the "
                             "defaults); wall-clock time from their first logged value."
                             if cli.atari_run else "ppo_atari.py (BreakoutNoFrameskip-v4, reference 414.66 ± 28.09 at "
                             "10M steps): not run here; give run directories with `--atari-run`."]  # fmt: skip
        texts[experiment.key] = section(experiment, labelled, notes, extra, out, images, os.path.dirname(page))
        if experiment.key == "recipe":
            texts["recipe"] += recipe_study_section(images, os.path.dirname(page))
    if cli.only:  # these sections alone, each saying what wrote it; the rest of the page stays as it is
        stamp = f"Written by `{command}` on {datetime.datetime.now(datetime.UTC):%Y-%m-%d %H:%M} UTC; {machine()}."
        for key, text in texts.items():
            seeds = next(e.seeds for e in chosen if e.key == key) or cli.seeds
            text[2:2] = [f"{stamp} {load} Seeds: {' '.join(map(str, seeds))}.", ""]
        lines = splice(page, {text[0]: text for text in texts.values()})
        with open(page, "w") as f:
            f.write("\n".join(lines))
        return print(f"wrote {page} ({', '.join(cli.only)})")
    recipe = texts.pop("recipe", [])
    lines += [line for text in texts.values() for line in text]
    lines += tuning_section(cli, out, images, os.path.dirname(page), jobs) + recipe
    with open(page, "w") as f:
        f.write("\n".join(lines))
    print(f"wrote {page}")


if __name__ == "__main__":
    main()
