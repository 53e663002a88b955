"""A persistent SQLite cache of engine calls, wrapping any engine.

``CachedEngine(engine, folder)`` answers repeated calls from disk, so a re-run of a scenario, or a
variant that shares calls with an earlier run (offset on/off on the same queries and seeds), costs
no LLM time. What is cached, each keyed by the engine's identity (``EngineInfo``: engine, model,
device, dtype, extra) so two models never share an entry:

- ``generate``: the whole call — prompts, n, sampling parameters, seed;
- ``score``: each (prompt, reply) pair on its own; a reply is keyed by its token ids (a Candidate)
  or by its text (a str). A call computes only the missing pairs, in one inner call;
- ``next_token_logprobs``: each (prompt, prefix) row.

A prompt is keyed by what the engine reads: an engine that renders prompts as chat
(``renders_prompts``: hf, vLLM) by its system and user turns — the wave-1 key, so the ``system``
style hits entries written before prompts were structured, and a reference prompt, the same text
in every style, shares its entries across styles (which is why ``prompt_style`` is left out of the
engine's identity: it acts only through those turns) — and any other engine by every field of the
structured prompt.

Generation also stores every candidate's ``model_logprob`` as its score under its own prompt (the
protocol defines it so), so scoring a cached round never re-runs those pairs.

The file is in WAL mode with a busy timeout, so several processes may read and write it at once. A
corrupt, unreadable or locked file never stops a run: the wrapper warns once and carries on with
the uncached engine. An entry whose value does not decode (a garbled database) is a miss: it is
recomputed and overwritten, with one warning.
"""

from __future__ import annotations

import hashlib
import json
import os
import sqlite3
import warnings
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import platformdirs

from market.engines.base import Candidate, EngineError, EngineInfo, Prompt, SamplingParams

CACHE_ENV = "ADMARKET_CACHE"
CACHE_FILE = "engine-calls.sqlite"
BUSY_TIMEOUT_S = 30.0
_SQL_PARAMS_PER_QUERY = 500

_SCHEMA = (
    "CREATE TABLE IF NOT EXISTS generate_calls (key BLOB PRIMARY KEY, value BLOB NOT NULL)"
    " WITHOUT ROWID",
    "CREATE TABLE IF NOT EXISTS scores (key BLOB PRIMARY KEY, value BLOB NOT NULL) WITHOUT ROWID",
    "CREATE TABLE IF NOT EXISTS next_token (key BLOB PRIMARY KEY, dtype TEXT NOT NULL,"
    " value BLOB NOT NULL) WITHOUT ROWID",
)


def cache_root() -> Path:
    """The folder for admarket's caches: ``$ADMARKET_CACHE``, else the user's cache folder."""
    configured = os.environ.get(CACHE_ENV)
    if configured:
        return Path(configured).expanduser()
    return Path(platformdirs.user_cache_dir("admarket"))


@dataclass(frozen=True)
class CacheStats:
    """Hit and miss counts since the wrapper was made (score: pairs; next_token: rows)."""

    generate_hits: int = 0
    generate_misses: int = 0
    score_hits: int = 0
    score_misses: int = 0
    next_token_hits: int = 0
    next_token_misses: int = 0

    @property
    def hits(self) -> int:
        return self.generate_hits + self.score_hits + self.next_token_hits

    @property
    def misses(self) -> int:
        return self.generate_misses + self.score_misses + self.next_token_misses


_NOT_IDENTITY = frozenset({"prompt_style"})  # it reaches the numbers through the prompt key


def _engine_identity(info: EngineInfo) -> dict:
    return {
        "engine": info.engine,
        "model": info.model,
        "device": info.device,
        "dtype": info.dtype,
        "extra": {str(k): str(v) for k, v in sorted(info.extra.items()) if k not in _NOT_IDENTITY},
    }


def _digest(payload: object) -> bytes:
    text = json.dumps(payload, sort_keys=True, separators=(",", ":"), ensure_ascii=False)
    return hashlib.blake2b(text.encode("utf-8"), digest_size=20).digest()


def _prompt_key(prompt: Prompt, rendered: bool) -> list:
    if rendered:
        return [prompt.system, prompt.user]
    return [
        "structured",
        prompt.role,
        [prompt.query.text, prompt.query.topic],
        [[b.name, b.description, list(b.topics)] for b in prompt.brands],
        prompt.style,
    ]


def _reply_key(reply: Candidate | str) -> list:
    if isinstance(reply, Candidate):
        return ["ids", [int(t) for t in reply.token_ids]]
    return ["text", reply]


def _candidates_to_json(result: list[list[Candidate]]) -> bytes:
    rows = [
        [[c.text, list(c.token_ids), c.proposal_logprob, c.model_logprob] for c in candidates]
        for candidates in result
    ]
    return json.dumps(rows, separators=(",", ":")).encode("utf-8")


class _Garbled(ValueError):
    """A cached value that does not decode to what was stored."""


_DECODE_ERRORS = (ValueError, TypeError, KeyError, IndexError, AttributeError)


def _candidates_from_json(blob: bytes, shape: tuple[int, int]) -> list[list[Candidate]]:
    try:
        rows = [
            [
                Candidate(str(text), tuple(int(t) for t in ids), float(proposal), float(model))
                for text, ids, proposal, model in row
            ]
            for row in json.loads(bytes(blob).decode("utf-8"))
        ]
    except _DECODE_ERRORS as exc:  # JSON and Unicode errors are ValueErrors
        raise _Garbled(str(exc)) from exc
    if len(rows) != shape[0] or any(len(row) != shape[1] for row in rows):
        raise _Garbled(f"{len(rows)} rows, expected {shape[0]} of {shape[1]}")
    return rows


def _pack_float(value: float) -> bytes:
    return np.float64(value).tobytes()


def _unpack_float(blob: bytes) -> float:
    try:
        (value,) = np.frombuffer(bytes(blob), dtype=np.float64)
    except _DECODE_ERRORS as exc:
        raise _Garbled(str(exc)) from exc
    if np.isnan(value) or value == np.inf:  # a log-probability is never NaN or +inf
        raise _Garbled(f"log-probability {value}")
    return float(value)


def _unpack_row(dtype: str, blob: bytes) -> np.ndarray:
    try:
        row = np.frombuffer(bytes(blob), dtype=np.dtype(str(dtype)))
    except _DECODE_ERRORS as exc:
        raise _Garbled(str(exc)) from exc
    if row.dtype.kind != "f" or row.size == 0 or bool(np.isnan(row).any()):
        raise _Garbled(f"a {row.dtype} row of {row.size} values")
    return row


def _chunks(items: Sequence, size: int) -> Iterable[Sequence]:
    for start in range(0, len(items), size):
        yield items[start : start + size]


class CachedEngine:
    """Any engine behind a persistent SQLite cache of its calls (see the module docstring).

    ``engine``: the engine to wrap; ``folder``: where the cache file lives (created if missing).
    Results equal the wrapped engine's; ``stats`` counts hits and misses.
    """

    def __init__(self, engine, folder: str | os.PathLike) -> None:
        for method in ("generate", "score", "next_token_logprobs", "decode"):
            if not callable(getattr(engine, method, None)):
                raise EngineError(
                    f"CachedEngine(engine=...) needs an engine with a {method}() method, "
                    f"got {type(engine).__name__}"
                )
        self.inner = engine
        self.folder = Path(folder).expanduser()
        self.path = self.folder / CACHE_FILE
        self._identity = _engine_identity(engine.info)
        self._stats = {name: 0 for name in CacheStats.__dataclass_fields__}
        self._connection: sqlite3.Connection | None = None
        self._connection_pid: int | None = None
        self._disabled_reason: str | None = None
        self._rendered = bool(getattr(engine, "renders_prompts", False))
        self._warned_garbled = False

    # -- the Engine protocol -------------------------------------------------------------

    @property
    def info(self) -> EngineInfo:
        return self.inner.info

    @property
    def eos_token_id(self) -> int | None:
        return self.inner.eos_token_id

    def decode(self, token_ids: Sequence[int]) -> str:
        return self.inner.decode(token_ids)

    @property
    def stats(self) -> CacheStats:
        return CacheStats(**self._stats)

    @property
    def enabled(self) -> bool:
        """False once the cache file proved unusable (the run then goes on uncached)."""
        return self._disabled_reason is None

    def generate(
        self, prompts: Sequence[Prompt], n: int, params: SamplingParams, seed: int
    ) -> list[list[Candidate]]:
        prompts = list(prompts)
        key = _digest(
            {
                "call": "generate",
                "engine": self._identity,
                "prompts": [_prompt_key(p, self._rendered) for p in prompts],
                "n": int(n),
                "params": [params.temperature, params.top_p, params.max_new_tokens],
                "seed": int(seed),
            }
        )
        rows = self._read("SELECT key, value FROM generate_calls WHERE key IN ({})", [key])
        decoded = self._decode(rows, lambda blob: _candidates_from_json(blob, (len(prompts), n)))
        if key in decoded:
            self._stats["generate_hits"] += 1
            return decoded[key]
        result = self.inner.generate(prompts, n, params, seed)
        self._stats["generate_misses"] += 1
        self._write(
            "INSERT OR REPLACE INTO generate_calls (key, value) VALUES (?, ?)",
            [(key, _candidates_to_json(result))],
        )
        self._remember_own_scores(prompts, result)
        return result

    def score(self, prompts: Sequence[Prompt], replies: Sequence[Candidate | str]) -> np.ndarray:
        prompts, replies = list(prompts), list(replies)
        keys = [[self._score_key(p, r) for r in replies] for p in prompts]
        found = self._read(
            "SELECT key, value FROM scores WHERE key IN ({})", [k for row in keys for k in row]
        )
        if found is None:
            self._stats["score_misses"] += len(prompts) * len(replies)
            return self.inner.score(prompts, replies)
        found = self._decode(found, _unpack_float)
        out = np.full((len(prompts), len(replies)), np.nan)
        missing = np.zeros(out.shape, dtype=bool)
        for i, row in enumerate(keys):
            for j, key in enumerate(row):
                if key in found:
                    out[i, j] = found[key]
                else:
                    missing[i, j] = True
        self._stats["score_hits"] += int((~missing).sum())
        self._stats["score_misses"] += int(missing.sum())
        if missing.any():
            # One inner call over the smallest rectangle holding every missing pair.
            rows = np.flatnonzero(missing.any(axis=1))
            cols = np.flatnonzero(missing.any(axis=0))
            computed = np.asarray(
                self.inner.score([prompts[i] for i in rows], [replies[j] for j in cols]),
                dtype=np.float64,
            )
            out[np.ix_(rows, cols)] = computed
            self._write(
                "INSERT OR REPLACE INTO scores (key, value) VALUES (?, ?)",
                [
                    (keys[i][j], _pack_float(computed[a, b]))
                    for a, i in enumerate(rows)
                    for b, j in enumerate(cols)
                ],
            )
        return out

    def next_token_logprobs(
        self, prompts: Sequence[Prompt], prefixes: Sequence[Sequence[int]]
    ) -> np.ndarray:
        prompts, prefixes = list(prompts), [[int(t) for t in p] for p in prefixes]
        if len(prompts) != len(prefixes):
            raise EngineError(
                f"next_token_logprobs needs one prefix per prompt: got {len(prompts)} prompts "
                f"and {len(prefixes)} prefixes"
            )
        keys = [
            _digest(
                {
                    "call": "next_token",
                    "engine": self._identity,
                    "prompt": _prompt_key(p, self._rendered),
                    "prefix": prefix,
                }
            )
            for p, prefix in zip(prompts, prefixes, strict=True)
        ]
        found = self._read("SELECT key, dtype, value FROM next_token WHERE key IN ({})", keys)
        if found is None:
            self._stats["next_token_misses"] += len(prompts)
            return self.inner.next_token_logprobs(prompts, prefixes)
        found = self._decode(found, lambda row: _unpack_row(*row))
        if len({len(row) for row in found.values()}) > 1:  # rows of one engine share one width
            self._note_garbled(len(found))
            found = {}
        missing = [k for k, key in enumerate(keys) if key not in found]
        self._stats["next_token_hits"] += len(keys) - len(missing)
        self._stats["next_token_misses"] += len(missing)
        computed = None
        if missing:
            computed = np.asarray(
                self.inner.next_token_logprobs(
                    [prompts[k] for k in missing], [prefixes[k] for k in missing]
                )
            )
            self._write(
                "INSERT OR REPLACE INTO next_token (key, dtype, value) VALUES (?, ?, ?)",
                [
                    (keys[k], computed.dtype.str, computed[row].tobytes())
                    for row, k in enumerate(missing)
                ],
            )
        rows: list[np.ndarray | None] = [None] * len(keys)
        for k, key in enumerate(keys):
            if key in found:
                rows[k] = found[key]
        if computed is not None:
            for row, k in enumerate(missing):
                rows[k] = computed[row]
            wrong = [k for k, row in enumerate(rows) if len(row) != computed.shape[1]]
            if wrong:  # garbled rows of another width: recompute them too
                self._note_garbled(len(wrong))
                again = np.asarray(
                    self.inner.next_token_logprobs(
                        [prompts[k] for k in wrong], [prefixes[k] for k in wrong]
                    )
                )
                for row, k in enumerate(wrong):
                    rows[k] = again[row]
        return np.stack(rows) if rows else np.zeros((0, 0))

    # -- storage ---------------------------------------------------------------------------

    def _score_key(self, prompt: Prompt, reply: Candidate | str) -> bytes:
        return _digest(
            {
                "call": "score",
                "engine": self._identity,
                "prompt": _prompt_key(prompt, self._rendered),
                "reply": _reply_key(reply),
            }
        )

    def _remember_own_scores(self, prompts: list[Prompt], result: list[list[Candidate]]) -> None:
        self._write(
            "INSERT OR IGNORE INTO scores (key, value) VALUES (?, ?)",
            [
                (self._score_key(prompt, c), _pack_float(c.model_logprob))
                for prompt, candidates in zip(prompts, result, strict=True)
                for c in candidates
            ],
        )

    def _connect(self) -> sqlite3.Connection:
        if self._connection is not None and self._connection_pid == os.getpid():
            return self._connection
        self.folder.mkdir(parents=True, exist_ok=True)
        connection = sqlite3.connect(self.path, timeout=BUSY_TIMEOUT_S, isolation_level=None)
        try:
            connection.execute(f"PRAGMA busy_timeout = {int(BUSY_TIMEOUT_S * 1000)}")
            connection.execute("PRAGMA journal_mode = WAL")
            connection.execute("PRAGMA synchronous = NORMAL")
            for statement in _SCHEMA:
                connection.execute(statement)
        except BaseException:
            connection.close()
            raise
        self._connection, self._connection_pid = connection, os.getpid()
        return connection

    def _read(self, query: str, keys: list[bytes]) -> dict | None:
        """Rows found for ``keys`` (key -> value, or key -> (dtype, value)); None when unusable."""
        if not self.enabled:
            return None
        try:
            connection = self._connect()
            found: dict = {}
            unique = list(dict.fromkeys(keys))
            for chunk in _chunks(unique, _SQL_PARAMS_PER_QUERY):
                sql = query.format(",".join("?" * len(chunk)))
                for key, *value in connection.execute(sql, list(chunk)):
                    found[bytes(key)] = value[0] if len(value) == 1 else tuple(value)
            return found
        except (sqlite3.Error, OSError) as exc:
            self._disable(exc)
            return None

    def _write(self, statement: str, rows: list[tuple]) -> None:
        if not self.enabled or not rows:
            return
        try:
            connection = self._connect()
            connection.execute("BEGIN IMMEDIATE")
            try:
                connection.executemany(statement, rows)
                connection.execute("COMMIT")
            except BaseException:
                connection.execute("ROLLBACK")
                raise
        except (sqlite3.Error, OSError) as exc:
            self._disable(exc)

    def _decode(self, found: dict | None, decode) -> dict:
        """``found`` with every value decoded; values that do not decode are left out (misses),
        with one warning per wrapper."""
        decoded = {}
        garbled = 0
        for key, value in (found or {}).items():
            try:
                decoded[key] = decode(value)
            except (_Garbled, *_DECODE_ERRORS):
                garbled += 1
        self._note_garbled(garbled)
        return decoded

    def _note_garbled(self, count: int) -> None:
        if count and not self._warned_garbled:
            self._warned_garbled = True
            warnings.warn(
                f"engine cache {self.path} holds entries that do not decode ({count} in this "
                "call); recomputing and overwriting them",
                RuntimeWarning,
                stacklevel=4,
            )

    def _disable(self, exc: BaseException) -> None:
        self._disabled_reason = f"{type(exc).__name__}: {exc}"
        warnings.warn(
            f"engine cache {self.path} is unusable ({self._disabled_reason}); continuing without "
            f"the cache — delete the file or set {CACHE_ENV} to another folder to cache again",
            RuntimeWarning,
            stacklevel=3,
        )
        if self._connection is not None:
            try:
                self._connection.close()
            except sqlite3.Error:
                pass
            self._connection = None

    def close(self) -> None:
        """Close this process's connection (it reopens on the next call)."""
        if self._connection is not None and self._connection_pid == os.getpid():
            self._connection.close()
        self._connection = None

    def __getstate__(self) -> dict:
        state = dict(self.__dict__)
        state["_connection"] = None
        state["_connection_pid"] = None
        return state
