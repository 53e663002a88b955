"""Market throughput against an earlier revision, both measured here, alternately, in one run.

A speed-up stated against a figure measured elsewhere mixes the code with the machine: issue 9
asks for 1,003 → 3,000 rounds/s, but the revision it was filed on runs at about a quarter of its
1,003 on the 2-core machine this project is tested on. This benchmark measures both on one machine
in one sequence. It exports ``REV`` with ``git archive`` into a temporary folder, then times
`benchmarks.market.measure` on the synthetic market (20 advertisers, M = 16, as `admarket bench
market`): ``REV``'s code, then this checkout's, each in a fresh process, ``pairs`` times. The
ratio is of the medians. Noise on a shared machine moves single runs by ±20%, so take at least 5
pairs.

`admarket bench market --against REV [--pairs N] [--rounds N]`
"""

from __future__ import annotations

import os
import statistics
import subprocess
import sys
import tarfile
import tempfile
from dataclasses import dataclass
from pathlib import Path

from rich.console import Console
from rich.table import Table

from market.cli_usage import UsageError

ROOT = Path(__file__).resolve().parent.parent
# What both revisions run: each one's own scenario, engine and `measure`. Prints the code's folder
# (so the caller can check whose code ran) and rounds/s.
MEASURE = """
import sys
import market
from benchmarks.market import market_scenario, measure
from market.engines import create_engine
scenario = market_scenario(
    "synthetic", advertisers=20, candidates=16, max_new_tokens=48, rounds=int(sys.argv[1])
)
engine = create_engine(scenario.engine, catalog=scenario.catalog(), cache=False)
print(market.__file__)
print(measure("synthetic", scenario, engine, warmup=5).rounds_per_second)
"""


@dataclass(frozen=True)
class Comparison:
    """rounds/s of ``revision`` and of this checkout, run k of each at index k."""

    revision: str
    rounds: int
    theirs: tuple[float, ...]
    ours: tuple[float, ...]

    @property
    def ratio(self) -> float:
        """This checkout's median rounds/s over the revision's."""
        return statistics.median(self.ours) / statistics.median(self.theirs)

    @property
    def pair_ratios(self) -> tuple[float, ...]:
        """Each pair's ratio: the two runs closest in time, so least apart in machine load."""
        return tuple(o / t for o, t in zip(self.ours, self.theirs, strict=True))


def export(revision: str, into: Path) -> None:
    """The tree of ``revision`` (a commit, tag or branch of this repository) written into
    ``into``; a revision git does not know, or no git repository here, is a UsageError."""
    try:
        archive = subprocess.run(
            ["git", "-C", str(ROOT), "archive", "--format=tar", revision],
            capture_output=True,
            check=True,
        ).stdout
    except FileNotFoundError:
        raise UsageError("--against needs git on the PATH") from None
    except subprocess.CalledProcessError as error:
        reason = error.stderr.decode(errors="replace").strip().splitlines()
        raise UsageError(
            f"--against {revision}: git cannot export it ({reason[-1] if reason else 'no reason'});"
            " give a commit, tag or branch of this repository"
        ) from None
    with tempfile.TemporaryFile() as tar:
        tar.write(archive)
        tar.seek(0)
        with tarfile.open(fileobj=tar) as tree:
            # git's own archive of this repository; the "data" filter exists from Python 3.11.4
            safe = {"filter": "data"} if hasattr(tarfile, "data_filter") else {}
            tree.extractall(into, **safe)
    if not (into / "benchmarks" / "market.py").is_file():
        raise UsageError(
            f"--against {revision}: that revision has no benchmarks/market.py to measure; give "
            "one from wave 1 (f63419b) on"
        )


def rounds_per_second(code: Path, rounds: int) -> float:
    """One fresh process running ``code``'s `measure` for ``rounds`` timed rounds."""
    env = {**os.environ, "PYTHONPATH": str(code)}
    done = subprocess.run(
        [sys.executable, "-c", MEASURE, str(rounds)],
        cwd=code,
        env=env,
        capture_output=True,
        text=True,
    )
    if done.returncode != 0:
        last = (done.stderr.strip().splitlines() or ["no output"])[-1]
        raise UsageError(f"the benchmark failed in {code}: {last}")
    where, speed = done.stdout.strip().splitlines()[-2:]
    if not Path(where).resolve().is_relative_to(code.resolve()):
        raise UsageError(f"measuring {code} ran the code in {where}: uninstall that copy first")
    return float(speed)


def compare(revision: str, *, pairs: int, rounds: int) -> Comparison:
    """``pairs`` measurements of ``revision`` and of this checkout, alternating."""
    theirs, ours = [], []
    with tempfile.TemporaryDirectory(prefix="admarket-against-") as folder:
        export(revision, Path(folder))
        for _ in range(pairs):
            theirs.append(rounds_per_second(Path(folder), rounds))
            ours.append(rounds_per_second(ROOT, rounds))
    return Comparison(revision, rounds, tuple(theirs), tuple(ours))


def table(comparison: Comparison) -> Table:
    """Each pair's rounds/s, the medians and their ratio."""
    view = Table(
        title=f"rounds/s against {comparison.revision}: synthetic market, 20 advertisers, M=16, "
        f"{comparison.rounds} timed rounds",
        caption=f"this checkout / {comparison.revision}, medians: {comparison.ratio:.2f}x",
    )
    view.add_column("pair", justify="right")
    view.add_column(comparison.revision, justify="right")
    view.add_column("this checkout", justify="right")
    view.add_column("ratio", justify="right")
    rows = zip(comparison.theirs, comparison.ours, comparison.pair_ratios, strict=True)
    for k, (theirs, ours, ratio) in enumerate(rows, 1):
        view.add_row(str(k), f"{theirs:,.0f}", f"{ours:,.0f}", f"{ratio:.2f}x")
    view.add_row(
        "median",
        f"{statistics.median(comparison.theirs):,.0f}",
        f"{statistics.median(comparison.ours):,.0f}",
        f"{statistics.median(comparison.pair_ratios):.2f}x",
    )
    return view


def run(revision: str, *, pairs: int, rounds: int) -> int:
    """`admarket bench market --against`: measure, print the table."""
    if pairs < 1:
        raise UsageError(f"--pairs must be at least 1, got {pairs}")
    if rounds < 1:
        raise UsageError(f"--rounds must be at least 1, got {rounds}")
    console = Console()
    with console.status(f"measuring {revision} and this checkout, {pairs} times each"):
        comparison = compare(revision, pairs=pairs, rounds=rounds)
    console.print(table(comparison))
    return 0
