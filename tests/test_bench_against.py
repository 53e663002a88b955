"""`admarket bench market --against REV`: both revisions measured here, the right code each time,
and bad revisions refused in one line."""

from __future__ import annotations

import subprocess

import pytest

from benchmarks.against import ROOT, compare, table
from market.cli import main


def test_against_a_revision_measures_its_code_and_this_checkout_alternately():
    """HEAD's exported tree and this checkout each run in their own process (each run checks
    that the code it imported is the tree it was given); the ratio is of the medians."""
    comparison = compare("HEAD", pairs=2, rounds=10)
    assert len(comparison.theirs) == len(comparison.ours) == 2
    assert all(speed > 0 for speed in comparison.theirs + comparison.ours)
    theirs, ours = sorted(comparison.theirs), sorted(comparison.ours)
    assert comparison.ratio == pytest.approx((ours[0] + ours[1]) / (theirs[0] + theirs[1]))
    assert comparison.pair_ratios == pytest.approx(
        [o / t for o, t in zip(comparison.ours, comparison.theirs, strict=True)]
    )
    assert table(comparison).row_count == 3  # two pairs and the medians


@pytest.mark.parametrize(
    ("revision", "says"),
    [
        ("no-such-revision", "git cannot export it"),
        ("ROOT_COMMIT", "has no benchmarks/market.py"),
    ],
)
def test_a_revision_that_cannot_be_measured_is_one_line_and_exit_2(revision, says, capsys):
    if revision == "ROOT_COMMIT":  # the first commit: before any benchmark
        revision = subprocess.run(
            ["git", "-C", str(ROOT), "rev-list", "--max-parents=0", "HEAD"],
            capture_output=True,
            text=True,
            check=True,
        ).stdout.split()[0]
    assert main(["bench", "market", "--against", revision, "--pairs", "1"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and says in err[0] and "--against" in err[0]
