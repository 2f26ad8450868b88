"""Tune a script's hyperparameters with Optuna; each trial is a real training run of the script.

    python benchmark/tune.py ppo.py --env-id CartPole-v1 --trials 30 --budget 100000
    python benchmark/tune.py ppo_continuous_action.py --env-id InvertedPendulum-v4 --budget 200000 -- --num-steps 1024

Flags after `--` go to every trial unchanged. A trial runs the script as a fresh process for --budget
steps (seed --seed, the same for every trial, so that trials differ by their hyperparameters only),
from <out>/trial_<number>/; its objective is the mean return of its last --last-episodes episodes.
While it runs, the return of the last 100 episodes that the script prints ten times over a run (its
progress line) is reported to Optuna, and a MedianPruner stops a trial (SIGTERM: the script ends after
its iteration) whose return is below the median of earlier trials at the same step, once 5 trials are
complete and past the first fifth of the budget. Without progress lines (--no-progress) nothing is pruned.

With several envs (`--env-id A B C --normalize a b c`), each trial trains on every env in turn and its
objective is the mean over the envs of the return divided by that env's --normalize figure (an anchor, e.g.
a target return); such trials are not pruned. `--space recipe` (ppo_continuous_action.py) searches the
options that Andrychowicz et al. 2020 found to matter, around CleanRL's defaults, and --enqueue runs known
recipes first (CleanRL's, Tianshou's, the paper's advice; see RECIPES).

The study is kept in SQLite (default benchmark/out/tune_<script>_<env>.db): running the same command
again adds --trials trials to it. It remembers the script, env, budget, seed and fixed flags it was made
with, and refuses to mix in trials of other settings. Written: <out>/best.md (the best trials as a
Markdown table) and <out>/trials.png (each trial's objective, and the best so far).
"""

import argparse
import json
import os
import re
import subprocess
import sys

import numpy as np

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
if ROOT not in sys.path:
    sys.path.insert(0, ROOT)  # run as a file, the benchmark package is still importable

from benchmark.bench import parse_args_and_flags, pyplot, read_scalars  # noqa: E402
from benchmark.experiments import runs_in, script_args  # noqa: E402

# the progress line of every script: "step 2048/100000 ( 2%) | return (last 100 ep)   23.10 | ..."
PROGRESS = re.compile(r"step\s+(\d+)/\d+ .*\| return \(last 100 \w+\)\s+(-?\d+(?:\.\d+)?)")


class TrialFailed(Exception):
    """The script of a trial exited with an error (e.g. non-finite losses): the trial counts as failed."""


def flag_value(flags: list[str], flag: str, default):
    """The value a flag takes in a list of flags (its last occurrence), else `default`."""
    at = [i for i, f in enumerate(flags[:-1]) if f == flag]
    return type(default)(flags[at[-1] + 1]) if at else default


def suggest_recipe(trial) -> dict[str, object]:
    """(--space recipe, ppo_continuous_action.py) One trial's {flag: value} over the choices that Andrychowicz
    et al. 2020 ("What Matters In On-Policy RL?") found to matter for continuous control, in ranges that hold
    the anchors' recipes: the initial std (theirs: about 0.5, i.e. log-std -0.7; Tianshou's -0.5; rl-zoo3's -2),
    a wider critic than actor (theirs: 256 vs 64), advantages recomputed every epoch, value clipping off, GAE
    lambda 0.9, many envs (the batch stays num_envs x num_steps = 2048), the learning rate, the clip range,
    the epochs and the value loss's weight (Tianshou's 0.25). The discount stays 0.99: one recipe for all envs."""
    num_envs = trial.suggest_categorical("num_envs", [1, 2, 4, 8])
    return {
        "--num-envs": num_envs,
        "--num-steps": 2048 // num_envs,
        "--learning-rate": trial.suggest_float("learning_rate", 1e-4, 1e-3, log=True),
        "--gae-lambda": trial.suggest_float("gae_lambda", 0.9, 0.99),
        "--clip-coef": trial.suggest_float("clip_coef", 0.1, 0.3),
        "--update-epochs": trial.suggest_int("update_epochs", 5, 15),
        "--vf-coef": trial.suggest_float("vf_coef", 0.25, 1.0),
        "--init-logstd": trial.suggest_float("init_logstd", -2.0, 0.0),
        "--actor-width": trial.suggest_categorical("actor_width", [64, 256]),
        "--critic-width": trial.suggest_categorical("critic_width", [64, 256]),
        "--recompute-adv": trial.suggest_categorical("recompute_adv", [False, True]),
        "--clip-vloss": trial.suggest_categorical("clip_vloss", [False, True]),
        "--norm-adv": trial.suggest_categorical("norm_adv", [False, True]),
    }


# known recipes in --space recipe's terms (Optuna's parameter names), run first with --enqueue
RECIPES = {
    "cleanrl": dict(num_envs=1, learning_rate=3e-4, gae_lambda=0.95, clip_coef=0.2, update_epochs=10, vf_coef=0.5,
                    init_logstd=0.0, actor_width=64, critic_width=64, recompute_adv=False, clip_vloss=True,
                    norm_adv=True),
    # Tianshou's MuJoCo PPO (examples/mujoco/mujoco_ppo.py): 10 envs there, 8 here
    "tianshou": dict(num_envs=8, learning_rate=3e-4, gae_lambda=0.95, clip_coef=0.2, update_epochs=10, vf_coef=0.25,
                     init_logstd=-0.5, actor_width=64, critic_width=64, recompute_adv=True, clip_vloss=False,
                     norm_adv=False),
    # Andrychowicz et al. 2020's advice for a start
    "andrychowicz": dict(num_envs=8, learning_rate=3e-4, gae_lambda=0.9, clip_coef=0.25, update_epochs=10,
                         vf_coef=0.5, init_logstd=-0.7, actor_width=64, critic_width=256, recompute_adv=True,
                         clip_vloss=False, norm_adv=True),
}  # fmt: skip


def command_flags(params: dict[str, object]) -> list[str]:
    """{flag: value} as command-line words; a boolean flag as --name or --no-name."""
    words = []
    for flag, value in params.items():
        if isinstance(value, bool):
            words.append(flag if value else "--no-" + flag[2:])
        else:
            words += [flag, str(value)]
    return words


def suggest(trial, script: str, fixed: list[str]) -> dict[str, object]:
    """One trial's hyperparameters, as {flag: value}. The ranges follow Andrychowicz et al. 2020 ("What
    Matters In On-Policy Reinforcement Learning?"): the discount is among the most important settings and
    is tuned per environment (0.99 a good start; sampled here as 1 - gamma on a log scale, horizons of 20
    to 1000 steps), so are Adam's learning rate (3e-4 a safe default), the clip range (0.25 a good start,
    try lower and higher) and GAE's lambda (0.9); the number of passes over the data and gradient clipping
    matter less. Engstrom et al. 2020 ("Implementation Matters in Deep Policy Gradients") show that PPO's
    code-level choices (learning-rate annealing, gradient and value clipping, ...) move results as much as
    its clipped objective does, so the optimizer's settings are tuned together with the clip range."""
    defaults = script_args(script)
    batch = flag_value(fixed, "--num-envs", defaults["num_envs"]) * flag_value(
        fixed, "--num-steps", defaults["num_steps"]
    )
    # minibatch counts that split the batch evenly, into minibatches of at least 16 steps
    minibatches = [n for n in (1, 2, 4, 8, 16, 32, 64) if batch % n == 0 and batch // n >= 16] or [1]
    params = {
        "--learning-rate": trial.suggest_float("learning_rate", 1e-4, 3e-3, log=True),
        "--gamma": 1 - trial.suggest_float("one_minus_gamma", 1e-3, 5e-2, log=True),
        "--gae-lambda": trial.suggest_float("gae_lambda", 0.9, 0.99),
        "--clip-coef": trial.suggest_float("clip_coef", 0.1, 0.3),
        "--update-epochs": trial.suggest_int("update_epochs", 3, 10),
        "--num-minibatches": trial.suggest_categorical("num_minibatches", minibatches),
        "--max-grad-norm": trial.suggest_float("max_grad_norm", 0.3, 1.0),
    }
    if "continuous" not in os.path.basename(script):
        # discrete actions: an entropy bonus (Andrychowicz et al. find it does not help continuous control)
        params["--ent-coef"] = trial.suggest_float("ent_coef", 1e-4, 1e-2, log=True)
    return params


def run_trial(trial, command: list[str], folder: str) -> str:
    """Run one trial's command from `folder`, reporting its progress lines to Optuna and stopping it when
    the pruner says so; returns its run directory."""
    import optuna

    before = runs_in(folder)
    with open(os.path.join(folder, "log.txt"), "w") as log:
        proc = subprocess.Popen(command, cwd=folder, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
        for line in proc.stdout:
            log.write(line)
            match = PROGRESS.search(line)
            if match:
                step, value = int(match[1]), float(match[2])
                trial.report(value, step)
                if trial.should_prune():
                    proc.terminate()  # the script stops cleanly after its current iteration
                    log.write(proc.communicate()[0])
                    raise optuna.TrialPruned(f"return {value:.2f} at step {step}")
        proc.wait()
    if proc.returncode != 0:
        raise TrialFailed(f"exit code {proc.returncode}; see {os.path.join(folder, 'log.txt')}")
    (new,) = runs_in(folder) - before
    return os.path.join(folder, new)


def study_name(script: str, env_id: str | list[str]) -> str:
    envs = "+".join(env_id) if isinstance(env_id, list) else env_id
    return f"{os.path.basename(script)[: -len('.py')]}_{envs}"


def load_study(script: str, env_id: str, storage: str):
    """The study of (script, env_id) in `storage`, None if there is none yet."""
    import optuna

    try:
        return optuna.load_study(study_name=study_name(script, env_id), storage=storage)
    except KeyError:
        return None


def tune(script: str, env_id: str | list[str], trials: int, budget: int, flags=(), storage: str | None = None,
         out: str | None = None, seed: int = 1, last_episodes: int = 100, jobs: int = 1, pruner=None,
         normalize: list[float] | None = None, space: str = "basic", enqueue: list[str] = ()):  # fmt: skip
    """Add `trials` trials to the study of (script, env_id) in `storage`, created if new; returns the study.
    `env_id` a list: the normalized multi-env objective above (`normalize`: one figure per env).
    `pruner`: an Optuna pruner instead of the median pruner described above."""
    import optuna

    env_ids = env_id if isinstance(env_id, list) else [env_id]
    normalize = list(normalize or [1.0] * len(env_ids))
    if len(normalize) != len(env_ids):
        raise ValueError(f"{len(env_ids)} envs but {len(normalize)} --normalize figures")
    if len(env_ids) > 1:  # a trial's envs in turn: nothing comparable to prune on before its end
        pruner = pruner or optuna.pruners.NopPruner()

    name = study_name(script, env_id)
    storage = storage or f"sqlite:///{os.path.join(ROOT, 'benchmark', 'out', f'tune_{name}.db')}"
    out = out or os.path.join(ROOT, "benchmark", "out", f"tune_{name}")
    os.makedirs(out, exist_ok=True)
    if storage.startswith("sqlite:///"):
        os.makedirs(os.path.dirname(os.path.abspath(storage[len("sqlite:///") :])), exist_ok=True)
    settings = {"script": os.path.basename(script), "env_id": env_id, "budget": budget, "seed": seed,
                "flags": list(flags), "last_episodes": last_episodes}  # fmt: skip
    if len(env_ids) > 1 or space != "basic":
        settings.update(normalize=normalize, space=space)
    earlier = load_study(script, env_id, storage)
    study = optuna.create_study(
        study_name=name,
        storage=storage,
        load_if_exists=True,
        direction="maximize",
        # seeded by the number of trials before, so that a resumed study doesn't draw the same trials again
        sampler=optuna.samplers.TPESampler(seed=0 if earlier is None else len(earlier.trials)),
        pruner=pruner or optuna.pruners.MedianPruner(n_startup_trials=5, n_warmup_steps=budget // 5),
    )
    for key, value in settings.items():
        if key not in study.user_attrs:
            study.set_user_attr(key, value)
        elif study.user_attrs[key] != value:
            raise ValueError(f"the study {name} in {storage} has {key}={study.user_attrs[key]!r}, not {value!r}; "
                             "give another --storage for other settings")  # fmt: skip

    def objective(trial) -> float:
        params = suggest_recipe(trial) if space == "recipe" else suggest(trial, script, list(flags))
        trial.set_user_attr("flags", {flag: float(f"{value:.6g}") if isinstance(value, float) else value
                                      for flag, value in params.items()})  # fmt: skip
        scores = {}
        for env, scale in zip(env_ids, normalize):
            command = [sys.executable, os.path.join(ROOT, script), "--env-id", env, "--seed", str(seed),
                       "--total-timesteps", str(budget), "--no-save-model", *flags, *command_flags(params)]  # fmt: skip
            folder = os.path.join(out, f"trial_{trial.number}", *[env] * (len(env_ids) > 1))
            os.makedirs(folder, exist_ok=True)
            run_dir = run_trial(trial, command, folder)
            returns = [value for _, value in read_scalars(run_dir).get("charts/episodic_return", [])]
            if not returns:
                raise TrialFailed(f"no episode of {env} ended in {budget} steps")
            scores[env] = float(np.mean(returns[-last_episodes:]))
        trial.set_user_attr("returns", scores)
        return float(np.mean([scores[env] / scale for env, scale in zip(env_ids, normalize)]))

    done = {json.dumps(t.params, sort_keys=True) for t in study.trials}
    for name in enqueue:  # known recipes first (once per study)
        if json.dumps(RECIPES[name], sort_keys=True) not in done:
            study.enqueue_trial(RECIPES[name], user_attrs={"recipe": name})
    study.optimize(objective, n_trials=trials, n_jobs=jobs, catch=(TrialFailed,))
    return study


def best_table(study, k: int = 5) -> str:
    """The study in one sentence and its k best complete trials as a Markdown table."""
    from optuna.trial import TrialState

    states = [trial.state for trial in study.trials]
    attrs = study.user_attrs
    fixed = ", flags " + " ".join(attrs["flags"]) if attrs.get("flags") else ""
    complete = sorted((t for t in study.trials if t.state == TrialState.COMPLETE), key=lambda t: -t.value)[:k]
    lines = [
        f"{len(states)} trials ({states.count(TrialState.COMPLETE)} complete, {states.count(TrialState.PRUNED)} "
        f"pruned, {states.count(TrialState.FAIL)} failed) of {attrs.get('script')} on {attrs.get('env_id')}, "
        f"{attrs.get('budget', 0):,} steps each (seed {attrs.get('seed')}{fixed}); "
        f"objective: the mean return of the last {attrs.get('last_episodes')} episodes"
        + (
            f" per env, divided by {', '.join(f'{x:g}' for x in attrs['normalize'])}, averaged over the envs."
            if isinstance(attrs.get("env_id"), list)
            else "."
        ),
        "",
    ]
    if not complete:
        return "\n".join(lines + ["No complete trial."])
    flags = list(complete[0].user_attrs["flags"])
    envs = list(complete[0].user_attrs.get("returns", {})) if isinstance(attrs.get("env_id"), list) else []
    lines.append("| trial | objective | " + " | ".join(envs + [f"`{flag}`" for flag in flags]) + " |")
    lines.append("|---|---|" + "---|" * (len(envs) + len(flags)))
    for trial in complete:
        values = [format(trial.user_attrs["returns"][env], ".0f") for env in envs]
        values += [format(trial.user_attrs["flags"].get(flag, ""), ".4g") for flag in flags]
        lines.append(f"| {trial.number} | {trial.value:.{3 if envs else 2}f} | " + " | ".join(values) + " |")
    return "\n".join(lines)


def plot_trials(study, path: str) -> None:
    """Each trial's objective (pruned ones at their last reported return), and the best so far."""
    from optuna.trial import TrialState

    plt = pyplot()
    fig, ax = plt.subplots(figsize=(7, 4))
    complete = [(t.number, t.value) for t in study.trials if t.state == TrialState.COMPLETE]
    pruned = [(t.number, t.intermediate_values[t.last_step]) for t in study.trials
              if t.state == TrialState.PRUNED and t.last_step is not None]  # fmt: skip
    if complete:
        ax.scatter(*zip(*complete), color="tab:blue", label="complete")
        numbers, values = zip(*complete)
        ax.step(numbers, np.maximum.accumulate(values), where="post", color="tab:orange", label="best so far")
    if pruned:
        ax.scatter(*zip(*pruned), color="tab:gray", marker="x", label="pruned (last report)")
    ax.xaxis.get_major_locator().set_params(integer=True)
    ax.set(xlabel="trial", ylabel="objective (mean return, last episodes)", title=study.study_name)
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("script", help="the script to tune, e.g. ppo.py")
    parser.add_argument("--env-id", required=True, nargs="+", help="one env, or several for a normalized objective")
    parser.add_argument("--normalize", type=float, nargs="+", help="per env: its return is divided by this figure")
    parser.add_argument("--space", choices=["basic", "recipe"], default="basic", help="the search space (see suggest*)")
    parser.add_argument("--enqueue", nargs="+", default=[], choices=list(RECIPES), help="known recipes to run first")
    parser.add_argument("--trials", type=int, default=20, help="trials to add to the study")
    parser.add_argument("--budget", type=int, default=100_000, help="environment steps per trial")
    parser.add_argument("--seed", type=int, default=1, help="the seed of every trial")
    parser.add_argument("--last-episodes", type=int, default=100, help="the objective averages this many last episodes")
    parser.add_argument("--storage", help="Optuna storage URL (default sqlite:///benchmark/out/tune_<script>_<env>.db)")
    parser.add_argument(
        "--out", help="folder of the trials' runs and outputs (default benchmark/out/tune_<script>_<env>)"
    )
    parser.add_argument("--jobs", type=int, default=1, help="trials at a time")
    cli, flags = parse_args_and_flags(parser)
    cli.env_id = cli.env_id[0] if len(cli.env_id) == 1 else cli.env_id

    out = os.path.abspath(
        cli.out or os.path.join(ROOT, "benchmark", "out", f"tune_{study_name(cli.script, cli.env_id)}")
    )
    study = tune(cli.script, cli.env_id, cli.trials, cli.budget, flags, cli.storage, out, cli.seed, cli.last_episodes,
                 cli.jobs, normalize=cli.normalize, space=cli.space, enqueue=cli.enqueue)  # fmt: skip
    text = best_table(study)
    with open(os.path.join(out, "best.md"), "w") as f:
        f.write(text + "\n")
    plot_trials(study, os.path.join(out, "trials.png"))
    print(f"\n{text}\n\ntrials: {os.path.join(out, 'trials.png')}")


if __name__ == "__main__":
    main()
