"""An advertiser's history that remembers only its latest rounds, so memory stays flat.

Every entry policy reads its history incrementally (the records it has not seen yet: the newest
one, each round) or through a trailing window (`imitation`: the last ``window`` rounds of itself
and its neighbours). Everything older lives in the run folder's ``advertisers`` table, not in
memory. `RecentRecords` behaves like the full list for every such read: its length is the number
of rounds recorded, and indices and slices are absolute round numbers; asking for a dropped
round raises IndexError naming the window.

The market appends each round's record as a row (`append_row`: the record's field values, in
`RoundRecord`'s order) and the `RoundRecord` is built when the history is first read there: a
policy that reads nothing of its history (``always``, ``never``) costs no record a round.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Sequence
from typing import overload

from agents.records import RoundRecord

MIN_KEPT = 32


class RecentRecords(Sequence[RoundRecord]):
    """The last ``kept`` (at least) records of an append-only history.

    Memory: at most 2·``kept`` records; dropping the older half when full costs O(1) per append
    amortized.
    """

    def __init__(self, kept: int, records: Iterable[RoundRecord] = ()) -> None:
        if kept < 1:
            raise ValueError(f"kept must be >= 1, got {kept}")
        self.kept = int(kept)
        self._records: list[RoundRecord | tuple] = list(records)  # a tuple: a row not yet read
        self._dropped = 0
        self._trim()

    def __len__(self) -> int:
        return self._dropped + len(self._records)

    def append(self, record: RoundRecord | tuple) -> None:
        """Append the next round's record; the market gives it as a row, see `append_row`."""
        records = self._records
        records.append(record)
        if len(records) >= 2 * self.kept:
            self._trim()

    def append_row(self, row: tuple) -> None:
        """Append the next round's record given as its field values (`RoundRecord`'s order,
        ``round`` first); the record is built when it is first read."""
        if row[0] != len(self):
            raise ValueError(f"the next record is round {len(self)}, got round {row[0]}")
        self.append(row)

    def _record(self, position: int) -> RoundRecord:
        """The record at a position of the kept list, built from its row when first read."""
        record = self._records[position]
        if type(record) is tuple:
            record = self._records[position] = RoundRecord(*record)
        return record

    def _trim(self) -> None:
        extra = len(self._records) - self.kept
        if extra > 0:
            del self._records[:extra]
            self._dropped += extra

    def _gone(self, index: int) -> IndexError:
        return IndexError(
            f"round {index} of this history is no longer in memory: an advertiser's history "
            f"keeps its last {self.kept} rounds (read older rounds from the advertisers table)"
        )

    @overload
    def __getitem__(self, index: int) -> RoundRecord: ...

    @overload
    def __getitem__(self, index: slice) -> list[RoundRecord]: ...

    def __getitem__(self, index):
        total = self._dropped + len(self._records)
        if isinstance(index, slice):
            start, stop, step = index.indices(total)
            if step == 1:  # the common read: the records since a round, or a trailing window
                if start >= stop:
                    return []
                if start < self._dropped:
                    raise self._gone(start)
                return [self._record(i) for i in range(start - self._dropped, stop - self._dropped)]
            wanted = range(start, stop, step)
            if wanted and min(wanted[0], wanted[-1]) < self._dropped:
                raise self._gone(min(wanted[0], wanted[-1]))
            return [self._record(i - self._dropped) for i in wanted]
        if not -total <= index < total:
            raise IndexError(f"history index {index} out of range for {total} records")
        index %= total
        if index < self._dropped:
            raise self._gone(index)
        return self._record(index - self._dropped)

    def __iter__(self) -> Iterator[RoundRecord]:
        """The records still in memory, oldest first (all of them until ``kept`` is passed)."""
        return iter([self._record(i) for i in range(len(self._records))])


def kept_rounds(policy_specs: Sequence[object]) -> int:
    """How many recent rounds the histories must keep for these policies: twice the largest
    trailing ``window`` any of them reads, at least `MIN_KEPT`."""
    windows = [MIN_KEPT]
    for spec in policy_specs:
        kwargs = getattr(spec, "kwargs", None)
        if kwargs is None and isinstance(spec, dict):
            kwargs = spec.get("kwargs")
        window = (kwargs or {}).get("window")
        if isinstance(window, int) and not isinstance(window, bool):
            windows.append(2 * window)
    return max(windows)
