"""What every `admarket` command shares: exit codes, the usage error, and how ``--set``,
``--seed`` and ``--rounds`` become scenario overrides."""

from __future__ import annotations

import argparse

EXIT_FAILED = 1
EXIT_USAGE = 2
EXIT_INTERRUPTED = 130
EXIT_TERMINATED = 143


class UsageError(Exception):
    """Bad command-line arguments."""


def overrides_of(args: argparse.Namespace) -> list[str]:
    """``--set`` overrides, then ``--seed`` and ``--rounds`` as overrides of the scenario."""
    overrides = list(args.overrides)
    if args.seed is not None:
        overrides.append(f"seed={args.seed}")
    if args.rounds is not None:
        overrides.append(f"rounds={args.rounds}")
    return overrides
