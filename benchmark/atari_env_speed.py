"""The ceiling of the Atari training envs: env-only steps per second with random actions.

    python benchmark/atari_env_speed.py --steps 20000 --repeats 3

Each backend is built exactly as its script's training builds it (`make_envs` with the script's
defaults: 8 envs, all preprocessing): gymnasium, ppo_atari.py's wrappers; ale-vector,
ppo_atari_ale_vector.py's C++ vector env. Each is stepped with uniformly random actions, no network.
The backends alternate (gymnasium, ale-vector, gymnasium, ...), so that both see the same machine
conditions; the median of the repeats is printed as a Markdown table, with the ratio between them.
Set beside the training steps per second of `benchmark/bench.py ppo_atari.py`, this says how much of
training the env could take at most.
"""

import argparse
import importlib
import os
import statistics
import sys
import time

import numpy as np

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
import ppo_atari  # noqa: E402

BACKENDS = {"gymnasium": "ppo_atari", "ale-vector": "ppo_atari_ale_vector"}  # backend: the script training on it


def env_steps_per_second(env_id: str, backend: str, num_envs: int, steps: int, seed: int) -> float:
    """Vector steps of `num_envs` envs each, random actions; returns env steps (over all envs) per second."""
    envs = importlib.import_module(BACKENDS[backend]).make_envs(env_id, num_envs)
    rng = np.random.default_rng(seed)
    envs.reset(seed=seed)
    n_actions = int(envs.single_action_space.n)
    iterations = steps // num_envs
    start = time.perf_counter()
    for _ in range(iterations):
        envs.step(rng.integers(n_actions, size=num_envs))
    elapsed = time.perf_counter() - start
    envs.close()
    return iterations * num_envs / elapsed


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--env-id", default=ppo_atari.Args.env_id)
    parser.add_argument("--num-envs", type=int, default=ppo_atari.Args.num_envs)
    parser.add_argument("--steps", type=int, default=20_000, help="env steps (over all envs) per measurement")
    parser.add_argument("--repeats", type=int, default=3)
    cli = parser.parse_args()

    results = {backend: [] for backend in BACKENDS}
    for repeat in range(cli.repeats):
        for backend in BACKENDS:
            sps = env_steps_per_second(cli.env_id, backend, cli.num_envs, cli.steps, seed=repeat)
            results[backend].append(sps)
            print(f"{backend} repeat {repeat + 1}: {sps:,.0f} env steps/s", flush=True)

    medians = {backend: statistics.median(values) for backend, values in results.items()}
    print(f"\n`python benchmark/atari_env_speed.py {' '.join(sys.argv[1:])}`\n")
    print("| backend | env-only steps/s (random actions), median | runs |")
    print("|---|---|---|")
    for backend, values in results.items():
        print(f"| {backend} | {medians[backend]:,.0f} | {', '.join(f'{v:,.0f}' for v in values)} |")
    print(f"\nale-vector / gymnasium: {medians['ale-vector'] / medians['gymnasium']:.2f}x")


if __name__ == "__main__":
    main()
