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
from market.studies.replication import default_m_grid, resolve, study_instances
from scenarios import load_scenario

FIGURES = {
    "fig1a_logprob",
    "fig1b_normalized_reward",
    "fig2_revenue",
    "fig3_usefulness",
    "fig4_utility",
    "fig5_6_utility_vs_contribution",
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
    """Theorem A.1 and Sec. 4.1: TV to π_r and the log π_r gap shrink with M, faster for π_con."""
    out = tmp_path / "shape"
    assert main(["--queries", "4", "--seeds", "8", "--m", "1", "16", "--out", str(out)]) == 0
    checks = pd.read_csv(out / "checks.csv").set_index("claim")
    assert checks.loc["distance to π_r (TV) shrinks with M, faster for context", "holds"] == "yes"
    gap = [c for c in checks.index if c.startswith("log π_r of the returned reply approaches")]
    assert checks.loc[gap[0], "holds"] == "yes"
    assert (
        checks.loc["context normalized reward grows with M and exceeds the baseline's", "holds"]
        == "yes"
    )


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
