"""The benchmark tooling on real tiny runs of ppo.py: the experiment runner (parallel, resumable), its table
and plots, the statistics (IQM, bootstrap confidence interval), the Optuna tuner (trials, resume), and
bench.py compared with finished reference runs."""

import glob
import json
import os
import re
import subprocess
import sys

import numpy as np
import pytest
from conftest import ROOT, run_script

from benchmark import experiments, tune  # noqa: E402

TINY = ["--total-timesteps", "2048", "--num-steps", "64", "--no-save-model"]  # 8 iterations of 4 x 64 steps


def is_png(path) -> bool:
    with open(path, "rb") as f:
        return f.read(8) == b"\x89PNG\r\n\x1a\n"


def test_iqm_on_known_numbers():
    assert experiments.iqm([4, 1, 3, 2]) == pytest.approx(2.5)  # the middle two of four
    assert experiments.iqm([1, 2, 3, 4, 5, 6, 7, 1000]) == pytest.approx(4.5)  # 3..6; the outlier is out
    assert experiments.iqm([0, 3, 30]) == pytest.approx(0 / 6 + 3 * 2 / 3 + 30 / 6)  # weights 1/6, 2/3, 1/6
    assert experiments.iqm([5.0]) == pytest.approx(5.0)
    np.testing.assert_allclose(experiments.iqm([[1, 2, 3, 4], [0, 0, 9, 0]]), [2.5, 0.0])  # along the last axis


def test_bootstrap_ci_on_known_numbers():
    assert experiments.bootstrap_ci([7, 7, 7]) == pytest.approx((7.0, 7.0))
    # two values: resamples (0,0), (0,1), (1,0), (1,1), with IQMs 0, 0.5, 0.5, 1
    assert experiments.bootstrap_ci([0, 1]) == (0.0, 1.0)
    values = [480.0, 500.0, 455.0, 499.0, 120.0]
    low, high = experiments.bootstrap_ci(values)
    assert low <= experiments.iqm(values) <= high and min(values) <= low and high <= max(values)
    assert experiments.bootstrap_ci(values) == (low, high)  # seeded: the same interval every time
    low_mean, high_mean = experiments.bootstrap_ci(values, statistic=np.mean, resamples=500, level=0.5)
    assert low_mean < np.mean(values) < high_mean


def test_flags_of_scripts():
    assert experiments.flags_name([]) == "defaults"
    assert experiments.flags_name(["--clip-coef", "0.1", "--no-save-model"]) == "clip-coef=0.1_no-save-model"
    flags = ["--clip-coef", "0.1", "--no-bootstrap-truncation", "--norm-adv", "--no-such-flag", "--no-clip-coef"]
    assert experiments.unsupported_flags("ppo.py", flags) == ["--no-such-flag", "--no-clip-coef"]
    assert experiments.script_args("ppo_continuous_action.py")["num_steps"] == 2048


def synthetic_row(env_id: str, variant: str, seed: int, final: float) -> dict:
    """A row as experiments.collect gives it: 50 episodes of return `final`, one every 10 steps (0.1 s)."""
    steps = np.arange(1, 51) * 10
    return {"script": "ppo.py", "env_id": env_id, "variant": variant, "seed": seed, "final_return": final,
            "steps": 500, "sps": 1000.0 * seed, "wall_s": 10.0 * seed, "episodes": 50,
            "curve": [steps.tolist(), [final] * 50], "times": (steps / 100).tolist()}  # fmt: skip


def test_table_and_curves_on_known_rows(tmp_path):
    rows = [synthetic_row("CartPole-v1", "clip", seed, final) for seed, final in [(1, 400.0), (2, 500.0), (3, 450.0)]]
    rows += [synthetic_row("CartPole-v1", "pg", 1, 100.0), synthetic_row("Acrobot-v1", "clip", 1, -90.0)]
    lines = experiments.table(rows, experiments.REFERENCES).splitlines()
    assert lines[0].startswith("| env | script | variant | seeds | steps | final return (mean ± std) | IQM [95% CI] |")
    assert lines[0].endswith("| reference |") and len(lines) == 2 + 3
    # 450 ± 40.82 (std over seeds, ddof 0); IQM 400/6 + 450 * 2/3 + 500/6 = 450; median steps/s and wall time
    assert lines[2].startswith("| CartPole-v1 | ppo.py | clip | 3 | 500 | 450.00 ± 40.82 | 450.00 [")
    assert lines[2].endswith("] | 2,000 | 20 | 490.04 ± 6.12 (CleanRL, 500k steps) |")  # the reference, once
    assert (
        lines[3] == "| CartPole-v1 | ppo.py | pg | 1 | 500 | 100.00 ± 0.00 | 100.00 [100.00, 100.00] | 1,000 | 10 |  |"
    )
    assert (
        lines[4] == "| Acrobot-v1 | ppo.py | clip | 1 | 500 | -90.00 ± 0.00 | -90.00 [-90.00, -90.00] | 1,000 | 10 |  |"
    )

    grid_x, mean, std = experiments.curve_band(rows[:3], "steps")
    assert grid_x[0] == 10 and grid_x[-1] == 500
    np.testing.assert_allclose(mean, 450.0)
    np.testing.assert_allclose(std, np.std([400.0, 500.0, 450.0]))
    assert experiments.curve_band(rows[:3], "time")[0][-1] == pytest.approx(5.0)
    for x in ("steps", "time"):
        experiments.plot_curves(rows, str(tmp_path / f"{x}.png"), x)
        assert is_png(tmp_path / f"{x}.png")


def test_runner_resumes_and_reports(in_tmp):
    out = str(in_tmp / "out")
    labelled = experiments.grid([("ppo.py", "CartPole-v1", TINY)], {"default": []}, seeds=[1, 2])
    broken = experiments.Run("ppo.py", "CartPole-v1", 1, (*TINY, "--num-minibatches", "7"))  # 256 doesn't split in 7
    runs = [run for _, run in labelled] + [broken]

    assert experiments.run_all(runs, out, jobs=2) == {"done": 0, "ran": 2, "failed": 1}
    assert not os.path.exists(os.path.join(broken.folder(out), "done.json"))
    assert "does not split" in open(os.path.join(broken.folder(out), "log.txt")).read()
    done = json.load(open(os.path.join(runs[0].folder(out), "done.json")))
    assert done["command"] == ["ppo.py", "--env-id", "CartPole-v1", "--seed", "1", *TINY] and done["wall_s"] > 0
    # a second call runs only what is not complete
    assert experiments.run_all(runs, out, jobs=2) == {"done": 2, "ran": 0, "failed": 1}
    assert len(os.listdir(os.path.join(runs[0].folder(out), "runs"))) == 1

    rows = experiments.collect(labelled, out)
    assert [(row["variant"], row["seed"]) for row in rows] == [("default", 1), ("default", 2)]
    for row in rows:
        assert row["steps"] == 2048 and row["episodes"] > 10 and row["final_return"] > 0 and row["sps"] > 0
        assert len(row["times"]) == row["episodes"] and 0 < row["times"][0] <= row["times"][-1] <= row["wall_s"]
    assert rows[0]["curve"] != rows[1]["curve"]  # two seeds, two runs

    lines = experiments.report(rows, out).splitlines()
    finals = np.array([row["final_return"] for row in rows])
    assert (
        len(lines) == 3
        and "reference" not in lines[0]
        and lines[2].startswith(
            f"| CartPole-v1 | ppo.py | default | 2 | 2,048 | {finals.mean():.2f} ± {finals.std():.2f} | "
            f"{experiments.iqm(finals):.2f} ["
        )
    )
    assert open(os.path.join(out, "table.md")).read() == "\n".join(lines) + "\n"
    assert is_png(os.path.join(out, "curves_steps.png")) and is_png(os.path.join(out, "curves_time.png"))


def test_tuner_runs_trials_and_resumes_its_study(in_tmp):
    from optuna.trial import TrialState

    storage = f"sqlite:///{in_tmp / 'study.db'}"
    settings = dict(
        budget=2048, flags=["--num-steps", "64"], storage=storage, out=str(in_tmp / "trials"), last_episodes=20
    )
    study = tune.tune("ppo.py", "CartPole-v1", 2, **settings)
    assert [trial.state for trial in study.trials] == [TrialState.COMPLETE] * 2
    for trial in study.trials:
        assert np.isfinite(trial.value) and trial.value > 0
        assert max(trial.intermediate_values) == 2048  # the progress lines were reported, to the last
        assert set(trial.user_attrs["flags"]) >= {"--learning-rate", "--gamma", "--ent-coef", "--num-minibatches"}
        assert 256 % trial.user_attrs["flags"]["--num-minibatches"] == 0

    resumed = tune.tune("ppo.py", "CartPole-v1", 1, **settings)  # the same study, one more trial
    assert [trial.number for trial in resumed.trials] == [0, 1, 2]
    assert resumed.trials[2].state == TrialState.COMPLETE and resumed.trials[2].params != resumed.trials[0].params
    with pytest.raises(ValueError, match="budget"):
        tune.tune("ppo.py", "CartPole-v1", 1, **{**settings, "budget": 4096})  # no mixing of settings

    # a trial the pruner stops: the script gets SIGTERM after its first report, and ends cleanly
    import optuna

    settings.update(storage=f"sqlite:///{in_tmp / 'pruned.db'}", out=str(in_tmp / "pruned"))
    pruned = tune.tune("ppo.py", "CartPole-v1", 1, **settings, pruner=optuna.pruners.ThresholdPruner(lower=1e9))
    assert pruned.trials[0].state == TrialState.PRUNED and list(pruned.trials[0].intermediate_values) == [256]
    assert "SIGTERM" in open(in_tmp / "pruned" / "trial_0" / "log.txt").read()
    assert tune.best_table(pruned).startswith("1 trials (0 complete, 1 pruned, 0 failed)")

    text = tune.best_table(resumed)
    assert text.startswith("3 trials (3 complete, 0 pruned, 0 failed) of ppo.py on CartPole-v1, 2,048 steps each")
    assert len([line for line in text.splitlines() if line.startswith("| ")]) == 1 + 3  # header + 3 trials
    tune.plot_trials(resumed, str(in_tmp / "trials.png"))
    assert is_png(in_tmp / "trials.png")


def test_bench_compares_with_finished_reference_runs(in_tmp):
    os.makedirs(in_tmp / "ref")
    assert run_script("ppo.py", "--seed", "7", *TINY, cwd=in_tmp / "ref").returncode == 0
    (reference_dir,) = glob.glob(str(in_tmp / "ref" / "runs" / "*"))
    bench = [
        sys.executable,
        os.path.join(ROOT, "benchmark", "bench.py"),
        os.path.join(ROOT, "ppo.py"),
        "--seeds",
        "1",
        "--out",
        "out",
    ]
    subprocess.run(
        [*bench, "--reference-runs", reference_dir, "--", *TINY], cwd=in_tmp, check=True, capture_output=True
    )
    results = json.load(open(in_tmp / "out" / "results.json"))
    (ours,), (theirs,) = results["ours"], results["reference"]
    assert ours["seed"] == 1 and ours["steps"] == 2048 and ours["wall_s"] > 0 and "fractions" in ours
    assert theirs["seed"] == 7 and theirs["run_dir"] == reference_dir and theirs["wall_s"] is None
    assert theirs["steps"] == 2048 and theirs["curve"] != ours["curve"]
    assert is_png(in_tmp / "out" / "curves.png")
    wrong = subprocess.run(
        [*bench, "--reference", "x.py", "--reference-runs", reference_dir], cwd=in_tmp, capture_output=True
    )
    assert wrong.returncode == 2 and b"not allowed with" in wrong.stderr


def test_gpu_bench_says_in_one_line_that_there_is_no_gpu_and_times_a_run(tmp_path):
    from benchmark import gpu_bench

    if not gpu_bench.torch.cuda.is_available():
        result = subprocess.run([sys.executable, os.path.join(ROOT, "benchmark", "gpu_bench.py")],
                                capture_output=True, text=True)  # fmt: skip
        assert result.returncode == 1 and result.stdout == ""
        assert len(result.stderr.splitlines()) == 1 and "no CUDA device" in result.stderr
    flags = ["--num-envs", "2", "--num-steps", "64", "--update-epochs", "1", "--num-minibatches", "1"]
    split = gpu_bench.timed_run("ppo_atari.py", 256, flags, str(tmp_path))  # (two rollouts, on whatever device)
    assert 0 < split["env_step"] < split["rollout"] and 0 < split["update"]
    assert split["rollout"] + split["update"] < split["total"] and split["steps_per_second"] > 0


def test_tuner_objective_over_several_envs_is_the_mean_normalized_return_and_recipes_run_first(in_tmp):
    from optuna.trial import TrialState

    storage = f"sqlite:///{in_tmp / 'recipe.db'}"
    envs = ["Pendulum-v1", "InvertedPendulum-v4"]
    settings = dict(budget=2048, storage=storage, out=str(in_tmp / "recipe"), last_episodes=20,
                    normalize=[-1000.0, 50.0], space="recipe", enqueue=["cleanrl", "tianshou"])  # fmt: skip
    study = tune.tune("ppo_continuous_action.py", envs, 2, flags=["--num-minibatches", "4"], **settings)
    assert [trial.state for trial in study.trials] == [TrialState.COMPLETE] * 2
    for trial, recipe in zip(study.trials, ["cleanrl", "tianshou"]):  # the known recipes, in the order given
        assert trial.params == tune.RECIPES[recipe] and trial.user_attrs["recipe"] == recipe
        returns = trial.user_attrs["returns"]
        assert trial.value == pytest.approx((returns[envs[0]] / -1000.0 + returns[envs[1]] / 50.0) / 2)
        for env in envs:  # each env trained in the trial's own folder, with the trial's flags
            log = open(in_tmp / "recipe" / f"trial_{trial.number}" / env / "log.txt").read()
            assert "step 2048/2048" in log
    flags = study.trials[1].user_attrs["flags"]
    assert flags["--num-envs"] * flags["--num-steps"] == 2048 and flags["--recompute-adv"] is True
    assert tune.command_flags({"--recompute-adv": True, "--norm-adv": False, "--num-envs": 8}) == [
        "--recompute-adv", "--no-norm-adv", "--num-envs", "8"]  # fmt: skip
    # resumed: the recipes are not run again, the sampler's trials follow
    resumed = tune.tune("ppo_continuous_action.py", envs, 1, flags=["--num-minibatches", "4"], **settings)
    assert len(resumed.trials) == 3 and "recipe" not in resumed.trials[2].user_attrs
    text = tune.best_table(resumed)
    assert "| trial | objective | Pendulum-v1 | InvertedPendulum-v4 | `--num-envs` |" in text


def test_results_only_rewrites_the_sections_it_names(tmp_path):
    from benchmark import results

    page = tmp_path / "RESULTS.md"
    page.write_text("# Benchmark results\n\nhead\n\n## (a) A\n\nold a\n\n## (b) B\n\nold b\n")
    lines = results.splice(str(page), {"## (b) B": ["## (b) B", "", "new b", ""], "## (f) F": ["## (f) F", ""]})
    assert "\n".join(lines) == "# Benchmark results\n\nhead\n\n## (a) A\n\nold a\n\n## (b) B\n\nnew b\n\n## (f) F\n"


def test_mutation_page_keeps_its_final_rows_for_resume(tmp_path):
    sys.path.insert(0, os.path.join(ROOT, "tools"))
    import mutate
    from mutants import MUTANTS

    killed, errored, unrun = MUTANTS[0], MUTANTS[1], MUTANTS[2]
    equivalent = next(m for m in MUTANTS if m.equivalent)
    results = {
        killed.name: ("killed", "tests/test_x.py::test_y[a|b]", 3.0, "abc1234"),
        equivalent.name: ("survived", "", 9.0, "abc1234+"),
        errored.name: ("error", "pytest exit 2", 1.0, "abc1234"),
    }
    page = tmp_path / "page.md"
    summary = mutate.write_page(str(page), MUTANTS, results, "python tools/mutate.py")
    assert summary.startswith(f"3 of {len(MUTANTS)} mutants run: 1 of ") and "1 errors" in summary
    kept = mutate.read_page(str(page))
    # killed and equivalent rows come back (a "|" in a test id included); the error and the unrun mutant run again
    assert kept == {
        killed.name: ("killed", "tests/test_x.py::test_y[a|b]", 0.0, "abc1234"),
        equivalent.name: ("survived", equivalent.equivalent, 0.0, "abc1234+"),
    }
    assert f"| `{unrun.name}` | " in page.read_text() and "not run yet" in page.read_text()


def test_the_pages_links_to_files_of_the_repository_resolve():
    # a page under docs/ links with ../ (relative to the page, as GitHub resolves it); a link that resolves
    # nowhere is a figure or table the reader cannot find
    pages = ["README.md", "benchmark/RESULTS.md", *sorted(glob.glob(os.path.join(ROOT, "docs", "*.md")))]
    broken = []
    for page in pages:
        path = os.path.join(ROOT, page)
        for target in re.findall(r"\]\(([^)#\s]+)", open(path).read()):
            if "://" not in target and not os.path.exists(os.path.join(os.path.dirname(path), target)):
                broken.append(f"{os.path.relpath(path, ROOT)}: {target}")
    assert not broken
