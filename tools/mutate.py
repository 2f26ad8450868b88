"""Mutation testing of the test suite: plant one known bug (a mutant of tools/mutants.py) at a time in a
copy of the repository, run the tests of the mutated script on that copy, and report which mutants the
suite kills and which test killed each.

    python tools/mutate.py                                # the whole catalog (long)
    python tools/mutate.py --only ppo/adam ppo/pg-min     # the mutants whose names contain these
    python tools/mutate.py --list                         # the catalog
    python tools/mutate.py --jobs 2 --timeout 1800 --out mutants.md
    python tools/mutate.py --out mutants.md --resume      # go on with a stopped run (the page is rewritten
                                                          # after each mutant; its killed rows are kept)

Exit code: 0 if every mutant not marked equivalent was killed, 1 if one survived or errored, 2 if the
catalog is stale (a snippet no longer occurs exactly once) or the unmutated suite already fails.
"""

import argparse
import contextlib
import glob
import os
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
from concurrent.futures import ThreadPoolExecutor, as_completed

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, os.path.join(ROOT, "tools"))
from mutants import MUTANTS, Mutant  # noqa: E402


def k_expr(stem: str) -> str:
    """A pytest -k expression for the tests of one script: its own modules, and the tests of the shared
    files parametrized by it. -k matches substrings of names, and a script's name is part of the others'
    (ppo in ppo_atari) and of parameter ids that are messages ("use ppo_atari.py"), so the script
    parameter is matched with the brackets and dashes that pytest joins ids with: [ppo], [ppo-...],
    [...-ppo], [...-ppo-...]."""
    own = " or ".join(os.path.basename(module) for module in own_modules(f"{stem}.py"))
    return f"{own} or [{stem}] or [{stem}- or -{stem}] or -{stem}-"


# Which tests run for a mutant of each script: its own modules and the shared files (those of the other
# scripts' modules and the benchmark tools' tests left out), cheapest first (-x stops at the first
# failure): FIRST, its own modules, the modules it borrows, any other shared file (a test file added later
# included), LAST.
SCRIPTS = [
    "ppo.py",
    "ppo_continuous_action.py",
    "ppo_atari.py",
    "ppo_atari_ale_vector.py",
    "ppo_atari_multigpu.py",
    "ppo_run.py",
]
FIRST = ["tests/test_updates.py", "tests/test_args.py"]
LAST = ["tests/test_resume.py", "tests/test_checkpoints.py"]
OWN = {"ppo_atari_multigpu.py": ["tests/test_distributed.py"]}  # a script's modules besides tests/test_<script>.py
# another script's module whose tests are parametrized over this script too (a copy of it): run filtered, as the
# shared files are, by the script's parameter id
BORROWED = {
    "ppo_atari_ale_vector.py": ["tests/test_ppo_atari.py"],
    "ppo_atari_multigpu.py": ["tests/test_ppo_atari.py"],
}
RUN_MODULE = "ppo_run.py"  # the run module of every script: all their tests run for its mutants, unfiltered
NOT_MUTATION = {"tests/test_benchmark_tools.py", "tests/test_campaign.py"}  # (the tools, not the scripts)


def own_modules(script: str) -> list[str]:
    return [f"tests/test_{script[:-3]}.py", *OWN.get(script, [])]


NOT_SHARED = {module for s in SCRIPTS for module in own_modules(s)} | NOT_MUTATION


def test_files(tree: str, script: str) -> list[str]:
    """The test files of `script` that exist in `tree`, in the order they run."""
    found = {os.path.relpath(f, tree) for f in glob.glob(os.path.join(tree, "tests", "test_*.py"))}
    rest = sorted(found - NOT_SHARED - set(FIRST) - set(LAST))
    if script == RUN_MODULE:  # (every script's own modules too, after the resume and checkpoint tests: its own)
        rest = sorted(found - NOT_MUTATION - set(FIRST) - set(own_modules(script)) - set(LAST))
        return [f for f in [*FIRST, *own_modules(script), *LAST, *rest] if f in found]
    return [f for f in [*FIRST, *own_modules(script), *BORROWED.get(script, []), *rest, *LAST] if f in found]


RUNNING: set[subprocess.Popen] = set()  # the pytest processes in flight, stopped if the run is stopped
LOCK = threading.Lock()
STOP = threading.Event()  # set when the run is stopped: no new pytest process starts after it


def stale(tree: str) -> str | None:
    """A line naming the first mutant that cannot be applied to the scripts in `tree`, or None."""
    names = [m.name for m in MUTANTS]
    for m in MUTANTS:
        if names.count(m.name) > 1:
            return f"mutant name {m.name} is not unique"
        if m.script not in SCRIPTS:
            return f"mutant {m.name}: no tests are mapped to {m.script}"
        with open(os.path.join(tree, m.script)) as f:
            count = f.read().count(m.old)
        if count != 1:
            return f"stale mutant {m.name}: its snippet occurs {count} times in {m.script}, not once"
    return None


def snapshot(dest: str) -> None:
    """Copy the working tree (tracked and untracked files that git does not ignore) to `dest`: taken once,
    so that edits made while the mutants run do not mix into the run."""
    listed = subprocess.run(["git", "ls-files", "-z", "--cached", "--others", "--exclude-standard"], cwd=ROOT,
                            capture_output=True, text=True, check=True).stdout.split("\0")  # fmt: skip
    for path in filter(None, listed):
        if os.path.isfile(os.path.join(ROOT, path)):  # (a tracked file deleted in the working tree is not)
            os.makedirs(os.path.join(dest, os.path.dirname(path)), exist_ok=True)
            shutil.copy2(os.path.join(ROOT, path), os.path.join(dest, path))


def first_test(output: str) -> str | None:
    """The first test of pytest's short summary (FAILED or ERROR); its id may hold spaces and brackets."""
    match = re.search(r"^(?:FAILED|ERROR) (.+)$", output, re.MULTILINE)
    if not match:
        return None
    line = match.group(1)
    start, dash = line.find("["), line.find(" - ")
    if start == -1 or -1 < dash < start:
        return line.split(" - ")[0]
    depth = 0
    for i in range(start, len(line)):  # up to the bracket that closes the parameter id
        depth += {"[": 1, "]": -1}.get(line[i], 0)
        if depth == 0:
            return line[: i + 1]
    return line


def kill_group(process: subprocess.Popen) -> None:
    with contextlib.suppress(ProcessLookupError):  # (the group is gone already)
        os.killpg(process.pid, signal.SIGKILL)


def run_tests(tree: str, script: str, timeout: float, env: dict) -> tuple[str, str, float]:
    """Run the tests of `script` in `tree`: (killed | survived | timeout | error, first failing test or the
    end of pytest's output, seconds)."""
    command = [sys.executable, "-m", "pytest", "-x", "-q", "-p", "no:cacheprovider", "-rfE", f"--rootdir={tree}",
               f"--basetemp={tree}.tmp", *test_files(tree, script)]  # fmt: skip
    if script != RUN_MODULE:
        command += ["-k", k_expr(script[:-3])]
    start = time.time()
    # a session of its own: on a timeout the whole group goes (the scripts and env workers that tests start)
    with LOCK:
        if STOP.is_set():
            return "error", "not run: stopped", 0.0
        process = subprocess.Popen(command, cwd=tree, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                                   text=True, start_new_session=True)  # fmt: skip
        RUNNING.add(process)
    try:
        output, _ = process.communicate(timeout=timeout)
    except subprocess.TimeoutExpired:
        kill_group(process)
        process.communicate()
        return "timeout", f"past {timeout:.0f} s", time.time() - start
    finally:
        kill_group(process)  # (whatever a failed test left running)
        with LOCK:
            RUNNING.discard(process)
    seconds = time.time() - start
    if process.returncode == 0:
        return "survived", "", seconds
    lines = [line for line in output.splitlines() if line.strip()]
    test = first_test(output) or (lines[-1] if lines else "")
    collection = "ERROR collecting" in output  # (a module that cannot be imported; with -x, exit code 1)
    if process.returncode == 1 and not collection:
        return "killed", test, seconds
    # a collection error, 2: interrupted, 3: internal error, 4: usage error, 5: no tests: usually a broken mutant
    return "error", f"pytest exit {process.returncode}{' (collection)' if collection else ''}: {test}", seconds


def run_copy(script: str, m: Mutant | None, pristine: str, tree: str, timeout: float, env: dict):
    """Run the tests of `script` in a fresh copy of the tree at `tree`, with the mutant `m` applied (None:
    unmutated)."""
    shutil.copytree(pristine, tree, ignore=shutil.ignore_patterns("__pycache__"))
    if m is not None:
        path = os.path.join(tree, m.script)
        with open(path) as f:
            text = f.read()
        with open(path, "w") as f:
            f.write(text.replace(m.old, m.new, 1))
    try:
        return run_tests(tree, script, timeout, env)
    finally:
        shutil.rmtree(tree, ignore_errors=True)
        shutil.rmtree(tree + ".tmp", ignore_errors=True)


def label(m: Mutant, result: str) -> str:
    if m.equivalent:
        return "equivalent" if result == "survived" else f"{result} (marked equivalent)"
    return result


def cell(text: str) -> str:
    return text.replace("|", "\\|").replace("\n", " ")


def tree_commit() -> str:
    """The commit the run's snapshot was taken at, + where the working tree differed from it."""
    head = subprocess.run(["git", "rev-parse", "--short", "HEAD"], cwd=ROOT, capture_output=True, text=True)
    dirty = subprocess.run(["git", "status", "--porcelain", "--untracked-files=no"], cwd=ROOT, capture_output=True,
                           text=True).stdout.strip()  # fmt: skip
    return head.stdout.strip() + ("+" if dirty else "")


def read_page(path: str) -> dict[str, tuple[str, str, float, str]]:
    """The final results (killed, by timeout, or equivalent as marked) of a page that this tool wrote:
    {mutant: (result, test, seconds, tree)}; the others are to run again."""
    kept = {}
    if not os.path.exists(path):
        return kept
    with open(path) as f:
        for line in f:
            cells = [c.strip().replace("\\|", "|") for c in re.split(r"(?<!\\)\|", line.strip())[1:-1]]
            if len(cells) != 5 or not cells[0].startswith("`"):
                continue
            result = {"killed": "killed", "timeout": "timeout", "equivalent": "survived"}.get(cells[2])
            if result:
                kept[cells[0].strip("`")] = result, cells[3], 0.0, cells[4]
    return kept


def write_page(path: str, selected: list[Mutant], results: dict, command: str) -> str:
    """The Markdown page of the results so far; returns its summary line."""
    rows = ["| mutant | detail | result | killed by, or why not | tree |", "|---|---|---|---|---|"]
    for m in selected:
        if m.name in results:
            result, test, _, tree = results[m.name]
            rows.append(f"| `{m.name}` | {cell(m.detail)} | {label(m, result)} | {cell(test or m.equivalent or '')} "
                        f"| {tree} |")  # fmt: skip
        else:
            rows.append(f"| `{m.name}` | {cell(m.detail)} | not run yet | | |")
    done = [m for m in selected if m.name in results]
    plain = [m for m in done if not m.equivalent]
    killed = sum(results[m.name][0] in ("killed", "timeout") for m in plain)
    timeouts = sum(results[m.name][0] == "timeout" for m in plain)
    survived = [m.name for m in plain if results[m.name][0] == "survived"]
    errors = [m.name for m in done if results[m.name][0] == "error"]
    equivalent = [m for m in done if m.equivalent]
    summary = (f"{len(done)} of {len(selected)} mutants run: {killed} of {len(plain)} killed ({timeouts} by timeout), "
               f"{len(survived)} survived, {len(equivalent)} marked equivalent "
               f"({sum(results[m.name][0] == 'survived' for m in equivalent)} survived, as expected), "
               f"{len(errors)} errors")  # fmt: skip
    if path:
        header = (f"# Mutation run of the test suite\n\nWritten by `{command}`; the tree column is the commit each "
                  "mutant ran on (+: with changes not yet committed).\n\n")  # fmt: skip
        with open(path + ".part", "w") as f:
            f.write(header + "\n".join(rows) + f"\n\n{summary}\n")
        os.replace(path + ".part", path)
    return summary


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--only", nargs="+", action="extend", metavar="SUBSTRING",
                        help="run only the mutants whose names contain one of these")  # fmt: skip
    parser.add_argument("--jobs", type=int, default=2, help="mutants run in parallel (default 2)")
    parser.add_argument("--timeout", type=float, default=1800, help="seconds per mutant's tests (default 1800)")
    parser.add_argument("--list", action="store_true", help="print the catalog and exit")
    parser.add_argument("--out", help="write the Markdown table of the results here")
    parser.add_argument("--resume", action="store_true",
                        help="keep the killed and equivalent rows of --out, and run the other mutants")  # fmt: skip
    parser.add_argument("--no-baseline", action="store_true",
                        help="skip running each script's tests on the unmutated tree first")  # fmt: skip
    args = parser.parse_args()

    problem = stale(ROOT)
    if problem:
        print(f"mutate.py: {problem}", file=sys.stderr)
        sys.exit(2)
    selected = [m for m in MUTANTS if not args.only or any(s in m.name for s in args.only)]
    if args.list:
        for m in selected:
            print(f"{m.name:<40} {m.detail}" + (f"  [equivalent: {m.equivalent}]" if m.equivalent else ""))
        counts = {s: sum(m.script == s for m in selected) for s in SCRIPTS}
        print(f"{len(selected)} mutants: " + ", ".join(f"{s} {n}" for s, n in counts.items()))
        return
    if not selected:
        print(f"mutate.py: no mutant name contains {' or '.join(args.only)}", file=sys.stderr)
        sys.exit(2)

    if args.resume and not args.out:
        print("mutate.py: --resume goes on with the page of --out; give --out", file=sys.stderr)
        sys.exit(2)
    results = read_page(args.out) if args.resume else {}
    to_run = [m for m in selected if m.name not in results]
    page = selected
    if args.resume:  # (the page goes on listing the whole catalog, --only or not)
        page = MUTANTS
    command = "python tools/mutate.py " + " ".join(sys.argv[1:])
    tree = tree_commit()

    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))  # (so that a kill, too, stops the tests it started)
    env = dict(os.environ)
    if args.jobs > 1:  # (2 cores) one BLAS/OpenMP thread per test process, so parallel jobs do not oversubscribe
        env.update(OPENBLAS_NUM_THREADS="1", OMP_NUM_THREADS="1")
    work = tempfile.mkdtemp(prefix="mutate-")
    pristine = os.path.join(work, "tree")
    pool = ThreadPoolExecutor(args.jobs)
    try:
        snapshot(pristine)
        problem = stale(pristine)  # (the tree may have changed since the check above)
        if problem:
            print(f"mutate.py: {problem}", file=sys.stderr)
            sys.exit(2)
        if not args.no_baseline:
            # a test that fails without a mutant would "kill" every mutant: the suite must pass first
            scripts = sorted({m.script for m in to_run})
            futures = {pool.submit(run_copy, s, None, pristine, os.path.join(work, f"base{i}"), args.timeout, env): s
                       for i, s in enumerate(scripts)}  # fmt: skip
            for future in as_completed(futures):
                result, test, seconds = future.result()
                print(f"{'(unmutated) ' + futures[future]:<40} {'passes' if result == 'survived' else result:<10} "
                      f"{seconds:5.0f} s  {test}", flush=True)  # fmt: skip
                if result != "survived":
                    print(f"mutate.py: the tests of {futures[future]} fail unmutated", file=sys.stderr)
                    sys.exit(2)
        # the copies get neutral names (m000, ...): directory names are -k keywords too
        futures = {pool.submit(run_copy, m.script, m, pristine, os.path.join(work, f"m{i:03d}"), args.timeout, env): m
                   for i, m in enumerate(to_run)}  # fmt: skip
        for future in as_completed(futures):
            m = futures[future]
            result, test, seconds = future.result()
            if result == "error" and test == "not run: stopped":
                continue
            results[m.name] = result, test, seconds, tree
            print(f"{m.name:<40} {label(m, result):<10} {seconds:5.0f} s  {test or m.equivalent or ''}", flush=True)
            write_page(args.out, page, results, command)  # (so that a stopped run loses no result)
    finally:  # (also on Ctrl-C or an early exit: stop whatever still runs)
        pool.shutdown(wait=False, cancel_futures=True)
        with LOCK:
            STOP.set()
            for process in RUNNING:
                kill_group(process)
        pool.shutdown(wait=True)
        shutil.rmtree(work, ignore_errors=True)

    summary = write_page(args.out, page, results, command)
    plain = [m for m in selected if not m.equivalent]
    survived = [m for m in plain if results[m.name][0] == "survived"]
    errors = [m for m in selected if results[m.name][0] == "error"]
    print(summary)
    sys.exit(1 if survived or errors else 0)


if __name__ == "__main__":
    main()
