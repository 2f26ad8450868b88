"""ppo_atari_multigpu.py under torchrun, 2 processes on the CPU (gloo): the averaged gradient is the gradient of the two
ranks' minibatches together, the weights stay equal on both ranks, each rank's envs are seeded apart, rank 0 alone
writes one run directory with every tag (every rank's episodes in it), a signal that one rank gets stops both
after rank 0's checkpoint, the run resumes under torchrun, a rank that dies ends the job with one line, and a world
size that the envs do not split over is refused. Real torchrun processes (python -m torch.distributed.run)."""

import glob
import os
import signal
import subprocess
import sys
import time

import pytest
import torch
import torchrun_worker
from conftest import ROOT, TAGS, read_scalars

TORCHRUN = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", "2"]
# the quickest settings (as tests/test_checkpoints.py's), 1 env per rank
TINY = ["--no-progress", "--gym-vector", "sync", "--num-envs", "2", "--num-steps", "32", "--update-threads", "1"]


pytestmark = pytest.mark.usefixtures("one_torch_thread")  # (conftest) torch on one thread, as the script runs


@pytest.fixture(scope="module")
def ranks(tmp_path_factory) -> list[dict]:
    """What each of 2 ranks saw (one update on its share of a fixed batch, a short training run), and their folder."""
    out = tmp_path_factory.mktemp("torchrun")
    command = [*TORCHRUN, os.path.join(ROOT, "tests", "torchrun_worker.py"), str(out)]
    result = subprocess.run(command, cwd=out, capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr[-3000:]
    return [torch.load(out / f"rank{rank}.pt", weights_only=False) for rank in range(2)] + [out]


def test_the_averaged_gradient_of_two_ranks_is_the_gradient_of_their_minibatches_together(ranks):
    # one process, the whole batch (4 envs) in one minibatch: the reference
    whole = torchrun_worker.one_update(torchrun_worker.update_args(4), slice(0, 4))
    for rank in ranks[:2]:
        for name, grad in whole["grads"].items():
            torch.testing.assert_close(rank["update"]["grads"][name], grad, rtol=1e-4, atol=1e-7, msg=name)
        for name, weight in whole["weights"].items():
            torch.testing.assert_close(rank["update"]["weights"][name], weight, rtol=1e-4, atol=1e-7, msg=name)
        # the KL estimate over the whole minibatch (target-KL early stopping decides alike on every rank)
        assert rank["update"]["metrics"]["losses/approx_kl"] == pytest.approx(
            whole["metrics"]["losses/approx_kl"], rel=1e-4
        )


def test_under_the_kl_penalty_every_rank_adapts_beta_from_the_epoch_kl_of_all_ranks(ranks):
    whole = torchrun_worker.one_update(torchrun_worker.update_args(4, "kl-penalty"), slice(0, 4))
    for rank in ranks[:2]:
        update = rank["kl_penalty_update"]
        assert update["metrics"]["losses/epoch_kl"] == pytest.approx(whole["metrics"]["losses/epoch_kl"], rel=1e-4)
        weights, reference = update["weights"]["actor.weight"], whole["weights"]["actor.weight"]
        torch.testing.assert_close(weights, reference, rtol=1e-4, atol=1e-7)


def test_a_non_finite_loss_on_one_rank_stops_every_rank(ranks):
    assert ranks[0]["non_finite_stops"] and ranks[1]["non_finite_stops"]


def test_the_weights_are_identical_on_both_ranks_after_several_updates(ranks):
    first, second = (rank["train"]["agent"] for rank in ranks[:2])
    assert first.keys() == second.keys()
    for name in first:
        assert torch.equal(first[name], second[name]), name
    fresh = torchrun_worker.one_update(torchrun_worker.update_args(4), slice(0, 4))["weights"]  # (they did move)
    assert not torch.equal(first["critic.weight"], fresh["critic.weight"])


def test_each_rank_steps_its_own_envs_seeded_apart(ranks):
    # rank r's env i is seeded as env r * share + i of one process; torch's streams (the actions) apart too
    (seed0, n0), (seed1, n1) = (rank["train"]["reset_seeds"][0] for rank in ranks[:2])
    assert (n0, n1) == (1, 1) and seed1 == seed0 + 1
    assert ranks[0]["train"]["torch_seed"] != ranks[1]["train"]["torch_seed"]


def test_rank_0_alone_writes_one_run_directory_with_every_tag_and_all_ranks_episodes(ranks):
    out = ranks[2]
    (run_dir,) = glob.glob(str(out / "runs" / "*"))
    assert os.path.basename(run_dir) == os.path.basename(ranks[0]["train"]["run_dir"])
    assert ranks[1]["train"]["run_dir"] is None
    assert ranks[0]["train"]["saves"] == 1 and ranks[1]["train"]["saves"] == 0  # (the checkpoint, at the end)
    scalars = read_scalars(run_dir)
    assert set(TAGS) <= set(scalars)
    # 4 iterations of 2 ranks x 1 env x 32 steps: the steps of all ranks counted (charts/SPS too)
    assert [step for step, _ in scalars["charts/SPS"]] == [64, 128, 192, 256]
    returns = sorted(value for _, value in scalars["charts/episodic_return"])
    episodes = [episode for rank in ranks[:2] for episode in rank["train"]["episodes"]]
    assert all(rank["train"]["episodes"] for rank in ranks[:2])  # (each rank ended games)
    assert returns == pytest.approx(sorted(episodic_return for _, _, episodic_return, _ in episodes))
    assert not os.path.exists(out / "videos")


def rank_pid(torchrun: subprocess.Popen, rank: int) -> int:
    """The process id of a rank that torchrun started (its child with RANK=rank in its environment)."""
    for _ in range(100):
        children = open(f"/proc/{torchrun.pid}/task/{torchrun.pid}/children").read().split()
        for pid in children:
            with open(f"/proc/{pid}/environ", "rb") as f:
                if f"RANK={rank}".encode() in f.read().split(b"\0"):
                    return int(pid)
        time.sleep(0.1)
    raise AssertionError(f"no rank {rank} among torchrun's children")


def start(command: list[str], cwd, after: float = 0.0) -> subprocess.Popen:
    """Start torchrun and return once it is training: a checkpoint written later than `after`."""
    process = subprocess.Popen(command, cwd=cwd, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    deadline = time.time() + 180
    while time.time() < deadline:
        if any(os.path.getmtime(f) > after for f in glob.glob(os.path.join(cwd, "runs", "*", "*.cleanrl_model"))):
            return process
        if process.poll() is not None:
            raise AssertionError(f"torchrun ended before a checkpoint: {process.stderr.read()[-3000:]}")
        time.sleep(0.2)
    process.kill()
    raise AssertionError("no checkpoint within 180 s")


def ranks_stderr(stderr: str) -> str:
    """The ranks' part of torchrun's stderr: what comes before torchrun's own report of a failed rank."""
    cut = stderr.find('Traceback (most recent call last):\n  File "<frozen runpy>"')
    return stderr if cut == -1 else stderr[:cut]


def stop(process: subprocess.Popen) -> str:
    try:
        return process.communicate(timeout=120)[1]
    finally:  # (a test that failed leaves nothing running)
        if process.poll() is None:
            process.kill()


def test_a_signal_to_one_rank_stops_both_after_the_checkpoint_and_the_run_resumes_under_torchrun(tmp_path):
    # a scheduler's SIGINT to rank 1 alone: both ranks stop after the same iteration, rank 0's checkpoint saved
    command = [*TORCHRUN, os.path.join(ROOT, "ppo_atari_multigpu.py"), *TINY, "--total-timesteps", "6400000",
               "--checkpoint-every", "1"]  # fmt: skip
    process = start(command, tmp_path)
    os.kill(rank_pid(process, 1), signal.SIGINT)
    stderr = stop(process)
    (run_dir,) = glob.glob(str(tmp_path / "runs" / "*"))
    path = os.path.join(run_dir, "ppo_atari_multigpu.cleanrl_model")
    checkpoint = torch.load(path, weights_only=True)
    stopped = [line for line in stderr.splitlines() if "stopped at step" in line]
    assert len(stopped) == 1 and f"stopped at step {checkpoint['global_step']};" in stopped[0], stderr[-3000:]
    assert "Traceback" not in ranks_stderr(stderr)
    assert checkpoint["args"]["num_envs"] == 2 and checkpoint["global_step"] == 64 * checkpoint["iteration"]

    # resumed under torchrun: the same run directory, on from the checkpoint's step
    mtime = os.path.getmtime(path)
    resumed = start([*TORCHRUN, os.path.join(ROOT, "ppo_atari_multigpu.py"), "--no-progress", "--update-threads", "1",
                     "--checkpoint-every", "1", "--resume", run_dir], tmp_path, after=mtime)  # fmt: skip
    os.kill(rank_pid(resumed, 1), signal.SIGTERM)
    stderr = stop(resumed)
    assert glob.glob(str(tmp_path / "runs" / "*")) == [run_dir]
    again = torch.load(path, weights_only=True)
    assert again["iteration"] > checkpoint["iteration"] and again["global_step"] == 64 * again["iteration"]
    assert f"stopped at step {again['global_step']};" in stderr, stderr[-3000:]
    steps = [step for step, _ in read_scalars(run_dir)["charts/SPS"]]
    assert steps == list(range(64, again["global_step"] + 1, 64))  # (logged once per iteration, none lost)


def test_a_rank_that_dies_ends_the_job_with_one_line(tmp_path):
    command = [*TORCHRUN, os.path.join(ROOT, "ppo_atari_multigpu.py"), *TINY, "--total-timesteps", "6400000",
               "--checkpoint-every", "1"]  # fmt: skip
    process = start(command, tmp_path)
    os.kill(rank_pid(process, 1), signal.SIGKILL)
    start_time = time.time()
    stderr = stop(process)
    assert process.returncode != 0 and time.time() - start_time < 60
    ours = ranks_stderr(stderr)
    assert "Traceback" not in ours, ours[-3000:]
    # rank 0's one line (and its note of torchrun's SIGTERM, where that came first)
    lines = [line for line in ours.splitlines() if line.startswith("ppo_atari_multigpu.py")]
    lost = "ppo_atari_multigpu.py: error: rank 0 lost the other ranks: "
    assert sum(lost in line for line in lines) == 1, ours[-3000:]
    assert all("lost the other ranks" in line or "SIGTERM: stopping after this iteration" in line for line in lines)


@pytest.mark.parametrize(
    "flags, message",
    [
        (["--num-envs", "3"], "--num-envs 3 and the minibatch of 96 steps must split evenly over the 2 ranks"),
        (["--num-envs", "2", "--num-steps", "3", "--num-minibatches", "2"], "the minibatch of 3 steps must split"),
    ],
)
def test_envs_or_minibatches_that_do_not_split_over_the_ranks_are_one_line_exit_2(tmp_path, flags, message):
    env = {**os.environ, "WORLD_SIZE": "2", "RANK": "0"}  # (as torchrun sets them; refused before any rank meets)
    command = [sys.executable, os.path.join(ROOT, "ppo_atari_multigpu.py"), *flags, "--total-timesteps", "1000"]
    result = subprocess.run(command, cwd=tmp_path, env=env, capture_output=True, text=True, timeout=120)
    assert result.returncode == 2
    assert result.stderr.strip().splitlines() == [result.stderr.strip()] and message in result.stderr
    assert not os.path.exists(tmp_path / "runs")
