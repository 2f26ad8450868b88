"""Whole-process wall time of two or more commands, run alternately, as medians and ratios to the first.

    python benchmark/sidebyside.py --seeds 1 2 3 --cwd /tmp/bench \\
        "python ppo.py --no-progress --no-save-model" "python OLD/ppo.py --no-progress --no-save-model"

Each seed runs every command once, in turn (`--seed N` appended), so that a machine's drift weighs on all alike;
the table gives each command's wall times, their median, and the ratio of its median to the first command's
(below 1: faster than the first). Commands run from --cwd (their runs/ land there).
"""

import argparse
import os
import shlex
import statistics
import subprocess
import sys
import time


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("commands", nargs="+", help="the commands, each one string")
    parser.add_argument("--seeds", type=int, nargs="+", default=[1, 2, 3])
    parser.add_argument("--cwd", default=".", help="the folder the commands run from")
    cli = parser.parse_args()
    os.makedirs(cli.cwd, exist_ok=True)
    times = {command: [] for command in cli.commands}
    for seed in cli.seeds:
        for command in cli.commands:
            start = time.perf_counter()
            done = subprocess.run([*shlex.split(command), "--seed", str(seed)], cwd=cli.cwd, capture_output=True)
            if done.returncode != 0:
                sys.exit(f"sidebyside.py: error: {command} --seed {seed} exited {done.returncode}")
            times[command].append(time.perf_counter() - start)
            print(f"seed {seed}: {times[command][-1]:7.1f} s  {command}", flush=True)
    first = statistics.median(times[cli.commands[0]])
    print("\n| command | wall time (s), per seed | median | ratio to the first |\n|---|---|---|---|")
    for command, values in times.items():
        each = " / ".join(f"{value:.1f}" for value in values)
        median = statistics.median(values)
        print(f"| `{command}` | {each} | {median:.1f} | {median / first:.3f} |")


if __name__ == "__main__":
    main()
