"""Token auction vs MOSAIC, like for like, with advertisers who bid as well as they can (issue 8.5).

    python -m market.token_vs_mosaic_cli [SCENARIO] [--seeds 5] [--out DIR] [--set PATH=VALUE ...]
    run_study(StudyConfig(...)) -> StudyResult   (`market.token_vs_mosaic_cli.main` prints it)

Both mechanisms face the same queries, the same advertisers (brands, topics, value scales v_i),
the same exact synthetic engine and the same common random numbers (per seed and round: the query,
MOSAIC's candidate-sampling seed, and the generator of MOSAIC's reply draw / the token auction's
per-position uniforms). Everything is measured in the same units:

- **Sampler: both untempered** (temperature 1, top-p 1). The token auction (Duetting et al.)
  aggregates the advertisers' and the reference model's *own* next-token distributions, so the
  like-for-like MOSAIC draws its candidates from the untempered context-aware π_con; top-p 1 also
  keeps the full support Theorem A.1 needs. A scenario with other sampling settings is refused.
- **Welfare**: Σ_i r_i(y) of the returned reply y, with the paper's implicit reward
  r_i(y) = v_i · (log π_i(y|x) − log π_ref(y|x)) (App. B.2, eq. 14) for both mechanisms.
- **Payments in reward units**: MOSAIC's payment (eq. 13, with the offset of Sec. 5.3 when the
  scenario turns it on) is in reward units. The token auction charges per token the critical bid
  c_{i,t}; a bid is a price per token and one bid unit per token is ``bid_unit`` = κ reward units
  (default κ = 1), so the payment is κ · Σ_t c_{i,t} and grows with the reply's length
  (`market.auction_adapter` states the mapping). Advertiser utility = r_i(y) − payment.
- **Bids are not fixed at b = v**: per seed, an iterated best-response search (`market.bidding`)
  over a grid of bids b_i = m · v_i (m in ``bid_multipliers``) for the token auction, and over a
  grid of report scalings (report s · r_i) for MOSAIC, each advertiser best-responding to the
  others on ``search_rounds`` rounds with common random numbers, until nobody gains by deviating
  on her grid or ``max_passes`` passes (without convergence: the visited profile with the smallest
  largest deviation gain ε, reported). The token auction's search starts at b = v; MOSAIC's at the
  largest scaling (an overstatement), so finding s = 1 is a result of the search, as Theorem 5.1
  (truthful reporting is dominant for every fixed candidate set) predicts. MOSAIC's search payoff
  is the exact ex-interim expected utility E_alloc[r_i] − p_i; the token auction's is the realized
  utility (its reply draw is part of the auction), averaged over the rounds.
- **Evaluation**: the profile each search ends at, and the b = v / s = 1 profile, are played on
  ``eval_rounds`` fresh rounds per seed (the same ones for every mechanism); each metric is a
  mean per round per seed, reported as the mean over seeds with a 95% t-interval.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd
from scipy import stats

from market.auction_adapter import Action, Advertiser, Arena, RoundPlay, RoundSpec
from market.bidding import SearchResult, best_response_search

__all__ = [
    "ASSUMPTIONS",
    "METRICS",
    "StudyConfig",
    "StudyError",
    "StudyResult",
    "run_study",
]

METRICS: dict[str, str] = {
    "welfare": "welfare Σ r_i(y) / round (reward units)",
    "revenue": "revenue Σ p_i / round (reward units)",
    "advertiser_utility": "advertiser utility Σ (r_i(y) − p_i) / round (reward units)",
    "usefulness": "user usefulness log π_ref(y|x) / token (nats)",
    "reply_tokens": "reply length (tokens)",
    "spend_per_token": "spend growth with length: d revenue / d tokens (reward units)",
}

ASSUMPTIONS: tuple[tuple[str, str, str], ...] = (
    (
        "allocation",
        "per token: each next token is drawn from an aggregate of the advertisers' and the "
        "reference's next-token distributions, weighted by the bids",
        "per reply: M whole candidate replies from π_con, one returned with probability "
        "∝ π_ref/π_con · exp(Σ_i r_i/τ) (Alg. 1)",
    ),
    (
        "what advertisers report",
        "one scalar bid b_i ≥ 0 per auction; the preference itself is her LLM's distribution",
        "a reward r_i(y_j) for every candidate reply (her LLM's log-likelihood ratio × v_i)",
    ),
    (
        "payment and its units",
        "critical bid per token (second-price), in bid units; here κ · Σ_t c_{i,t} reward units "
        "with κ = bid_unit reward units per bid unit per token",
        "Rochet payment E[r_i] − U_i (eq. 13), with the offset C_i of Sec. 5.3 when on; reward "
        "units",
    ),
    (
        "length dependence",
        "spend is a sum over tokens: it grows with the reply's length",
        "one payment per reply: it does not depend on the returned reply's length",
    ),
    (
        "truthfulness",
        "monotone aggregation makes the second-price rule incentive compatible for the robust "
        "(partial-order) preferences of Duetting et al.; with a reward-valued advertiser the "
        "bid that maximizes r_i(y) − payment need not be b = v (see the best-response bids)",
        "truthful reporting is a dominant strategy for every fixed candidate set (Thm 5.1); the "
        "search over report scalings should end at s = 1",
    ),
    (
        "objective",
        "welfare over next-token distributions (KL-based valuations), token by token",
        "the KL-regularized aggregate objective of eq. 1 (reference weight τ), over whole replies",
    ),
)


class StudyError(ValueError):
    """A study that cannot run as configured; the message is one line saying what to change."""


@dataclass(frozen=True)
class StudyConfig:
    """What the study runs. ``scenario``: a built-in name or YAML file with one variant per
    mechanism (each variant's ``mechanism`` block); ``overrides``: ``--set`` strings."""

    scenario: str = "token_vs_mosaic"
    overrides: tuple[str, ...] = ()
    seeds: int = 5
    search_rounds: int = 40
    eval_rounds: int = 200
    bid_multipliers: tuple[float, ...] = (0.0, 0.25, 0.5, 0.75, 1.0, 1.5, 2.0, 3.0, 4.0)
    report_scales: tuple[float, ...] = (0.25, 0.5, 0.75, 1.0, 1.25, 1.5, 2.0, 3.0)
    max_passes: int = 8
    bid_unit: float = 1.0

    def __post_init__(self) -> None:
        for name in ("seeds", "search_rounds", "eval_rounds", "max_passes"):
            value = getattr(self, name)
            if not (isinstance(value, int) and value >= 1):
                raise StudyError(f"{name} must be an integer >= 1, got {value!r}")
        if self.seeds < 2:
            raise StudyError("seeds must be >= 2 for a confidence interval over seeds")
        if 1.0 not in self.bid_multipliers or min(self.bid_multipliers) < 0:
            raise StudyError("bid_multipliers must be >= 0 and include 1 (the bid b = v)")
        if 1.0 not in self.report_scales or min(self.report_scales) <= 0:
            raise StudyError("report_scales must be > 0 and include 1 (truthful)")
        if not (np.isfinite(self.bid_unit) and self.bid_unit > 0):
            raise StudyError(f"bid_unit must be a finite number > 0, got {self.bid_unit!r}")


@dataclass(frozen=True, eq=False)
class StudyResult:
    """``table``: one row per (mechanism, bidding) with every metric's mean, low and high over
    seeds and the bids; ``per_seed``: the same metrics per seed; ``searches``: one row per
    (seed, mechanism) with the search's outcome; ``advertisers``: names and v_i."""

    table: pd.DataFrame
    per_seed: pd.DataFrame
    searches: pd.DataFrame
    advertisers: tuple[Advertiser, ...]
    config: StudyConfig
    notes: tuple[str, ...] = field(default=())

    def write(self, out_dir: str | Path) -> list[Path]:
        """token_vs_mosaic.csv, per_seed.csv, searches.csv and assumptions.md in ``out_dir``."""
        out = Path(out_dir)
        out.mkdir(parents=True, exist_ok=True)
        paths = [out / "token_vs_mosaic.csv", out / "per_seed.csv", out / "searches.csv"]
        for frame, path in zip((self.table, self.per_seed, self.searches), paths, strict=True):
            frame.to_csv(path, index=False)
        lines = ["| aspect | token auction | MOSAIC |", "|---|---|---|"]
        lines += [f"| {a} | {t} | {m} |" for a, t, m in ASSUMPTIONS]
        (out / "assumptions.md").write_text("\n".join(lines) + "\n")
        return [*paths, out / "assumptions.md"]


@dataclass(frozen=True, eq=False)
class _Setup:
    """The scenario as the study uses it: the arena, the variants' mechanisms, the query mix and
    the root seed."""

    arena: Arena
    mechanisms: dict[str, dict]
    queries: list[str]
    weights: list[float]
    root: int


def _setup(config: StudyConfig) -> _Setup:
    """The scenario's advertisers, queries and per-variant mechanisms as an `Arena`."""
    from scenarios.loader import ScenarioError, expand_variants, load_scenario

    try:
        scenario = load_scenario(config.scenario, config.overrides)
        variants = expand_variants(scenario)
    except ScenarioError as error:
        raise StudyError(str(error)) from error
    sampling = scenario.sampling
    if (sampling.temperature, sampling.top_p) != (1.0, 1.0):
        raise StudyError(
            f"{scenario.source}: sampling: temperature {sampling.temperature}, top_p "
            f"{sampling.top_p} — the token auction aggregates the models' untempered "
            "distributions, so set sampling.temperature=1.0 and sampling.top_p=1.0 for a "
            "like-for-like MOSAIC"
        )
    mechanisms = {
        name: {"type": v.mechanism.type, "kwargs": dict(v.mechanism.kwargs)}
        for name, v in (variants or {scenario.name: scenario}).items()
    }
    kinds = sorted(spec["type"] for spec in mechanisms.values())
    if kinds != ["mosaic", "token_auction"]:
        raise StudyError(
            f"{scenario.source}: variants: mechanisms {kinds} — the study compares one variant "
            "with mechanism mosaic and one with token_auction (see token_vs_mosaic.yaml)"
        )
    advertisers = tuple(
        Advertiser(a.name, a.description, tuple(a.topics), float(a.value))
        for a in scenario.advertisers
    )
    arena = Arena(
        advertisers=advertisers,
        queries={q.text: q.topic for q in scenario.queries},
        mechanisms=mechanisms,
        sampling=(1.0, 1.0, int(sampling.max_new_tokens)),
        engine_kwargs=dict(scenario.engine.kwargs) if scenario.engine.type == "synthetic" else {},
        bid_unit=config.bid_unit,
    )
    weights = np.array([q.weight for q in scenario.queries], dtype=float)
    return _Setup(
        arena=arena,
        mechanisms=mechanisms,
        queries=[q.text for q in scenario.queries],
        weights=list(weights / weights.sum()),
        root=int(scenario.seed),
    )


def _round_specs(
    root: int, seed: int, phase: int, count: int, queries: list[str], weights: list[float]
) -> list[RoundSpec]:
    """``count`` rounds of one phase (0: search, 1: evaluation) of one seed, addressed by
    SeedSequence(root, spawn_key=(seed, phase)): the same for every mechanism."""
    sequence = np.random.SeedSequence(root, spawn_key=(seed, phase))
    rng = np.random.default_rng(sequence)
    picks = rng.choice(len(queries), size=count, p=weights)
    engine_seeds = sequence.generate_state(count, dtype=np.uint32)
    return [
        RoundSpec(queries[int(q)], int(e), (root, seed, phase, k))
        for k, (q, e) in enumerate(zip(picks, engine_seeds, strict=True))
    ]


def _actions(kind: str, profile: Sequence[float]) -> list[Action]:
    if kind == "token_auction":
        return [Action(bid_amount=float(b)) for b in profile]
    return [Action(scale=float(s)) for s in profile]


def _play_all(arena: Arena, mechanism: str, specs, actions) -> list[RoundPlay]:
    return [arena.play(mechanism, spec, actions) for spec in specs]


def _grids(kind: str, arena: Arena, config: StudyConfig) -> tuple[list[list[float]], list[float]]:
    """Each advertiser's action grid and the search's start: bids m · v_i from b = v (token
    auction), report scalings from the largest (MOSAIC)."""
    values = [a.value for a in arena.advertisers]
    if kind == "token_auction":
        return [[m * v for m in config.bid_multipliers] for v in values], values
    return [list(config.report_scales)] * len(values), [max(config.report_scales)] * len(values)


def _payoff(arena: Arena, mechanism: str, kind: str, specs):
    """profile -> each advertiser's mean utility over ``specs`` (MOSAIC: ex-interim, exact)."""

    def payoff(profile: tuple[float, ...]) -> np.ndarray:
        plays = _play_all(arena, mechanism, specs, _actions(kind, profile))
        return np.mean([p.expected_utilities for p in plays], axis=0)

    return payoff


def _search(arena: Arena, mechanism: str, specs, config: StudyConfig) -> SearchResult:
    """The best-response search of one mechanism on ``specs`` (see the module docstring)."""
    kind = arena.kind(mechanism)
    grids, start = _grids(kind, arena, config)
    return best_response_search(
        _payoff(arena, mechanism, kind, specs), grids, start, max_passes=config.max_passes
    )


def _metrics(plays: list[RoundPlay]) -> dict[str, float]:
    tokens = np.array([p.reply_tokens for p in plays], dtype=float)
    revenue = np.array([p.revenue for p in plays])
    slope = np.polyfit(tokens, revenue, 1)[0] if np.ptp(tokens) > 0 else np.nan
    return {
        "welfare": float(np.mean([p.welfare for p in plays])),
        "revenue": float(revenue.mean()),
        "advertiser_utility": float(np.mean([p.utilities.sum() for p in plays])),
        "usefulness": float(np.mean([p.usefulness for p in plays])),
        "reply_tokens": float(tokens.mean()),
        "spend_per_token": float(slope),
    }


def _interval(values: np.ndarray) -> tuple[float, float, float]:
    values = np.asarray(values, dtype=float)
    values = values[np.isfinite(values)]
    if values.size == 0:
        return (np.nan, np.nan, np.nan)
    mean = float(values.mean())
    if values.size < 2 or np.ptp(values) == 0:
        return (mean, mean, mean) if values.size >= 2 else (mean, np.nan, np.nan)
    low, high = stats.t.interval(0.95, values.size - 1, loc=mean, scale=stats.sem(values))
    return (mean, float(low), float(high))


def run_study(config: StudyConfig, *, progress=None) -> StudyResult:
    """Run the searches and the evaluation for every seed; see the module docstring.

    ``progress(message)`` is called after each (seed, mechanism) search when given.
    """
    setup = _setup(config)
    arena = setup.arena
    names = [a.name for a in arena.advertisers]
    per_seed, searches = [], []
    for seed in range(config.seeds):
        search_specs, eval_specs = (
            _round_specs(setup.root, seed, phase, count, setup.queries, setup.weights)
            for phase, count in ((0, config.search_rounds), (1, config.eval_rounds))
        )
        for mechanism in setup.mechanisms:
            kind = arena.kind(mechanism)
            grids, _ = _grids(kind, arena, config)
            result = _search(arena, mechanism, search_specs, config)
            searches.append(
                {
                    "seed": seed,
                    "mechanism": mechanism,
                    "converged": result.converged,
                    "passes": result.passes,
                    "max_regret": float(result.regrets.max()),
                    "profiles_evaluated": result.evaluations,
                    # a best response at the top of the grid may lie beyond it: widen the grid
                    "at_grid_top": int(
                        sum(k == len(g) - 1 for k, g in zip(result.indices, grids, strict=True))
                    ),
                    **{f"action_{n}": a for n, a in zip(names, result.profile, strict=True)},
                    "path": " → ".join(
                        "(" + ", ".join(f"{a:g}" for a in p) + ")" for p in result.path
                    ),
                }
            )
            baseline = (
                [a.value for a in arena.advertisers]
                if kind == "token_auction"
                else [1.0] * len(names)
            )
            for bidding, profile in (
                ("b = v" if kind == "token_auction" else "truthful (s = 1)", baseline),
                ("best response", list(result.profile)),
            ):
                plays = _play_all(arena, mechanism, eval_specs, _actions(kind, profile))
                per_seed.append(
                    {
                        "seed": seed,
                        "mechanism": mechanism,
                        "kind": kind,
                        "bidding": bidding,
                        # fixed bids have nothing to converge: NaN, not "converged"
                        "converged": float(result.converged)
                        if bidding == "best response"
                        else np.nan,
                        "epsilon": float(result.regrets.max())
                        if bidding == "best response"
                        else np.nan,
                        **_metrics(plays),
                        **{f"action_{n}": a for n, a in zip(names, profile, strict=True)},
                    }
                )
            if progress is not None:
                progress(
                    f"seed {seed} {mechanism}: {'converged' if result.converged else 'NOT converged'}"
                    f" after {result.passes} passes at {result.profile}"
                )
    per_seed_frame = pd.DataFrame(per_seed)
    return StudyResult(
        table=_summarize(per_seed_frame, names, config),
        per_seed=per_seed_frame,
        searches=pd.DataFrame(searches),
        advertisers=tuple(arena.advertisers),
        config=config,
    )


def _summarize(per_seed: pd.DataFrame, names: list[str], config: StudyConfig) -> pd.DataFrame:
    rows = []
    for (mechanism, bidding), part in per_seed.groupby(["mechanism", "bidding"], sort=False):
        kind = part["kind"].iloc[0]
        row = {
            "mechanism": mechanism,
            "kind": kind,
            "bidding": bidding,
            "seeds": len(part),
            "converged_seeds": (
                int(part["converged"].sum()) if part["converged"].notna().any() else np.nan
            ),
            "payment_units": (
                f"κ·Σ_t c_t, κ = {config.bid_unit:g}" if kind == "token_auction" else "eq. 13"
            ),
            "action": "bid b_i (bid units / token)"
            if kind == "token_auction"
            else "report scale s",
        }
        for metric in (*METRICS, "epsilon"):
            row[metric], row[f"{metric}_low"], row[f"{metric}_high"] = _interval(part[metric])
        for name in names:
            column = f"action_{name}"
            row[column], row[f"{column}_low"], row[f"{column}_high"] = _interval(part[column])
        rows.append(row)
    return pd.DataFrame(rows)
