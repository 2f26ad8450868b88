"""ppo_atari.py on a CUDA machine: steps per second and where the time goes, in a few minutes.

    python benchmark/gpu_bench.py                          # Breakout, 4 settings, 49,152 steps each
    python benchmark/gpu_bench.py --steps 98304 -- --num-envs 16   # flags after -- go to every run

Each setting is one fresh run of ppo_atari.py through benchmark/timed.py (env stepping, rollout
inference, update, the rest): the defaults (gymnasium wrappers, fp32, channels-last weights), the plain
NCHW layout, bf16 autocast (where the GPU has native bf16), and ppo_atari_ale_vector.py (ale-py's C++
vector env). Printed as a
Markdown table. On a machine where torch sees no CUDA device it says so in one line and exits with 1.
"""

import argparse
import json
import os
import subprocess
import sys
import tempfile

import torch

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
SETTINGS = {  # name: (script, flags)
    "defaults (gymnasium, fp32, channels-last)": ("ppo_atari.py", []),
    "plain NCHW layout": ("ppo_atari.py", ["--no-channels-last"]),
    "bf16 autocast": ("ppo_atari.py", ["--bf16"]),
    "ale-vector (ppo_atari_ale_vector.py)": ("ppo_atari_ale_vector.py", []),
}


def timed_run(script: str, steps: int, flags: list[str], folder: str) -> dict:
    """One run's split (seconds) and its steps per second of training (rollouts and updates)."""
    split_json = os.path.join(folder, "split.json")
    command = [sys.executable, os.path.join(ROOT, "benchmark", "timed.py"), split_json,
               os.path.join(ROOT, script), "--total-timesteps", str(steps), "--no-progress",
               "--no-save-model", *flags]  # fmt: skip
    subprocess.run(command, cwd=folder, check=True)
    with open(split_json) as f:
        split = json.load(f)
    split["steps_per_second"] = steps / (split["rollout"] + split["update"])
    return split


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=49_152, help="steps per run (48 rollouts at the defaults)")
    parser.add_argument("flags", nargs="*", help="ppo_atari.py flags for every run (after --)")
    args = parser.parse_args()
    if not torch.cuda.is_available():
        print("gpu_bench.py: torch sees no CUDA device here; run it on a machine with an NVIDIA GPU", file=sys.stderr)
        sys.exit(1)
    print(f"{torch.cuda.get_device_name()}, torch {torch.__version__}, {args.steps:,} steps per run\n")
    print("| setting | steps/s | env stepping | rollout inference | update | other |\n|---|---|---|---|---|---|")
    for name, (script, flags) in SETTINGS.items():
        if "--bf16" in flags and not torch.cuda.is_bf16_supported(including_emulation=False):
            print(f"| {name} | (this GPU has no native bf16) | | | | |")
            continue
        with tempfile.TemporaryDirectory() as folder:
            s = timed_run(script, args.steps, [*flags, *args.flags], folder)
        shares = [s["env_step"], s["rollout"] - s["env_step"], s["update"], s["total"] - s["rollout"] - s["update"]]
        print(
            f"| {name} | {s['steps_per_second']:,.0f} | " + " | ".join(f"{x / s['total']:.0%}" for x in shares) + " |"
        )


if __name__ == "__main__":
    main()
