"""Reports: every figure is written, and every table number matches a recomputation from parquet.

The run folders are real short runs of the market (`admarket sweep` / `run` on the synthetic
engine): free-riding with the offset on and off over several seeds, the same with one seed (the
bootstrap path), and MOSAIC against the token auction (NaN counterfactuals).
"""

from __future__ import annotations

import shutil
import tracemalloc
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from rich.console import Console
from scipy import stats

from market.cli import main as admarket
from reports import build_report, load_run, print_summary
from reports import stats as stats_module
from reports.data import RunDataError
from reports.figures import build_figures
from reports.stats import bootstrap_sums
from reports.tables import (
    advertiser_table,
    contribution_fits,
    dilution_table,
    headline_table,
    offset_modes,
)

SYNTHETIC = ["--set", "engine.type=synthetic", "--no-report", "--no-cache"]


def _admarket(*args: str) -> None:
    assert admarket(list(args)) == 0, f"admarket {' '.join(args)} failed"


@pytest.fixture(scope="module")
def sweep_run(tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("runs") / "free_riding_sweep"
    _admarket(
        "sweep", "free_riding", "--seeds", "3", "--rounds", "30", "--out", str(out), *SYNTHETIC
    )
    return out


@pytest.fixture(scope="module")
def single_run(tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("runs") / "free_riding_one"
    _admarket("run", "free_riding", "--rounds", "40", "--out", str(out), *SYNTHETIC)
    return out


@pytest.fixture(scope="module")
def mixed_run(tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("runs") / "token_vs_mosaic"
    _admarket(
        "sweep", "token_vs_mosaic", "--seeds", "2", "--rounds", "12", "--out", str(out), *SYNTHETIC
    )
    return out


def _read(run_dir: Path, name: str) -> pd.DataFrame:
    """A table of a run folder: its compacted file once the run finished, else its parts."""
    single = run_dir / f"{name}.parquet"
    return pd.read_parquet(single if single.is_file() else run_dir / name)


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


def test_report_of_a_copied_run_writes_every_figure(sweep_run, tmp_path):
    copied = shutil.copytree(sweep_run, tmp_path / "elsewhere")  # reports need the files alone
    _check_report(copied)
    names = {p.stem for p in (copied / "figures").glob("*.png")}
    assert names == {
        "participation_advertisers",
        "participation_relevance",
        "revenue",
        "welfare",
        "usefulness",
        "ess",
        "utility_advertisers",
        "gain_advertisers",
        "gain_ir",
        "gain_vs_contribution",
        "dilution",
        "comparison",
    }


def test_headline_matches_recomputation_over_seeds(sweep_run):
    adv, rounds = _read(sweep_run, "advertisers"), _read(sweep_run, "rounds")
    table = headline_table(load_run(sweep_run)).set_index(["variant", "metric"])
    assert set(rounds.seed) == {0, 1, 2} and set(rounds.variant) == {"offset", "no_offset"}
    for variant in ("offset", "no_offset"):
        a, r = adv[adv.variant == variant], rounds[rounds.variant == variant]
        entered = a[a.entered]
        gain = entered.utility - entered.expected_reward_without  # App. C.4, eq. 15
        entered = entered.assign(gain=gain)
        late = a["round"] >= 15
        per_seed = {
            "participation_relevant": a[a.relevant].groupby("seed").entered.mean(),
            "participation_irrelevant": a[~a.relevant].groupby("seed").entered.mean(),
            "participation_relevant_late": a[a.relevant & late].groupby("seed").entered.mean(),
            "participation_irrelevant_late": a[~a.relevant & late].groupby("seed").entered.mean(),
            "revenue": r.groupby("seed").revenue.mean(),
            "welfare": r.groupby("seed").welfare.mean(),
            "expected_welfare": r.groupby("seed").expected_welfare.mean(),
            "usefulness": r.groupby("seed").usefulness.mean(),
            "utility": entered.groupby("seed").utility.mean(),
            "utility_gain": entered.groupby("seed").gain.mean(),
            "share_gain_non_negative": entered.groupby("seed").gain.apply(
                lambda u: (u >= -1e-9).mean()
            ),
            "pearson_r": entered.groupby("seed").apply(
                lambda g: np.corrcoef(g.expected_reward - g.expected_reward_without, g.gain)[0, 1]
            ),
        }
        for metric, values in per_seed.items():
            row = table.loc[(variant, metric)]
            np.testing.assert_allclose(
                [row.estimate, row.low, row.high],
                _t_ci(values.to_numpy()),
                rtol=1e-9,
                err_msg=f"{variant} {metric}",
            )
            assert row.n == 3 and "t-interval over 3 seeds" in row.method


def test_single_seed_uses_bootstrap_over_rounds(single_run):
    table = headline_table(load_run(single_run), rng=np.random.default_rng(1))
    rounds = _read(single_run, "rounds")
    for variant in ("offset", "no_offset"):
        values = rounds[rounds.variant == variant].welfare.to_numpy()
        row = table[(table.variant == variant) & (table.metric == "welfare")].iloc[0]
        assert row.estimate == pytest.approx(values.mean())
        assert row.low < row.estimate < row.high
        assert "bootstrap" in row.method and row.n == 40
        # For a mean over 40 rounds the bootstrap interval is close to the normal-theory one.
        se = values.std(ddof=1) / np.sqrt(len(values))
        assert row.high - row.low == pytest.approx(2 * 1.96 * se, rel=0.3)


def test_bootstrap_sums_hold_a_chunk_of_resamples_at_a_time(monkeypatch):
    """The resample counts of 20,000 rounds x 400 resamples (64 MB at once) are drawn a chunk at
    a time: the same draws as one multinomial call, in bounded memory."""
    units, n_boot = 20_000, 400
    per_unit = np.random.default_rng(3).integers(-5, 6, size=(units, 3)).astype(float)
    per_unit[7, 1] = np.nan  # counts as 0
    # integer-valued sums are exact in any summation order: the comparison is exact
    counts = np.random.default_rng(11).multinomial(units, np.full(units, 1 / units), size=n_boot)
    expected = counts @ np.nan_to_num(per_unit)
    del counts
    monkeypatch.setattr(stats_module, "BOOTSTRAP_CHUNK_BYTES", 2**20)  # 6 resamples a chunk
    tracemalloc.start()
    try:
        sums = bootstrap_sums(per_unit, np.random.default_rng(11), n_boot=n_boot)
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    np.testing.assert_array_equal(sums, expected)
    assert peak < 8 * 2**20, peak  # all 400 at once: 64 MB of counts, 128 MB as floats


def test_contribution_fit_matches_numpy(sweep_run):
    adv = _read(sweep_run, "advertisers")
    data = load_run(sweep_run)
    fits = contribution_fits(data).set_index("variant")
    for variant in ("offset", "no_offset"):
        a = adv[(adv.variant == variant) & adv.entered]
        x, y = a.expected_reward - a.expected_reward_without, a.utility - a.expected_reward_without
        slope, intercept = np.polyfit(x, y, 1)
        r = np.corrcoef(x, y)[0, 1]
        fit = fits.loc[variant]
        np.testing.assert_allclose(
            [fit.slope, fit.intercept, fit.pearson_r, fit.r2], [slope, intercept, r, r * r]
        )
        assert fit.n == len(a)
        assert fit.utility_gain_mean == pytest.approx(y.mean())
        assert fit.utility_gain_min == pytest.approx(y.min())
    # With the offset the gain is >= 0 on every entry (Jensen); the run is truthful.
    assert fits.loc["offset", "utility_gain_min"] >= -1e-9
    assert fits.loc["offset", "share_gain_non_negative"] == 1.0
    assert offset_modes(data) == {"offset": "with offset", "no_offset": "without offset"}
    assert fits.loc["offset", "paper_pearson_r"] == 0.8
    assert fits.loc["no_offset", "paper_pearson_r"] == 0.4


def test_advertiser_table_matches_recomputation(sweep_run):
    adv = _read(sweep_run, "advertisers")
    table = advertiser_table(load_run(sweep_run)).set_index(["variant", "advertiser"])
    assert len(table) == adv.groupby(["variant", "advertiser"]).ngroups
    for (variant, name), a in adv.groupby(["variant", "advertiser"]):
        row = table.loc[(variant, name)]
        inside = a[a.entered]
        assert row.entry_rate == pytest.approx(a.entered.mean())
        assert row.payment_per_entry == pytest.approx(inside.payment.mean(), nan_ok=True)
        assert row.utility_per_entry == pytest.approx(inside.utility.mean(), nan_ok=True)
        gain = inside.utility - inside.expected_reward_without
        assert row.gain_per_entry == pytest.approx(gain.mean(), nan_ok=True)
        assert row.share_gain_non_negative == pytest.approx((gain >= -1e-9).mean(), nan_ok=True)
        assert row.cumulative_gain == pytest.approx(
            (a.utility - a.expected_reward_without)
            .where(a.entered, 0.0)
            .groupby(a.seed)
            .sum()
            .mean()
        )
        assert row.mention_rate == pytest.approx(inside.mentioned.mean(), nan_ok=True)
        assert row.cumulative_utility == pytest.approx(a.groupby("seed").utility.sum().mean())
        irrelevant = a[~a.relevant]
        assert row.entry_rate_irrelevant == pytest.approx(irrelevant.entered.mean(), nan_ok=True)


def test_dilution_table_matches_recomputation(sweep_run):
    adv, rounds = _read(sweep_run, "advertisers"), _read(sweep_run, "rounds")
    joined = adv[adv.entered & adv.relevant].merge(
        rounds[["variant", "seed", "round", "n_entrants"]], on=["variant", "seed", "round"]
    )
    table = dilution_table(load_run(sweep_run)).set_index(["variant", "n_entrants"])
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


def test_token_auction_skips_what_does_not_apply(mixed_run):
    data = load_run(mixed_run)
    assert data.variants == ("mosaic", "token_auction")
    assert offset_modes(data) == {"mosaic": "with offset", "token_auction": "n/a"}
    headline = headline_table(data).set_index(["variant", "metric"])
    assert np.isnan(headline.loc[("token_auction", "pearson_r"), "estimate"])
    assert np.isfinite(headline.loc[("token_auction", "revenue"), "estimate"])
    assert np.isfinite(headline.loc[("mosaic", "pearson_r"), "estimate"])
    outputs = {o.name: o for o in build_figures(data, mixed_run / "figures")}
    for name in ("gain_vs_contribution", "gain_advertisers", "gain_ir"):
        assert outputs[name].path is not None and "token_auction" in outputs[name].skipped
    assert np.isnan(headline.loc[("token_auction", "utility_gain"), "estimate"])
    assert np.isfinite(headline.loc[("token_auction", "utility"), "estimate"])
    text = build_report(mixed_run).read_text()
    assert "token auction" in text and "shown as n/a" in text


def test_print_summary_lists_every_variant(sweep_run):
    console = Console(record=True, width=160)
    print_summary(sweep_run, console=console)
    text = console.export_text()
    assert "offset" in text and "no_offset" in text and "revenue / round" in text
    assert "t-interval over 3 seeds" in text


def test_load_run_names_what_is_missing(tmp_path, sweep_run):
    with pytest.raises(FileNotFoundError, match="run_dir"):
        load_run(tmp_path / "absent")
    (tmp_path / "empty").mkdir()
    with pytest.raises(RunDataError, match="rounds"):
        load_run(tmp_path / "empty")
    broken = tmp_path / "broken"
    broken.mkdir()
    _read(sweep_run, "rounds").drop(columns=["revenue"]).to_parquet(broken / "rounds.parquet")
    _read(sweep_run, "advertisers").to_parquet(broken / "advertisers.parquet")
    with pytest.raises(RunDataError, match="revenue"):
        load_run(broken)
