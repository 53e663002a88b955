"""Load a run folder (docs/data.md) into one frozen `RunData`.

Reports are built from these files alone, so a run made on another machine and copied here works.
A table is its compacted file (``rounds.parquet``) followed by its parts (``rounds/part-*.parquet``)
— the files ``meta.json`` vouches for, or, in a folder without that list, the files on disk.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pyarrow as pa
import yaml

from market.columns import (  # noqa: F401 - re-exported for the reports and tests
    ADVERTISER_COLUMNS,
    AUCTION_COLUMNS,
    KEYS,
    ROUND_COLUMNS,
    TABLE_COLUMNS,
)
from market.integrity import committed_files
from market.runfolder import table_files_on_disk


class RunDataError(ValueError):
    """A run folder is missing a file or a column the reports need."""


@dataclass(frozen=True)
class RunData:
    """Everything a run wrote: the three tables, the resolved scenario and the run's metadata.

    ``variants`` lists the variant names in the order the run wrote them (scenario order).

    ``advertisers`` carries one derived column, ``contribution`` = expected_reward −
    expected_reward_without (the paper's normalized reward, Sec. 6.2.1; NaN where the
    counterfactual is undefined: when out, and for the token auction).
    """

    run_dir: Path
    rounds: pd.DataFrame
    advertisers: pd.DataFrame
    auctions: pd.DataFrame
    variants: tuple[str, ...] = ()
    scenario: dict[str, Any] = field(default_factory=dict)
    scenario_text: str = ""
    meta: dict[str, Any] = field(default_factory=dict)

    @property
    def seeds(self) -> list[int]:
        return sorted(int(s) for s in pd.unique(self.rounds["seed"]))

    @property
    def n_rounds(self) -> int:
        """Rounds per (variant, seed), the largest over replicates (runs may be cut short)."""
        if self.rounds.empty:
            return 0
        return int(self.rounds.groupby(["variant", "seed"])["round"].max().max()) + 1

    @property
    def mechanisms(self) -> list[str]:
        return list(pd.unique(self.rounds["mechanism"]))

    @property
    def has_counterfactual(self) -> bool:
        """Whether any entrant has a finite expected_reward_without (MOSAIC runs; not token)."""
        return bool(np.isfinite(self.advertisers["contribution"].to_numpy(dtype=float)).any())


def _read_table(run_dir: Path, name: str, *, required: bool, skip: bool = False) -> pd.DataFrame:
    columns = TABLE_COLUMNS[name]
    if skip:
        return pd.DataFrame({c: pd.Series(dtype=object) for c in columns})
    files = committed_files(run_dir, name)
    if files is None:
        files = table_files_on_disk(run_dir, name)
    if files:
        frame = pd.concat([_read_parquet(path) for path in files], ignore_index=True)
    elif required:
        raise RunDataError(
            f"{run_dir} has no {name} table: expected {run_dir / name}.parquet or "
            f"{run_dir / name}/part-*.parquet (is this a run folder written by `admarket run`?)"
        )
    else:
        return pd.DataFrame({c: pd.Series(dtype=object) for c in columns})
    missing = [c for c in columns if c not in frame.columns]
    if missing:
        raise RunDataError(
            f"{name} table in {run_dir} lacks column(s) {missing}; docs/data.md lists the schema "
            "the reports read (re-run with a current admarket, or add the columns)"
        )
    # Variants keep the order the run wrote them in (scenario order), not alphabetical order.
    order = list(pd.unique(frame["variant"].astype(str)))
    frame["variant"] = pd.Categorical(frame["variant"].astype(str), categories=order)
    frame = frame.sort_values(list(KEYS), kind="stable").reset_index(drop=True)
    frame["seed"] = frame["seed"].astype("int64")
    frame["round"] = frame["round"].astype("int64")
    frame["variant"] = frame["variant"].astype(str)
    return frame


def _read_parquet(path: Path) -> pd.DataFrame:
    try:
        return pd.read_parquet(path)
    except FileNotFoundError as err:
        raise RunDataError(
            f"{path}: missing, but meta.json lists it; the folder is damaged"
        ) from err
    except (pa.ArrowException, OSError) as err:
        raise RunDataError(
            f"{path}: not a readable parquet file ({' '.join(str(err).split())[:120]}); the folder "
            "is damaged (resume it with --repair to compute the damaged rounds again)"
        ) from err


def load_run(run_dir: str | Path, *, auctions: bool = True) -> RunData:
    """Read a run folder into `RunData` (the tables of docs/data.md, scenario and meta).

    ``auctions=False`` leaves the largest table (one row per candidate) unread and empty, for
    readers that need only rounds and advertisers (the terminal summary).
    """
    run_dir = Path(run_dir)
    if not run_dir.is_dir():
        raise FileNotFoundError(f"run_dir {run_dir} is not a folder; pass the --out DIR of a run")
    rounds = _read_table(run_dir, "rounds", required=True)
    advertisers = _read_table(run_dir, "advertisers", required=True)
    auctions = _read_table(run_dir, "auctions", required=False, skip=not auctions)
    if rounds.empty:
        raise RunDataError(f"{run_dir}/rounds holds no rounds yet; wait for the first flush")
    for column in ("entered", "relevant", "mentioned"):
        advertisers[column] = advertisers[column].astype(bool)
    advertisers["contribution"] = advertisers["expected_reward"].astype(float) - advertisers[
        "expected_reward_without"
    ].astype(float)
    advertisers.loc[~advertisers["entered"], "contribution"] = np.nan

    scenario_path = run_dir / "scenario.yaml"
    meta_path = run_dir / "meta.json"
    try:
        scenario_text = scenario_path.read_text(encoding="utf-8") if scenario_path.is_file() else ""
        scenario = yaml.safe_load(scenario_text) if scenario_text else {}
        meta = json.loads(meta_path.read_text(encoding="utf-8")) if meta_path.is_file() else {}
    except (UnicodeDecodeError, ValueError, yaml.YAMLError) as err:
        raise RunDataError(
            f"{run_dir}: scenario.yaml or meta.json is not readable text ({err}); the folder is "
            "damaged"
        ) from err
    return RunData(
        run_dir=run_dir,
        rounds=rounds,
        advertisers=advertisers,
        auctions=auctions,
        variants=tuple(pd.unique(rounds["variant"])),
        scenario=scenario if isinstance(scenario, dict) else {},
        scenario_text=scenario_text,
        meta=meta if isinstance(meta, dict) else {},
    )
