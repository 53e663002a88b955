"""Reports: every figure is written, and every table number matches a recomputation from parquet.

Two kinds of run folders are used: a fixture written here with the exact docs/data.md schema (a
small MOSAIC market simulated in numpy, so variants, seeds and the token auction's NaN columns can
be controlled), and a real short run of the market on the synthetic engine.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import yaml
from rich.console import Console
from scipy import stats

from reports import build_report, load_run, print_summary
from reports.data import RunDataError
from reports.figures import build_figures
from reports.tables import (
    advertiser_table,
    contribution_fits,
    dilution_table,
    headline_table,
    offset_modes,
)

BRANDS = {
    "MusicMastery": ("music",),
    "InstaTune": ("music",),
    "KitchenFix": ("cooking",),
    "EasySwitch": ("privacy",),
}
QUERIES = {
    "How can I learn to play the guitar?": "music",
    "How do I cook rice perfectly?": "cooking",
    "How can I protect my privacy online?": "privacy",
}


def _lse(x: np.ndarray) -> float:
    peak = np.max(x)
    return float(peak + np.log(np.exp(x - peak).sum()))


def _softmax(x: np.ndarray) -> np.ndarray:
    return np.exp(x - _lse(x))


def _mosaic(rewards: np.ndarray, log_ref: np.ndarray, log_gen: np.ndarray, offset: bool):
    """Algorithm 1 with eq. 13 payments (τ = 1), written out independently of market/."""
    logits = rewards.sum(0) + log_ref - log_gen
    allocation = _softmax(logits)
    expected, without, payments, offsets = [], [], [], []
    for r in rewards:
        beta = logits - r
        c = -_lse(beta) if offset else 0.0
        expected.append(allocation @ r)
        without.append(_softmax(beta) @ r)
        payments.append(allocation @ r - _lse(r + beta) - c)
        offsets.append(c)
    return allocation, *(np.array(v) for v in (expected, without, payments, offsets))


def write_fixture_run(
    run_dir: Path,
    *,
    variants: dict[str, dict] | None = None,
    seeds: tuple[int, ...] = (11, 12),
    n_rounds: int = 24,
    m: int = 4,
) -> Path:
    """A small market with the docs/data.md schema: entry probabilities by relevance, rewards of
    relevant entrants mostly positive, MOSAIC outcomes (or token-auction NaNs) per round."""
    variants = variants or {
        "offset": {"mechanism": "mosaic", "offset": True, "p_irrelevant": 0.2},
        "no_offset": {"mechanism": "mosaic", "offset": False, "p_irrelevant": 0.6},
    }
    names, queries = list(BRANDS), list(QUERIES)
    rounds, advertisers, auctions = [], [], []
    for v_index, (variant, spec) in enumerate(variants.items()):
        token = spec["mechanism"] == "token_auction"
        for seed in seeds:
            rng = np.random.default_rng([seed, v_index])
            for t in range(n_rounds):
                query = queries[int(rng.integers(len(queries)))]
                topic = QUERIES[query]
                relevant = np.array([topic in BRANDS[a] for a in names])
                p_enter = np.where(relevant, 0.85, spec["p_irrelevant"])
                entered = rng.random(len(names)) < p_enter
                entrants = [a for a, e in zip(names, entered, strict=True) if e]
                rel_in = relevant[entered]
                k = 1 if token else m
                n_tokens = rng.integers(20, 48, size=k)
                log_ref = -rng.gamma(4.0, 8.0, size=k)
                log_gen = log_ref + rng.normal(0.5, 1.0, size=k)
                mean = np.where(rel_in, 1.0, -1.0)[:, None]
                rewards = mean + rng.normal(0.0, 1.2, size=(len(entrants), k))
                texts = [
                    "Try "
                    + " and ".join(a for a, r in zip(entrants, rewards[:, j], strict=True) if r > 1)
                    + f" (candidate {j})"
                    for j in range(k)
                ]
                if token:
                    allocation = np.ones(1)
                    expected = rewards[:, 0]
                    without = offsets = np.full(len(entrants), np.nan)
                    payments = np.abs(rng.normal(0.3, 0.2, size=len(entrants)))
                else:
                    allocation, expected, without, payments, offsets = _mosaic(
                        rewards, log_ref, log_gen, spec["offset"]
                    )
                returned = int(rng.choice(k, p=allocation))
                realized = rewards[:, returned]
                mentioned = [a for a in entrants if a in texts[returned]]
                keys = {"variant": variant, "seed": seed, "round": t}
                rounds.append(
                    {
                        **keys,
                        "query": query,
                        "topic": topic,
                        "mechanism": spec["mechanism"],
                        "generator": "token" if token else "context",
                        "n_entrants": len(entrants),
                        "entrants": entrants,
                        "n_relevant_entrants": int(rel_in.sum()),
                        "n_irrelevant_entrants": int((~rel_in).sum()),
                        "n_candidates": k,
                        "revenue": float(payments.sum()),
                        "welfare": float(realized.sum()),
                        "expected_welfare": float(expected.sum()),
                        "usefulness": float(log_ref[returned] / n_tokens[returned]),
                        "reply_logprob_ref": float(log_ref[returned]),
                        "reply_tokens": int(n_tokens[returned]),
                        "reply_text": texts[returned],
                        "ess": float(1 / np.sum(allocation**2)),
                        "mentioned": mentioned,
                        "engine_seconds": 0.01,
                        "round_seconds": 0.02,
                    }
                )
                position = {a: i for i, a in enumerate(entrants)}
                for a, rel in zip(names, relevant, strict=True):
                    i = position.get(a)
                    inside = i is not None
                    advertisers.append(
                        {
                            **keys,
                            "advertiser": a,
                            "value": 1.0,
                            "policy": "fixed_probability",
                            "entered": inside,
                            "relevant": bool(rel),
                            "payment": float(payments[i]) if inside else 0.0,
                            "expected_reward": float(expected[i]) if inside else 0.0,
                            "expected_reward_without": float(without[i]) if inside else np.nan,
                            "utility": float(expected[i] - payments[i]) if inside else 0.0,
                            "realized_reward": float(realized[i]) if inside else 0.0,
                            "realized_utility": float(realized[i] - payments[i]) if inside else 0.0,
                            "outside_reward": np.nan,
                            "mentioned": a in mentioned,
                            "offset": float(offsets[i]) if inside else 0.0,
                        }
                    )
                for j in range(k):
                    auctions.append(
                        {
                            **keys,
                            "candidate": j,
                            "text": texts[j],
                            "n_tokens": int(n_tokens[j]),
                            "log_ref": float(log_ref[j]),
                            "log_gen": float(log_gen[j]),
                            "allocation": float(allocation[j]),
                            "returned": j == returned,
                            "rewards": [float(r) for r in rewards[:, j]],
                            "entrants": entrants,
                        }
                    )
    run_dir.mkdir(parents=True, exist_ok=True)
    for name, rows in (("rounds", rounds), ("advertisers", advertisers), ("auctions", auctions)):
        frame = pd.DataFrame(rows)
        (run_dir / name).mkdir(exist_ok=True)
        half = len(frame) // 2  # two parts, as the runner flushes them
        frame.iloc[:half].to_parquet(run_dir / name / "part-00000.parquet")
        frame.iloc[half:].to_parquet(run_dir / name / "part-00001.parquet")
    scenario = {"name": "fixture", "rounds": n_rounds, "seeds": list(seeds), "variants": variants}
    (run_dir / "scenario.yaml").write_text(yaml.safe_dump(scenario))
    (run_dir / "meta.json").write_text(json.dumps({"engine": {"engine": "fixture"}}))
    return run_dir


@pytest.fixture(scope="module")
def fixture_run(tmp_path_factory) -> Path:
    return write_fixture_run(tmp_path_factory.mktemp("fixture_run"))


def _read(run_dir: Path, name: str) -> pd.DataFrame:
    return pd.read_parquet(run_dir / name)


def _t_ci(values: np.ndarray) -> tuple[float, float, float]:
    values = np.asarray(values, float)
    half = stats.t.ppf(0.975, len(values) - 1) * values.std(ddof=1) / np.sqrt(len(values))
    return values.mean(), values.mean() - half, values.mean() + half


def _check_report(run_dir: Path) -> None:
    """report.html exists, every figure it names is a non-empty PNG in figures/."""
    report = build_report(run_dir)
    assert report == run_dir / "report.html"
    text = report.read_text()
    pngs = sorted((run_dir / "figures").glob("*.png"))
    assert pngs, "no figure written"
    for png in pngs:
        assert png.stat().st_size > 5000, f"{png.name} is (nearly) empty"
        assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
        assert f'src="figures/{png.name}"' in text
    assert "Resolved scenario" in text


def test_report_writes_every_figure(fixture_run):
    _check_report(fixture_run)
    names = {p.stem for p in (fixture_run / "figures").glob("*.png")}
    assert names == {
        "participation_advertisers",
        "participation_relevance",
        "revenue",
        "welfare",
        "usefulness",
        "ess",
        "utility_advertisers",
        "positive_utility",
        "utility_vs_contribution",
        "dilution",
        "comparison",
    }


def test_headline_matches_recomputation_over_seeds(fixture_run):
    adv, rounds = _read(fixture_run, "advertisers"), _read(fixture_run, "rounds")
    table = headline_table(load_run(fixture_run)).set_index(["variant", "metric"])
    for variant in ("offset", "no_offset"):
        a, r = adv[adv.variant == variant], rounds[rounds.variant == variant]
        per_seed = {
            "participation_relevant": a[a.relevant].groupby("seed").entered.mean(),
            "participation_irrelevant": a[~a.relevant].groupby("seed").entered.mean(),
            "participation_relevant_late": a[a.relevant & (a["round"] >= 12)]
            .groupby("seed")
            .entered.mean(),
            "revenue": r.groupby("seed").revenue.mean(),
            "welfare": r.groupby("seed").welfare.mean(),
            "usefulness": r.groupby("seed").usefulness.mean(),
            "utility": a[a.entered].groupby("seed").utility.mean(),
            "share_positive_utility": a[a.entered]
            .groupby("seed")
            .utility.apply(lambda u: (u > 0).mean()),
            "pearson_r": a[a.entered]
            .groupby("seed")
            .apply(
                lambda g: np.corrcoef(g.expected_reward - g.expected_reward_without, g.utility)[
                    0, 1
                ]
            ),
        }
        for metric, values in per_seed.items():
            row = table.loc[(variant, metric)]
            np.testing.assert_allclose(
                [row.estimate, row.low, row.high],
                _t_ci(values.to_numpy()),
                rtol=1e-9,
                err_msg=metric,
            )
            assert row.n == 2 and "t-interval over 2 seeds" in row.method


def test_single_seed_uses_bootstrap_over_rounds(tmp_path):
    run = write_fixture_run(tmp_path / "one", seeds=(5,), n_rounds=40)
    table = headline_table(load_run(run), rng=np.random.default_rng(1))
    rounds = _read(run, "rounds")
    revenue = table[(table.variant == "offset") & (table.metric == "revenue")].iloc[0]
    assert revenue.estimate == pytest.approx(rounds[rounds.variant == "offset"].revenue.mean())
    assert revenue.low < revenue.estimate < revenue.high
    assert "bootstrap" in revenue.method and revenue.n == 40
    # The bootstrap CI of a mean is close to the normal-theory one for 40 rounds.
    values = rounds[rounds.variant == "offset"].revenue.to_numpy()
    se = values.std(ddof=1) / np.sqrt(len(values))
    assert revenue.high - revenue.low == pytest.approx(2 * 1.96 * se, rel=0.25)


def test_contribution_fit_matches_numpy(fixture_run):
    adv = _read(fixture_run, "advertisers")
    fits = contribution_fits(load_run(fixture_run)).set_index("variant")
    for variant in ("offset", "no_offset"):
        a = adv[(adv.variant == variant) & adv.entered]
        x, y = a.expected_reward - a.expected_reward_without, a.utility
        slope, intercept = np.polyfit(x, y, 1)
        r = np.corrcoef(x, y)[0, 1]
        fit = fits.loc[variant]
        np.testing.assert_allclose(
            [fit.slope, fit.intercept, fit.pearson_r, fit.r2], [slope, intercept, r, r * r]
        )
        assert fit.n == len(a)
    assert fits.loc["offset", "offset"] == "with offset"
    assert fits.loc["no_offset", "offset"] == "without offset"
    assert fits.loc["offset", "paper_pearson_r"] == 0.8
    assert fits.loc["no_offset", "paper_pearson_r"] == 0.4


def test_advertiser_table_matches_recomputation(fixture_run):
    adv = _read(fixture_run, "advertisers")
    table = advertiser_table(load_run(fixture_run)).set_index(["variant", "advertiser"])
    for (variant, name), a in adv.groupby(["variant", "advertiser"]):
        row = table.loc[(variant, name)]
        inside = a[a.entered]
        assert row.entry_rate == pytest.approx(a.entered.mean())
        assert row.payment_per_entry == pytest.approx(inside.payment.mean(), nan_ok=True)
        assert row.utility_per_entry == pytest.approx(inside.utility.mean(), nan_ok=True)
        assert row.share_positive_utility == pytest.approx((inside.utility > 0).mean(), nan_ok=True)
        assert row.mention_rate == pytest.approx(inside.mentioned.mean(), nan_ok=True)
        assert row.cumulative_utility == pytest.approx(a.groupby("seed").utility.sum().mean())
        irrelevant = a[~a.relevant]
        assert row.entry_rate_irrelevant == pytest.approx(irrelevant.entered.mean(), nan_ok=True)


def test_dilution_table_matches_recomputation(fixture_run):
    adv, rounds = _read(fixture_run, "advertisers"), _read(fixture_run, "rounds")
    joined = adv[adv.entered & adv.relevant].merge(
        rounds[["variant", "seed", "round", "n_entrants"]], on=["variant", "seed", "round"]
    )
    table = dilution_table(load_run(fixture_run)).set_index(["variant", "n_entrants"])
    expected = joined.groupby(["variant", "n_entrants"]).agg(
        n=("mentioned", "size"), rate=("mentioned", "mean"), reward=("expected_reward", "mean")
    )
    assert set(table.index) == set(expected.index)
    for key, row in expected.iterrows():
        got = table.loc[key]
        assert got.n == row.n
        assert got.mention_rate == pytest.approx(row.rate)
        assert got.expected_reward == pytest.approx(row.reward)
        assert got.mention_low <= got.mention_rate <= got.mention_high


def test_token_auction_skips_what_does_not_apply(tmp_path):
    run = write_fixture_run(
        tmp_path / "token",
        variants={"token": {"mechanism": "token_auction", "offset": False, "p_irrelevant": 0.3}},
        seeds=(1,),
        n_rounds=20,
    )
    data = load_run(run)
    assert not data.has_counterfactual
    assert offset_modes(data) == {"token": "n/a"}
    headline = headline_table(data).set_index("metric")
    assert np.isnan(headline.loc["pearson_r", "estimate"])
    assert np.isfinite(headline.loc["revenue", "estimate"])
    outputs = {o.name: o for o in build_figures(data, run / "figures")}
    assert outputs["utility_vs_contribution"].path is None
    assert "token auction" in outputs["utility_vs_contribution"].skipped
    text = build_report(run).read_text()
    assert "not drawn" in text and "token auction" in text


def test_print_summary_lists_every_variant(fixture_run):
    console = Console(record=True, width=160)
    print_summary(fixture_run, console=console)
    text = console.export_text()
    assert "offset" in text and "no_offset" in text and "revenue / round" in text


def test_load_run_names_what_is_missing(tmp_path, fixture_run):
    with pytest.raises(FileNotFoundError, match="run_dir"):
        load_run(tmp_path / "absent")
    (tmp_path / "empty").mkdir()
    with pytest.raises(RunDataError, match="rounds"):
        load_run(tmp_path / "empty")
    broken = tmp_path / "broken"
    broken.mkdir()
    for name in ("rounds", "advertisers"):
        frame = _read(fixture_run, name)
        frame.drop(columns=["revenue"] if name == "rounds" else []).to_parquet(
            broken / f"{name}.parquet"
        )
    with pytest.raises(RunDataError, match="revenue"):
        load_run(broken)
