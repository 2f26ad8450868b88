"""Run one of the scripts as its CLI would, timing where the wall time goes.

    python benchmark/timed.py SPLIT_JSON SCRIPT [script flags...]

The script is imported as a module and three of its functions are wrapped with timers before its
`main()` runs: the vector env's `step` (env stepping, with its preprocessing), `collect_rollout`
(env stepping + policy inference + bookkeeping) and `ppo_update`. Each timer costs well under a
microsecond, so the run is the same run. The split (seconds) goes to SPLIT_JSON.
"""

import importlib.util
import json
import os
import sys
import time


def timed(function, totals: dict, key: str):
    def wrapper(*args, **kwargs):
        start = time.perf_counter()
        try:
            return function(*args, **kwargs)
        finally:
            totals[key] += time.perf_counter() - start

    return wrapper


def run(split_json: str, script: str, flags: list[str]) -> None:
    spec = importlib.util.spec_from_file_location(os.path.basename(script)[: -len(".py")], script)
    module = importlib.util.module_from_spec(spec)
    sys.argv = [script, *flags]
    sys.path.insert(0, os.path.dirname(os.path.abspath(script)))  # (its run module, ppo_run.py, beside it)
    spec.loader.exec_module(module)

    totals = dict.fromkeys(["env_step", "rollout", "update"], 0.0)
    make_envs = module.make_envs

    def timed_make_envs(*args, **kwargs):
        envs = make_envs(*args, **kwargs)
        envs.step = timed(envs.step, totals, "env_step")
        return envs

    module.make_envs = timed_make_envs
    module.collect_rollout = timed(module.collect_rollout, totals, "rollout")
    module.ppo_update = timed(module.ppo_update, totals, "update")
    start = time.perf_counter()
    module.ppo_run.main(module)
    totals["total"] = time.perf_counter() - start
    with open(split_json, "w") as f:
        json.dump(totals, f)


if __name__ == "__main__":
    run(sys.argv[1], sys.argv[2], sys.argv[3:])
