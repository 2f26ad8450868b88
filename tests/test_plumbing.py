"""The run plumbing (errors, checks, checkpoints, resume, evaluation, the run, main) is one text, the same in
the three scripts after their banner, so that `diff ppo.py ppo_atari.py` shows only what Atari changes."""

import os

from conftest import ROOT

SCRIPTS = ["ppo.py", "ppo_continuous_action.py", "ppo_atari.py"]
BANNER = "# Run plumbing, the same in the three scripts"


def plumbing(script: str) -> str:
    text = open(os.path.join(ROOT, script)).read()
    assert text.count(BANNER) == 1, script
    return text[text.index(BANNER) :]


def test_the_run_plumbing_is_written_identically_in_the_three_scripts():
    first = plumbing(SCRIPTS[0])
    for script in SCRIPTS[1:]:
        assert plumbing(script) == first, f"{script}'s plumbing differs from {SCRIPTS[0]}'s"
