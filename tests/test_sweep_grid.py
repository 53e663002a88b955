"""Sweep grids: parsing like ``--set``, the cartesian product, seeds, and one line per bad key,
value or cell (no simulation here; tests/test_sweep.py runs sweeps)."""

from __future__ import annotations

import math

import pytest
from hypothesis import given
from hypothesis import strategies as st

from market.sweep import Grid, SweepError, build_grid, job_seed, parse_grid_flag, read_grid_file
from market.sweep.folder import SweepFolder, cells_frame, key_column
from market.sweep.grid import format_value
from scenarios.paths import parse_override

SYNTHETIC = ["engine.type=synthetic"]


def test_values_are_parsed_like_set_values():
    axis = parse_grid_flag("mechanism.kwargs.tau=0.5,1,2")
    assert axis.key == "mechanism.kwargs.tau"
    assert axis.values == (0.5, 1, 2)
    assert parse_grid_flag("mechanism.kwargs.offset=true,false").values == (True, False)
    assert parse_grid_flag("engine={type: synthetic},{type: hf}").values == (
        {"type": "synthetic"},
        {"type": "hf"},
    )
    for text in ("0.25", "true", "synthetic", "[a, b]", "{k: 1}", "'0.5'"):
        (value,) = parse_grid_flag(f"x.y={text}").values
        assert value == parse_override(f"x.y={text}").value


@given(
    st.one_of(
        st.integers(),
        st.floats(allow_nan=False),
        st.booleans(),
        st.text(min_size=1, max_size=20).filter(lambda s: s.strip() == s and "\x00" not in s),
    )
)
def test_a_formatted_value_reads_back_as_itself(value):
    text = format_value(value)
    (parsed,) = parse_grid_flag(f"mechanism.kwargs.tau={text}").values  # inside a flow list
    assert parsed == value and type(parsed) is type(value)
    assert parse_override(f"mechanism.kwargs.tau={text}").value == value  # as a --set value


def test_cells_are_the_cartesian_product_first_key_slowest():
    grid = build_grid(["a.b=1,2", "c=x,y,z"])
    cells = grid.cells()
    assert len(cells) == 6
    assert [c.values for c in cells[:4]] == [
        {"a.b": 1, "c": "x"},
        {"a.b": 1, "c": "y"},
        {"a.b": 1, "c": "z"},
        {"a.b": 2, "c": "x"},
    ]
    assert [c.index for c in cells] == list(range(6))
    assert cells[1].label == "a.b=1, c=y"
    assert Grid.from_json(grid.to_json()) == grid


def test_a_grid_file_holds_the_same_grid_as_the_flags(tmp_path):
    path = tmp_path / "sweep.yaml"
    path.write_text("mechanism.kwargs.tau: [0.5, 1, 2]\nmechanism.kwargs.candidates: 8\n")
    from_file = build_grid(grid_file=path)
    from_flags = build_grid(["mechanism.kwargs.tau=0.5,1,2", "mechanism.kwargs.candidates=8"])
    assert [(a.key, a.values) for a in from_file.axes] == [
        (a.key, a.values) for a in from_flags.axes
    ]
    assert Grid.from_mapping({"mechanism.kwargs.tau": [0.5, 1, 2]}).axes[0].values == (0.5, 1, 2)


def test_validation_returns_every_cells_resolved_scenario():
    grid = build_grid(
        ["mechanism.kwargs.tau=0.5,2", "advertisers.catalog.policy.kwargs.cost=0,0.3"]
    )
    resolved = grid.validate("free_riding", SYNTHETIC)
    assert [
        (s.mechanism.kwargs["tau"], s.advertisers[0].policy.kwargs["cost"]) for s in resolved
    ] == [
        (0.5, 0),
        (0.5, 0.3),
        (2, 0),
        (2, 0.3),
    ]


def lines_of(call) -> tuple[str, ...]:
    with pytest.raises(SweepError) as caught:
        call()
    return caught.value.lines


def test_an_unknown_key_is_one_line_naming_it_and_the_fix():
    (line,) = lines_of(lambda: build_grid(["mechanism.kwargs.tua=1,2,3"]).validate("free_riding"))
    assert line.startswith("--grid mechanism.kwargs.tua: ")
    assert "did you mean 'tau'" in line
    (line,) = lines_of(lambda: build_grid(["mechanismx.kwargs.tau=1"]).validate("free_riding"))
    assert "unknown key" in line and "did you mean 'mechanism'" in line


def test_each_rejected_value_is_its_own_line():
    lines = lines_of(lambda: build_grid(["mechanism.kwargs.tau=0,1,-1"]).validate("free_riding"))
    assert [line.split(":")[0] for line in lines] == [
        "--grid mechanism.kwargs.tau=0",
        "--grid mechanism.kwargs.tau=-1",
    ]
    assert all("tau must be a finite number > 0" in line for line in lines)


def test_grid_file_errors_name_the_file(tmp_path):
    path = tmp_path / "sweep.yaml"
    path.write_text("mechanism.kwargs.tau: [1, -2]\n")
    (line,) = lines_of(lambda: build_grid(grid_file=path).validate("free_riding"))
    assert line.startswith(f"{path}: mechanism.kwargs.tau=-2: ")
    path.write_text("mechanism.kwargs.tau: [1]\nmechanism.kwargs.tau: [2]\n")
    assert "key given twice" in lines_of(lambda: read_grid_file(path))[0]
    path.write_text("- 1\n- 2\n")
    assert "must be a non-empty mapping" in lines_of(lambda: read_grid_file(path))[0]
    path.write_text("")
    assert "must be a non-empty mapping" in lines_of(lambda: read_grid_file(path))[0]


@pytest.mark.parametrize(
    ("flags", "needle"),
    [
        ([], "the grid is empty"),
        (["mechanism.kwargs.tau="], "no values"),
        (["mechanism.kwargs.tau"], "expected KEY=V1,V2"),
        (["seed=1,2"], "--seeds"),
        (["mechanism.kwargs.tau=1,1"], "given twice"),
        (["mechanism.kwargs.tau=1", "mechanism.kwargs.tau=2"], "key given twice"),
        (["mechanism..tau=1"], "bad path"),
    ],
)
def test_malformed_grids_are_one_line(flags, needle):
    (line,) = lines_of(lambda: build_grid(flags))
    assert needle in line


def test_a_key_the_variants_override_is_rejected_before_running():
    # free_riding's variants set mechanism.kwargs.offset: a grid over it would run twice the same
    (line,) = lines_of(
        lambda: build_grid(["mechanism.kwargs.offset=true,false"]).validate("free_riding")
    )
    assert "run the same market" in line and "mechanism.kwargs.offset" in line


def test_a_cell_that_fails_only_in_combination_is_named():
    # each value is fine on its own; the token auction has no `candidates`
    grid = build_grid(
        [
            "mechanism={type: mosaic, kwargs: {candidates: 4}},{type: token_auction}",
            "mechanism.kwargs.candidates=2,8",
        ]
    )
    lines = lines_of(lambda: grid.validate("demo", SYNTHETIC))
    assert len(lines) == 2
    for line, m in zip(lines, (2, 8), strict=True):
        cell = f"--grid cell mechanism={{type: token_auction}}, mechanism.kwargs.candidates={m}: "
        assert line.startswith(cell) and "candidates" in line.removeprefix(cell)


def test_seeds_depend_on_the_root_and_the_index_only():
    assert [job_seed(7, k) for k in range(3)] == [7, 8, 9]  # as `admarket sweep --seeds 3 --seed 7`

    def jobs(cells: int, seeds: int) -> list:
        manifest = {"root_seed": 7, "seeds": seeds, "cells": cells}
        return list(SweepFolder(path=None, manifest=manifest).jobs)

    small, large = jobs(1, 2), jobs(5, 4)
    assert [(j.seed_index, j.seed) for j in small] == [(0, 7), (1, 8)]
    for job in large:
        assert job.seed == job_seed(7, job.seed_index)
    assert len({j.name for j in large}) == 20


def test_key_columns_keep_plain_types_and_write_the_rest_as_yaml():
    assert key_column([0, 0.1]) == [0, 0.1]
    assert key_column([True, False]) == [True, False]
    assert key_column(["a", "b"]) == ["a", "b"]
    assert key_column([{"type": "hf"}, None]) == ["{type: hf}", "null"]
    assert key_column([1, "x"]) == ["1", "x"]
    grid = build_grid(["a=0,0.5", "b=true,false"])
    frame = cells_frame(grid, grid.cells())
    assert list(frame.columns) == ["cell", "label", "a", "b"]
    assert frame["a"].dtype == float and frame["b"].dtype == bool
    assert math.isclose(frame.loc[2, "a"], 0.5)
