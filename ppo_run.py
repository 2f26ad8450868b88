"""The run of a PPO script, everything that is not the algorithm: errors and input checks, the run directory,
TensorBoard log, progress bar, signals, checkpoints, resume, evaluation, and `main`. Kept beside the scripts
(as CleanRL keeps cleanrl_utils), the same for all of them: a copied script needs this file beside it.

A script hands itself (its module) to `main`, which reads from it: Args, RANGES (the range of every number),
RUN_CONTROL (the Args a resume takes from the command line), RECIPES (named defaults for --recipe), check_env,
make_env, make_agent and train.
"""

import contextlib
import difflib
import glob
import math
import os
import random
import signal
import sys
import time
import types
from dataclasses import asdict, fields

import gymnasium as gym
import numpy as np
import torch
import torch.nn as nn
from torch.utils.tensorboard import SummaryWriter
from tqdm import tqdm

EVAL_SEEDS = 1_000_000_000  # evaluation episode i resets with seed EVAL_SEEDS + seed + i, apart from training's


class UsageError(Exception):  # bad input: one line on stderr, exit code 2, nothing written
    code = 2


class NonFiniteError(Exception):  # a non-finite loss, gradient or parameter: one line, exit code 1
    code = 1


class Interrupted(Exception):  # SIGINT or SIGTERM (or --stop-at-step: 0): stopped after the checkpoint
    def __init__(self, message: str, signum: int):
        super().__init__(message)
        self.code = 128 + signum if signum else 0  # exit code 128 + the signal (0: paused)


def script_name() -> str:
    return os.path.basename(sys.argv[0])  # (the script that was started, for messages)


def check_numbers(script, args) -> None:
    tests = {"positive": lambda x: x > 0, "in [0, 1]": lambda x: 0 <= x <= 1, "0 or positive": lambda x: x >= 0}
    for asked, names in script.RANGES.items():
        for name in names:
            if getattr(args, name) is not None and not tests[asked](getattr(args, name)):
                raise UsageError(f"--{name.replace('_', '-')} must be {asked}, got {getattr(args, name)}")
    for name, value in asdict(args).items():
        if isinstance(value, float) and not math.isfinite(value):
            raise UsageError(f"--{name.replace('_', '-')} must be finite, got {value}")


def check_args(script, args) -> None:
    """Refuse impossible settings and unsuitable envs before anything is written; fill in the sizes."""
    check_numbers(script, args)
    args.batch_size = args.num_envs * args.num_steps
    args.minibatch_size = args.batch_size // args.num_minibatches
    args.num_iterations = args.total_timesteps // args.batch_size
    batch = f"the batch of {args.batch_size} steps (--num-envs {args.num_envs} x --num-steps {args.num_steps})"
    if args.batch_size % args.num_minibatches:
        raise UsageError(f"{batch} does not split into --num-minibatches {args.num_minibatches}")
    if args.stop_at_step and not args.save_model:  # (a pause that keeps nothing to go on from)
        raise UsageError("--stop-at-step needs the checkpoint that --no-save-model turns off")
    if args.total_timesteps < args.batch_size:
        raise UsageError(f"--total-timesteps {args.total_timesteps} is less than one batch ({args.batch_size} steps)")
    if args.norm_adv and args.minibatch_size < 2:  # (core 7) the std of one sample is NaN
        hint = "advantage normalization needs at least 2: use fewer minibatches or --no-norm-adv"
        raise UsageError(f"--num-minibatches {args.num_minibatches} leaves 1 sample per minibatch, and {hint}")
    script.check_env(args)


def register_atari_envs() -> None:
    """Atari ids are registered only on request (gymnasium 1.x); ale-py ships the ROMs."""
    import ale_py

    ale_py.ALEInterface.setLoggerMode(ale_py.LoggerMode.Error)  # no banner on stderr
    gym.register_envs(ale_py)


def known_env(env_id: str) -> gym.Env:
    """The env of a registered id (Atari ids too, for their hints), else a UsageError."""
    if env_id not in gym.registry:
        register_atari_envs()
    if env_id not in gym.registry:
        close = difflib.get_close_matches(env_id, list(gym.registry), n=3, cutoff=0.6)
        raise UsageError(f"unknown environment id {env_id!r}" + (f"; did you mean {' or '.join(close)}?" * bool(close)))
    try:
        return gym.make(env_id, disable_env_checker=True)
    except Exception as e:  # e.g. a missing optional dependency
        raise UsageError(f"cannot create {env_id}: {e}") from None


def new_run_dir(args) -> str:
    """Create runs/{env_id}__{exp_name}__{seed}__{unix_time}, never an existing one (the stamp moves on)."""
    stamp = int(time.time())
    while True:
        try:
            run_dir = os.path.join("runs", f"{args.env_id}__{args.exp_name}__{args.seed}__{stamp}")
            os.makedirs(run_dir)
            return run_dir
        except FileExistsError:
            stamp += 1


def save_checkpoint(path: str, agent: nn.Module, optimizer, args, global_step: int, iteration: int, **extra):
    """All a run needs to go on, in one file, written atomically (a temporary file renamed over the old one)."""
    rng = {"torch": torch.get_rng_state()}
    if torch.cuda.is_initialized():
        rng["cuda"] = torch.cuda.get_rng_state()
    if extra.get("policy_rng") is not None:  # the numpy rollout policy's generator
        rng["policy"] = extra.pop("policy_rng").bit_generator.state
    agent_state = {name: tensor.cpu() for name, tensor in agent.state_dict().items()}  # loadable without a GPU
    state = dict(agent=agent_state, optimizer=optimizer.state_dict(), args=asdict(args), rng=rng, **extra)
    state.update(global_step=global_step, iteration=iteration)
    with open(path + ".tmp", "wb") as f:
        torch.save(state, f)
        f.flush()
        os.fsync(f.fileno())
    os.replace(path + ".tmp", path)


def set_rng_states(rng: dict, policy_rng: np.random.Generator | None = None) -> None:
    torch.set_rng_state(rng["torch"])
    if "cuda" in rng and torch.cuda.is_initialized():  # (else seeded: resumed on a CPU)
        torch.cuda.set_rng_state(rng["cuda"])
    if policy_rng is not None:
        policy_rng.bit_generator.state = rng["policy"]


def load_checkpoint(path: str) -> tuple[str, dict]:
    """(file path, contents) of the checkpoint at `path` (a file or a run directory); a UsageError if unreadable."""
    found = glob.glob(os.path.join(path, "*.cleanrl_model")) if os.path.isdir(path) else [path]
    if len(found) != 1:
        raise UsageError(f"{path} holds {len(found)} checkpoints (*.cleanrl_model), not one; name the file")
    path = found[0]
    if not os.path.isfile(path):
        raise UsageError(f"no checkpoint at {path}")
    try:  # weights_only: loading runs no pickled code
        state = torch.load(path, map_location="cpu", weights_only=True)
        state["agent"], state["args"]["env_id"], state["global_step"]  # the keys every checkpoint has
    except Exception as e:
        raise UsageError(f"{path} is not a readable checkpoint (truncated or corrupt? {type(e).__name__})") from None
    return path, state


def given_flags(script, argv: list[str]) -> set[str]:
    """The Args fields a command line names (--name, --name=value, --no-name), whatever their values."""
    names = {f.name for f in fields(script.Args)}
    given = {token[2:].split("=", 1)[0].replace("-", "_") for token in argv if token.startswith("--")}
    return {name[3:] if name.startswith("no_") and name not in names else name for name in given} & names


def resumed_args(script, args, saved: dict, given: set[str] | None = None):
    """The checkpoint's Args, but the run-control flags of `args`. A flag given (None: those off their defaults)
    that contradicts the checkpoint is refused; one the checkpoint does not know is taken."""
    defaults = asdict(script.Args())
    given = {k for k, v in asdict(args).items() if v != defaults[k]} if given is None else given
    named = [
        name for name in sorted(given - script.RUN_CONTROL) if name in saved and getattr(args, name) != saved[name]
    ]
    conflicts = [f"--{name.replace('_', '-')} {saved[name]} (not {getattr(args, name)})" for name in named]
    if conflicts:
        raise UsageError(f"cannot resume {args.resume}: it was trained with {', '.join(conflicts)}")
    kept = {k: v for k, v in saved.items() if k in defaults and k not in script.RUN_CONTROL}
    return script.Args(**{**asdict(args), **kept})


def load_agent(script, checkpoint: dict) -> nn.Module:
    """The agent of a checkpoint, its weights loaded (on the CPU)."""
    learned = {
        k: v for k, v in checkpoint["args"].items() if k in asdict(script.Args()) and k not in script.RUN_CONTROL
    }
    args = script.Args(**learned)  # (the run-control flags it was trained with, e.g. videos, are not its agent's)
    script.check_env(args)
    env = script.make_env(args.env_id)
    agent = script.make_agent(args, env.observation_space, env.action_space)
    env.close()
    try:
        agent.load_state_dict(checkpoint["agent"])
    except RuntimeError as e:  # another network shape
        first_line = str(e).splitlines()[0]
        raise UsageError(f"the checkpoint's weights do not fit the agent for {args.env_id}: {first_line}") from None
    return agent


def evaluate(make_env, agent, env_id: str, episodes: int, deterministic: bool, seed=0, video_folder=None) -> list:
    """Play whole episodes (Atari: games) with the policy in envs of `make_env` (the script's); their returns in
    the env's own rewards."""
    env, returns = make_env(env_id, video_folder, name_prefix="eval"), []
    for episode in range(episodes):
        obs, info = env.reset(seed=EVAL_SEEDS + seed + episode)
        while "episode" not in info:
            obs, _, terminated, truncated, info = env.step(agent.play(obs, deterministic))
            if (terminated or truncated) and "episode" not in info:  # (Atari) a lost life: the game goes on
                obs, _ = env.reset()
        returns.append(float(info["episode"]["r"]))
    env.close()
    return returns


def ended_episodes(infos: dict, step: int) -> list[tuple]:
    """(step, env, return, length) of each episode (Atari: game) that a vector step ended."""
    final = infos.get("final_info", {})
    ended = np.flatnonzero(final["_episode"]) if "_episode" in final else []
    return [(step, int(i), float(final["episode"]["r"][i]), int(final["episode"]["l"][i])) for i in ended]


def start_tracking(args, checkpoint: dict | None, resume_from) -> tuple:
    """(--track) A Weights & Biases run with the Args as its config (offline with WANDB_MODE=offline); returns
    (wandb, the run's id; a resumed run keeps its checkpoint's). Its scalars are the TensorBoard log's (Run.log)."""
    try:
        import wandb
    except ImportError:
        raise UsageError("--track needs wandb (pip install wandb)") from None
    wandb_id = (checkpoint or {}).get("wandb_id") or os.urandom(4).hex()
    name = os.path.basename(os.path.dirname(resume_from[0])) if resume_from else f"{args.env_id}__{args.exp_name}"
    try:
        project = {"project": args.wandb_project_name, "entity": args.wandb_entity}
        wandb.init(**project, config=asdict(args), name=name, id=wandb_id, resume="allow", save_code=True)
        wandb.define_metric("*", step_metric="global_step")  # (the x-axis of every curve, as in TensorBoard)
    except Exception as e:  # (no network, no login, a wrong entity)
        raise UsageError(f"--track: Weights & Biases did not start: {str(e).strip().splitlines()[0]}") from None
    return wandb, wandb_id


class Run:
    """A training run's directory, TensorBoard log, seeds, progress bar, signals and checkpoint schedule."""

    launcher = "python"  # (how to go on from a checkpoint)

    def __init__(self, args, resume_from: tuple[str, dict] | None, rank: int = 0):
        self.args, self.checkpoint = args, resume_from and resume_from[1]
        self.main = rank == 0  # (ppo_atari_multigpu.py) rank 0 alone writes the run directory, logs and checkpoints
        self.wandb_id, self.wandb = None, None
        if args.track and self.main:  # (before the run directory: a W&B that cannot start leaves nothing behind)
            self.wandb, self.wandb_id = start_tracking(args, self.checkpoint, resume_from)
        self.dir = None
        if resume_from:
            self.dir = os.path.dirname(resume_from[0])
        elif self.main:
            self.dir = new_run_dir(args)
        self.checkpoint_path = resume_from[0] if resume_from else f"{self.dir}/{args.exp_name}.cleanrl_model"
        self.global_step = self.checkpoint["global_step"] if self.checkpoint else 0
        self.done_iterations = self.checkpoint["iteration"] if self.checkpoint else 0
        # resumed: a new event file; purge_step hides what the stopped run logged after its checkpoint
        purge_step = self.global_step + 1 if self.checkpoint else None
        self.writer = SummaryWriter(self.dir, purge_step=purge_step) if self.main else None
        if self.main and not self.checkpoint:
            table = "\n".join(f"|{key}|{value}|" for key, value in asdict(args).items())
            self.writer.add_text("hyperparameters", f"|param|value|\n|-|-|\n{table}")
        videos = args.capture_video and self.main
        self.video_folder = os.path.join("videos", os.path.basename(self.dir)) if videos else None
        # a resumed run's videos are named apart, so that the stopped run's stay
        self.video_prefix = f"rl-video-from-step-{self.global_step}" if self.checkpoint else "rl-video"
        random.seed(args.seed + rank)  # seeding, so that a seed gives the same run every time (each rank its own)
        np.random.seed(args.seed + rank)
        torch.manual_seed(args.seed + rank)
        torch.set_num_threads(args.torch_threads)
        self.signal, self.saved, self.recent_returns, self.start_time = None, False, [], time.time()
        # SIGINT (Ctrl-C) and SIGTERM (a scheduler) stop the run after its iteration and checkpoint
        self.handlers = {s: signal.signal(s, self.handle) for s in (signal.SIGINT, signal.SIGTERM)}
        total, desc = args.num_iterations * args.batch_size, "return (last 100 ep)      n/a"
        bar = "step {n}/{total} ({percentage:3.0f}%) | {desc} | {rate_fmt} | {remaining} left"
        pace = {"smoothing": 0, "mininterval": 0.5 if sys.stdout.isatty() else 0, "miniters": max(1, total // 10)}
        look = {"unit": " steps", "desc": desc, "bar_format": bar, "file": sys.stdout, "initial": self.global_step}
        self.bar = tqdm(total=total, disable=not (args.progress and self.main), **look, **pace)

    def handle(self, signum, frame):
        if self.signal is not None:  # a second signal stops at once
            raise KeyboardInterrupt
        self.signal = signum
        if self.main:
            print(f"\n{script_name()}: {signal.Signals(signum).name}: stopping after this iteration", file=sys.stderr)

    def log(self, scalars: dict, step: int) -> None:
        """Scalars to the TensorBoard log, and (--track) to W&B, where a failure costs one warning, not the run."""
        for tag, value in scalars.items():
            self.writer.add_scalar(tag, value, step)
        try:
            if self.wandb is not None:
                self.wandb.log({**scalars, "global_step": step})
        except Exception as e:
            self.warn_tracking(e)

    def warn_tracking(self, e: Exception) -> None:
        why = str(e).strip().splitlines()[0]
        print(f"{script_name()}: warning: Weights & Biases failed, training goes on without it: {why}", file=sys.stderr)
        self.wandb = None

    def log_episodes(self, episodes: list[tuple], global_step: int) -> None:
        for step, _, episodic_return, episodic_length in episodes if self.main else []:
            at = global_step + (step + 1) * self.args.num_envs  # the step at which the episode ended
            self.log({"charts/episodic_return": episodic_return, "charts/episodic_length": episodic_length}, at)
            self.recent_returns = (self.recent_returns + [episodic_return])[-100:]

    @contextlib.contextmanager
    def update(self, iteration: int, global_step: int):
        try:
            yield
        except NonFiniteError as e:  # say where, and which checkpoint is the last good one
            last_good = self.checkpoint_path if self.saved or self.checkpoint else "none written yet"
            raise NonFiniteError(
                f"{e} at iteration {iteration} (step {global_step}); last good checkpoint: {last_good}"
            ) from None

    def end_iteration(self, metrics: dict, iteration: int, global_step: int, agent, optimizer, **extra) -> None:
        """Log the metrics, advance the bar, save a checkpoint (the agent, optimizer, `extra`) when due, stop if a
        signal asked."""
        sps = (global_step - self.global_step) / (time.time() - self.start_time)
        if self.main:
            self.log({**metrics, "charts/SPS": int(sps)}, global_step)
            if self.recent_returns:
                desc = f"return (last 100 ep) {np.mean(self.recent_returns):8.2f}"
                self.bar.set_description_str(desc, refresh=False)
            self.bar.update(self.args.batch_size)
        stop = self.signal
        every, last = self.args.checkpoint_every, iteration == self.args.num_iterations
        # (--stop-at-step) a long run in slices: each ends with a checkpoint, the learning-rate schedule untouched
        paused = 0 < self.args.stop_at_step <= global_step and not last
        if self.args.save_model and self.main and (last or stop or paused or (every and iteration % every == 0)):
            if self.wandb_id:  # (a resumed run goes on in the same W&B run)
                extra["wandb_id"] = self.wandb_id
            save_checkpoint(self.checkpoint_path, agent, optimizer, self.args, global_step, iteration, **extra)
            self.saved = True
        if stop is None and not paused:
            return
        go_on = f"{self.launcher} {script_name()} --resume {self.checkpoint_path}"
        where = f"checkpoint {self.checkpoint_path}; go on with: {go_on}"
        if not self.args.save_model:
            where = "no checkpoint (--no-save-model)"
        if paused and stop is None:
            raise Interrupted(f"paused at step {global_step} (--stop-at-step {self.args.stop_at_step}); {where}", 0)
        raise Interrupted(f"stopped at step {global_step}; {where}", stop)

    def close(self) -> None:
        self.bar.close()
        if self.writer:
            self.writer.close()  # flushed: what was logged is on disk, whatever stopped the run
        for s, handler in self.handlers.items():
            signal.signal(s, handler)

    def evaluate(self, make_env, agent: nn.Module) -> None:
        """After training: (--eval-episodes) play episodes with the policy, logged as eval/episodic_return; then
        (--track) the videos to W&B (its monitor_gym does not follow gymnasium 1.x) and its run finished (a run
        stopped early is finished by wandb's own exit hook)."""
        if self.args.eval_episodes and self.main:
            torch.set_num_threads(self.args.torch_threads)  # (one observation per step, as in the rollout)
            args = self.args
            returns = evaluate(
                make_env, agent, args.env_id, args.eval_episodes, args.eval_deterministic, args.seed, self.video_folder
            )
            self.writer = SummaryWriter(self.dir)
            for i, episodic_return in enumerate(returns):
                self.log({"eval/episodic_return": episodic_return}, i)
            self.writer.close()
            print(f"evaluation: {np.mean(returns):.2f} +- {np.std(returns):.2f} over {len(returns)} episodes")
        try:
            if self.wandb is not None:
                paths = glob.glob(os.path.join(self.video_folder, "*.mp4")) if self.video_folder else []
                for path in sorted(paths):
                    self.wandb.log({"videos": self.wandb.Video(path)})
                self.wandb.finish()
        except Exception as e:
            self.warn_tracking(e)


def recipe_defaults(script, argv: list[str]):
    """The defaults of the recipe that `--recipe NAME` picks in `argv` (RECIPES); the flags given still win."""
    name = None
    for i, word in enumerate(argv):
        if word == "--recipe" and i + 1 < len(argv) or word.startswith("--recipe="):
            name = word.split("=", 1)[1] if "=" in word else argv[i + 1]
    return script.Args(**script.RECIPES.get(name, {}))


def main(script) -> None:
    """The command line of a script (its module, or its globals(): Args, RANGES, RUN_CONTROL, RECIPES, check_env,
    make_env, make_agent, train): train, resume or evaluate; bad input gets one line and exit code 2."""
    import tyro

    if isinstance(script, dict):  # (a script's globals(): its own names, however it was started)
        script = types.SimpleNamespace(**script)
    args = tyro.cli(script.Args, default=recipe_defaults(script, sys.argv[1:]))
    try:
        if args.eval_checkpoint is not None:  # evaluate a saved policy and exit: no training, no run directory
            check_numbers(script, args)
            path, checkpoint = load_checkpoint(args.eval_checkpoint)
            run_name = os.path.basename(os.path.dirname(os.path.abspath(path)))
            video_folder = os.path.join("videos", run_name) if args.capture_video else None
            torch.set_num_threads(args.torch_threads)
            agent, env_id, episodes = load_agent(script, checkpoint), checkpoint["args"]["env_id"], args.eval_episodes
            returns = evaluate(
                script.make_env, agent, env_id, episodes or 10, args.eval_deterministic, args.seed, video_folder
            )
            kind = "deterministic" if args.eval_deterministic else "sampled"
            mean, std = np.mean(returns), np.std(returns)
            return print(f"{path}: {mean:.2f} +- {std:.2f} over {len(returns)} episodes ({kind} actions)")
        resume_from = None if args.resume is None else load_checkpoint(args.resume)
        if resume_from is not None:
            args = resumed_args(script, args, resume_from[1]["args"], given_flags(script, sys.argv[1:]))
        check_args(script, args)
        if resume_from is not None and resume_from[1]["iteration"] >= args.num_iterations:
            raise UsageError(f"{resume_from[0]} is the end of its run ({args.num_iterations} iterations): nothing left")
        if resume_from is not None and 0 < args.stop_at_step <= resume_from[1]["global_step"]:
            at = resume_from[1]["global_step"]
            raise UsageError(f"{resume_from[0]} is at step {at} already, not before --stop-at-step {args.stop_at_step}")
        script.train(args, resume_from)
    except (UsageError, NonFiniteError, Interrupted) as e:
        if os.environ.get("RANK", "0") == "0":  # (ppo_atari_multigpu.py) every rank stops alike, rank 0 says why
            kind = "" if isinstance(e, Interrupted) else "error: "
            print(f"{script_name()}: {kind}{e}", file=sys.stderr)
        sys.exit(e.code)
