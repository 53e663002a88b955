"""The paper-replication study: exact π_r on the synthetic engine, nested candidates, figures."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from market.auction import run_round
from market.engines.base import SamplingParams
from market.engines.nested import NestedCandidates
from market.engines.synthetic import SyntheticEngine
from market.mechanisms import MosaicMechanism
from market.prompts import advertiser_prompt, context_prompt, reference_prompt
from market.replicate import main
from market.runfolder import read_table
from market.studies.replication import default_m_grid, resolve, study_instances
from reports.gain import IR_TOLERANCE
from scenarios import load_scenario

FIGURES = {
    "fig1a_logprob",
    "fig1b_normalized_reward",
    "fig2_revenue",
    "fig3_usefulness",
    "fig4_utility_gain",
    "raw_utility",
    "fig5_6_gain_vs_contribution",
    "fig7_pearson",
    "tv_convergence",
}


@pytest.fixture(scope="module")
def tiny(tmp_path_factory):
    out = tmp_path_factory.mktemp("replication")
    assert main(["--queries", "2", "--seeds", "2", "--m", "1", "4", "--out", str(out)]) == 0
    return out


def test_tiny_replication_writes_every_figure(tiny):
    for name in FIGURES:
        png = tiny / "figures" / f"{name}.png"
        assert png.stat().st_size > 5000, name
        assert f'src="figures/{name}.png"' in (tiny / "replication.html").read_text()
    instances = pd.read_parquet(tiny / "instances.parquet")
    assert len(instances) == 2 * 2 * 2 * 2  # queries × seeds × generators × M
    assert set(instances["M"]) == {1, 4}
    assert set(instances["generator"]) == {"context", "baseline"}


def test_tables_csv_has_one_gain_row_per_generator_m_and_offset(tiny):
    """Issue 8 item 1: the gain table, one row per generator × M × offset, naming its
    counterfactual; the same layout for the counterfactual absent from the prompt."""
    for name, counterfactual in (
        ("tables.csv", "same_candidates"),
        ("tables_absent_from_prompt.csv", "absent_from_prompt"),
    ):
        table = pd.read_csv(tiny / name)
        for column in (
            "generator", "M", "offset", "n", "utility_gain_mean", "utility_gain_min",
            "pearson_gain_contribution", "slope_gain_contribution", "r2_gain_contribution",
        ):  # fmt: skip
            assert column in table.columns, (name, column)
        assert set(table["counterfactual"]) == {counterfactual}
        assert len(table) == 2 * 2 * 2  # generators × M × offset
        assert not table.duplicated(["generator", "M", "offset"]).any()
        assert (table["n"] == 2 * 2 * 2).all()  # queries × seeds × advertisers

    advertisers = read_table(tiny, "advertisers")
    table = pd.read_csv(tiny / "tables.csv").set_index(["generator", "M", "offset"])
    part = advertisers[(advertisers["generator"] == "context") & (advertisers["M"] == 4)]
    gain = part["utility_offset"] - part["expected_reward_without"]
    row = table.loc[("context", 4, True)]
    assert row["utility_gain_mean"] == pytest.approx(gain.mean(), rel=1e-12)
    assert row["utility_gain_min"] == pytest.approx(gain.min(), rel=1e-12)
    r = np.corrcoef(part["contribution"], gain)[0, 1]
    assert row["pearson_gain_contribution"] == pytest.approx(r, rel=1e-9)
    assert row["r2_gain_contribution"] == pytest.approx(r * r, rel=1e-9)
    raw = table.loc[("context", 4, False), "utility_mean"]
    assert raw == pytest.approx(part["utility_no_offset"].mean(), rel=1e-12)


def test_ir_holds_on_every_recorded_instance_with_the_offset(tiny):
    """Sec. 5.3.1: with the offset the gain over the same candidates is τ·log E_β[e^{r/τ}] −
    E_β[r] ≥ 0 (Jensen), for every advertiser of every recorded instance, generator and M; the
    gain columns are utility − the reward she gets when out."""
    advertisers = read_table(tiny, "advertisers")
    assert (advertisers["utility_gain_offset"] >= -IR_TOLERANCE).all()
    np.testing.assert_allclose(
        advertisers["utility_gain_offset"],
        advertisers["utility_offset"] - advertisers["expected_reward_without"],
        rtol=1e-12,
        atol=1e-12,
    )
    np.testing.assert_allclose(
        advertisers["utility_gain_no_offset_absent_prompt"],
        advertisers["utility_no_offset"] - advertisers["expected_reward_absent_prompt"],
        rtol=1e-12,
        atol=1e-12,
    )
    checks = pd.read_csv(tiny / "checks.csv")
    ir = checks[checks["claim"].str.contains("IR")]
    assert not ir.empty and ir["claim"].str.contains("gain").all()
    same = ir[ir["claim"].str.contains("same_candidates")]
    assert (same["holds"] == "yes").all()


def test_absent_from_prompt_regenerates_the_candidates_without_her(tiny):
    """The counterfactual of Fig. 1b's normalisation: π_con lists only the other advertiser, the
    candidates are drawn with the round's engine seed and only the other one bids; her reward is
    that allocation applied to her rewards. Checked against `run_round` on that market; under the
    reference generator the candidates do not change, so it equals eq. 15's same-candidates
    reward."""
    config = resolve("paper_replication", n_queries=2, n_seeds=2, m_grid=(1, 4))
    instance = config.instances[0]
    engine = SyntheticEngine(instance.catalog(), **config.scenario.engine.kwargs)
    seed = int(
        np.random.SeedSequence([config.scenario.seed, instance.index, 1]).generate_state(1)[0]
    )
    advertisers = read_table(tiny, "advertisers")
    mine = advertisers[
        (advertisers["instance"] == instance.index)
        & (advertisers["seed"] == 1)
        & (advertisers["M"] == 4)
    ]
    for k, bidder in enumerate(instance.bidders()):
        other = instance.bidders()[1 - k]
        outcome = run_round(
            engine,
            MosaicMechanism(generator="context", candidates=4),
            instance.query,
            [other],
            config.settings.sampling,
            seed=seed,
            rng=np.random.default_rng(0),
        )
        log_ref, log_her = engine.score(
            [reference_prompt(instance.query), advertiser_prompt(instance.query, bidder.brand)],
            outcome.candidates,
        )
        expected = float(outcome.allocation @ (bidder.value * (log_her - log_ref)))
        row = mine[(mine["generator"] == "context") & (mine["advertiser"] == bidder.brand.name)]
        assert row["expected_reward_absent_prompt"].iloc[0] == pytest.approx(expected, rel=1e-9)
    baseline = advertisers[advertisers["generator"] == "baseline"]
    np.testing.assert_allclose(
        baseline["expected_reward_absent_prompt"], baseline["expected_reward_without"], rtol=1e-12
    )
    context = advertisers[(advertisers["generator"] == "context") & (advertisers["M"] == 4)]
    assert not np.allclose(
        context["expected_reward_absent_prompt"], context["expected_reward_without"]
    )


def test_exact_log_pi_r_matches_a_direct_computation(tiny):
    """π_r(y) = π_ref(y)·exp(Σ_i r_i(y)) / Z over the enumerated support (eq. 17, τ = 1)."""
    scenario = load_scenario("paper_replication")
    instance = study_instances(scenario, 2)[0]
    engine = SyntheticEngine(instance.catalog(), **scenario.engine.kwargs)
    query = instance.query
    support = engine.enumerate_support(reference_prompt(query))
    prompts = [reference_prompt(query)] + [advertiser_prompt(query, b) for b in instance.brands]
    log_ref, *log_ads = engine.score_support(prompts, support)
    total = sum(log_ad - log_ref for log_ad in log_ads)
    log_pi_r = log_ref + total - np.logaddexp.reduce(log_ref + total)
    index = {ids: k for k, ids in enumerate(support.token_ids)}

    candidates = pd.read_parquet(tiny / "candidates.parquet")
    mine = candidates[candidates["instance"] == instance.index]
    expected = [log_pi_r[index[tuple(map(int, r.split()))]] for r in mine["reply"]]
    np.testing.assert_allclose(mine["log_pi_r"], expected, rtol=1e-10)

    optima = pd.read_parquet(tiny / "optima.parquet").set_index("instance")
    p = np.exp(log_pi_r)
    assert optima.loc[instance.index, "optimal_logp"] == pytest.approx(np.sum(p * log_pi_r))
    assert optima.loc[instance.index, "support_size"] == len(support.token_ids)

    rows = pd.read_parquet(tiny / "instances.parquet")
    for keys, part in mine.groupby(["seed", "generator", "M"]):
        row = rows[
            (rows["instance"] == instance.index)
            & (rows["seed"] == keys[0])
            & (rows["generator"] == keys[1])
            & (rows["M"] == keys[2])
        ].iloc[0]
        assert row["logp_optimal"] == pytest.approx(np.sum(part["allocation"] * part["log_pi_r"]))


def test_more_candidates_converge_faster_with_context(tmp_path):
    """Sec. 4.1, Thm. A.1, Fig. 1b: with top_p = 1 TV(π_r, π_M) falls towards 0, faster for π_con;
    under the study's top-p it stops at its floor; context normalized reward grows with M."""
    out = tmp_path / "shape"
    assert main(["--queries", "4", "--seeds", "8", "--m", "1", "16", "--out", str(out)]) == 0
    checks = pd.read_csv(out / "checks.csv").set_index("claim")
    for start in (
        "top_p = 1 (full support): TV(π_r, π_M) decreases towards 0",
        "top_p = 0.95: TV does not tend to 0 but to its floor",
        "context at M = 1 is closer to π_r (TV)",
        "log π_r of the returned reply tends to E_{π_r|S}[log π_r]",
        "context normalized reward grows with M and exceeds the baseline's",
    ):
        [claim] = [c for c in checks.index if c.startswith(start)]
        assert checks.loc[claim, "holds"] == "yes", claim


def test_the_convergence_table_is_exact_and_floored(tiny):
    """Fig. 1a's exact table: for every instance and generator, TV with top_p = 1 falls with M
    towards 0, TV under the study's top_p never goes below its floor 1 − π_r(S) and ends on it,
    and −H(π_r) is the optima table's E_{π_r}[log π_r]."""
    convergence = read_table(tiny, "convergence")
    optima = read_table(tiny, "optima").set_index("instance")
    assert set(convergence["sampler"]) == {"study", "top_p=1"}
    assert set(convergence["M"]) >= {1, 4, 4096}
    assert (convergence["mass_error"] < 1e-6).all()
    for (instance, generator, sampler), part in convergence.groupby(
        ["instance", "generator", "sampler"]
    ):
        part = part.sort_values("M")
        tv = part["tv"].to_numpy()
        np.testing.assert_allclose(part["logp_optimal"], optima.loc[instance, "optimal_logp"])
        if sampler == "top_p=1":
            assert (part["tv_floor"] == 0).all()
            assert np.all(np.diff(tv) <= 1e-9) and tv[-1] < 0.5 * tv[0], (instance, generator)
        else:
            floor = part["tv_floor"].to_numpy()
            assert np.all(floor > 0)
            assert np.all(tv >= floor - part["mass_error"].to_numpy() - 1e-12)
            assert tv[-1] == pytest.approx(floor[-1], abs=1e-3)


class CountingEngine(SyntheticEngine):
    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self.calls = {"generate": 0, "score": 0}

    def generate(self, *args, **kwargs):
        self.calls["generate"] += 1
        return super().generate(*args, **kwargs)

    def score(self, *args, **kwargs):
        self.calls["score"] += 1
        return super().score(*args, **kwargs)


def test_nested_candidates_generate_and_score_once():
    instance = study_instances(load_scenario("paper_replication"), 1)[0]
    engine = CountingEngine(instance.catalog())
    nested = NestedCandidates(engine, m_max=8)
    sampling = SamplingParams()
    prompt = context_prompt(instance.query, list(instance.brands))
    [pool] = nested.generate([prompt], 8, sampling, seed=3)
    [first] = nested.generate([prompt], 3, sampling, seed=3)
    assert first == pool[:3]
    prompts = [reference_prompt(instance.query)] + [
        advertiser_prompt(instance.query, b) for b in instance.brands
    ]
    np.testing.assert_array_equal(nested.score(prompts, first), engine.score(prompts, pool)[:, :3])
    nested.score(prompts, pool[:5])
    assert engine.calls == {"generate": 1, "score": 2}  # the second direct score is the check's


def test_utility_without_offset_is_the_plain_rochet_mechanism():
    """Eq. 13: C_i = 0 changes only the payment, by C_i; run MOSAIC without offset to compare."""
    config = resolve("paper_replication", n_queries=1, n_seeds=1, m_grid=(4,))
    instance = config.instances[0]
    engine = SyntheticEngine(instance.catalog(), **config.scenario.engine.kwargs)
    results = {}
    for offset in (True, False):
        mechanism = MosaicMechanism(offset=offset, generator="context", candidates=4)
        outcome = run_round(
            engine,
            mechanism,
            instance.query,
            instance.bidders(),
            config.settings.sampling,
            seed=7,
            rng=np.random.default_rng(0),
        )
        results[offset] = outcome
    with_offset, without = results[True], results[False]
    np.testing.assert_allclose(without.utilities, with_offset.utilities - with_offset.offsets)
    np.testing.assert_allclose(without.payments, with_offset.payments + with_offset.offsets)


def test_instances_pair_two_relevant_advertisers_round_robin():
    scenario = load_scenario("paper_replication")
    instances = study_instances(scenario, 45)
    topics = [i.topic for i in instances[:10]]
    assert len(set(topics)) == 10  # the first ten cover every topic
    seen = set()
    for instance in instances:
        assert len(instance.brands) == 2 and instance.brands[0] != instance.brands[1]
        for brand in instance.brands:
            assert instance.topic in scenario.advertiser(brand.name).topics
        key = (instance.query, frozenset(b.name for b in instance.brands))
        assert key not in seen
        seen.add(key)
    with pytest.raises(ValueError, match="--queries must be between 1 and 90"):
        study_instances(scenario, 91)


def test_default_grid_and_bad_arguments(capsys):
    assert default_m_grid(16) == (1, 2, 4, 8, 16)
    assert default_m_grid(20) == (1, 2, 4, 8, 16, 20)
    assert default_m_grid(1) == (1,)
    assert main(["--queries", "0"]) == 2
    assert "--queries" in capsys.readouterr().err
    assert main(["--seeds", "0"]) == 2
    assert "--seeds" in capsys.readouterr().err


def test_a_study_too_small_for_a_fit_still_prints_its_claims(tmp_path, capsys):
    """Claims that cannot be checked (Pearson r of 2 points) print as n/a, not a crash."""
    assert main(["--queries", "1", "--seeds", "1", "--m", "1", "2", "--out", str(tmp_path)]) == 0
    assert "n/a" in capsys.readouterr().out
