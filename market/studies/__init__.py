"""The studies the runner runs (`market.runner`), by the kind recorded in a run folder.

- ``market``: every variant of a scenario for ``rounds`` rounds, one replicate per root seed
  (`admarket run`, `admarket sweep`);
- ``replication``: the MOSAIC paper's one-shot study (`admarket replicate`).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from market.columns import TableSpec
from market.studies.base import Replicate, Study
from market.studies.market import MarketStudy
from market.studies.replication import ReplicationStudy

STUDIES: dict[str, Any] = {"market": MarketStudy, "replication": ReplicationStudy}
STUDY_TABLES: dict[str, Mapping[str, TableSpec]] = {
    kind: study.tables for kind, study in STUDIES.items()
}


def build_study(kind: str, scenario: Any, options: Mapping[str, Any] | None = None) -> Study:
    """The study of ``kind`` for a resolved scenario (ValueError for bad options)."""
    if kind not in STUDIES:
        raise ValueError(f"unknown study kind {kind!r}; known: {', '.join(STUDIES)}")
    return STUDIES[kind].from_scenario(scenario, options)


__all__ = ["STUDIES", "STUDY_TABLES", "MarketStudy", "Replicate", "ReplicationStudy", "Study"]
__all__ += ["build_study"]
