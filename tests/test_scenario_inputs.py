"""Hostile and out-of-range scenario input (issue 11, items 4, 5, 6 and 9): one line naming the
file, the field and the fix, fast, and never a traceback or a huge message."""

from __future__ import annotations

import time

import pytest

from market.mechanisms import MAX_CANDIDATES, MAX_TOKENS
from scenarios import ScenarioError, load_scenario
from scenarios.loader import MAX_YAML_NODES
from scenarios.schema import MAX_ROUNDS, MAX_SEED

MINIMAL = """\
name: mini
description: a small market
rounds: 3
queries:
  - {text: "How can I learn to play the guitar?", topic: music}
advertisers:
  - {name: MusicMastery, description: offering online music lessons, topics: [music]}
  - {name: KitchenFix, description: producing kitchen appliances, topics: [cooking]}
"""


def error_of(*args) -> str:
    with pytest.raises(ScenarioError) as info:
        load_scenario(*args)
    message = str(info.value)
    assert "\n" not in message and " — " in message
    return message


def write(tmp_path, data: bytes | str, name: str = "scenario.yaml"):
    path = tmp_path / name
    path.write_bytes(data if isinstance(data, bytes) else data.encode())
    return path


# --- item 4: seeds must fit int64 ----------------------------------------------------------------


def test_seeds_beyond_int64_are_refused_at_validation():
    message = error_of("demo", [f"seed={2**63}"])
    assert ": seed: seed 9223372036854775808 does not fit in 64 bits" in message
    assert "int64" in message and "use a smaller seed" in message
    assert load_scenario("demo", [f"seed={MAX_SEED}"]).seed == 2**63 - 1


# --- item 5: files that are not UTF-8 text -------------------------------------------------------


@pytest.mark.parametrize(
    ("data", "problem"),
    [
        (MINIMAL.encode("utf-16"), "is UTF-16 text, not UTF-8"),
        (b"name: caf\xe9\n", "is not UTF-8 text (byte 0xe9 at offset 9)"),
        (b"\x89PNG\r\n\x1a\n\x00\x00\x00\rIHDR", "is a binary file (NUL bytes)"),
        (b"name: mini\x00\x00\x00\x01", "is a binary file (NUL bytes)"),
    ],
    ids=["utf-16", "latin-1", "png", "nul"],
)
def test_a_file_that_is_not_utf8_text_is_one_line(tmp_path, data, problem):
    path = write(tmp_path, data)
    message = error_of(path)
    assert message.startswith(f"{path}: file: ") and problem in message
    assert "save it as UTF-8 YAML" in message


# --- item 6: YAML alias bombs --------------------------------------------------------------------


def alias_bomb(levels: int = 9, width: int = 9) -> str:
    """The billion-laughs pattern inside one typed field: width**levels leaves under `rounds`."""
    lines = ["rounds:", f"  - &a0 [{', '.join(['lol'] * width)}]"]
    for level in range(1, levels):
        lines.append(f"  - &a{level} [{', '.join([f'*a{level - 1}'] * width)}]")
    return "\n".join(lines) + "\n"


def test_an_alias_bomb_in_a_typed_field_fails_fast(tmp_path):
    path = write(tmp_path, MINIMAL.replace("rounds: 3\n", alias_bomb()))
    start = time.perf_counter()
    message = error_of(path)
    elapsed = time.perf_counter() - start
    assert elapsed < 1.0, elapsed
    assert f"{path}: rounds: " in message and "aliases expand" in message
    assert f"{MAX_YAML_NODES:,}" in message and len(message) < 400


def test_an_alias_bomb_in_an_override_fails_fast():
    bomb = "[" + ", ".join(["&x [1, 2, 3, 4, 5, 6, 7, 8]"] + ["*x"] * 8) + "]"
    for level in range(6):
        bomb = "[" + ", ".join([f"&l{level} {bomb}"] + [f"*l{level}"] * 15) + "]"
    start = time.perf_counter()
    message = error_of("demo", [f"rounds={bomb}"])
    assert time.perf_counter() - start < 1.0
    assert "--set rounds=" in message and "aliases expand" in message and len(message) < 600


def test_a_recursive_alias_is_refused(tmp_path):
    path = write(tmp_path, MINIMAL.replace("rounds: 3\n", "rounds: &r [1, *r]\n"))
    assert f"{path}: rounds: " in error_of(path)
    assert "refers to itself" in error_of(path)


def test_deeply_nested_yaml_is_one_line(tmp_path):
    path = write(tmp_path, MINIMAL.replace("rounds: 3", "rounds: " + "[" * 1000 + "]" * 1000))
    assert f"{path}: file: the YAML is nested too deeply" in error_of(path)
    assert "nested too deeply" in error_of("demo", ["rounds=" + "[" * 1000 + "]" * 1000])


def test_shared_anchors_of_a_normal_size_still_work(tmp_path):
    text = MINIMAL.split("advertisers:")[0] + (
        "advertisers:\n"
        "  - {name: MusicMastery, description: offering music lessons, topics: &t [music],\n"
        "     policy: &p {type: threshold, kwargs: {cost: 0.1}}}\n"
        "  - {name: InstaTune, description: selling instruments, topics: *t, policy: *p}\n"
    )
    scenario = load_scenario(write(tmp_path, text))
    assert [a.policy.kwargs for a in scenario.advertisers] == [{"cost": 0.1}, {"cost": 0.1}]
    assert scenario.advertisers[1].topics == ["music"]


def test_a_large_value_in_a_typed_field_gives_a_short_message(tmp_path):
    nested = "[" + ", ".join(["[" + "7, " * 2_000 + "7]"] * 10) + "]"
    path = write(tmp_path, MINIMAL.replace("rounds: 3", f"rounds: {nested}"))
    message = error_of(path)
    assert f"{path}: rounds: Input should be a valid integer, got [[7, 7, 7, 7, ...]" in message
    assert len(message) < 300


# --- item 9: bounds and messages -----------------------------------------------------------------


def test_candidates_have_an_upper_bound():
    message = error_of("free_riding", ["mechanism.kwargs.candidates=1000000"])
    assert ": mechanism.kwargs.candidates: " in message
    assert f"candidates must be an integer in [1, {MAX_CANDIDATES}], got 1000000" in message
    assert "1/sqrt(M)" in message
    scenario = load_scenario("free_riding", [f"mechanism.kwargs.candidates={MAX_CANDIDATES}"])
    assert scenario.mechanism.kwargs["candidates"] == MAX_CANDIDATES


def test_rounds_and_reply_lengths_have_upper_bounds():
    message = error_of("demo", [f"rounds={MAX_ROUNDS + 1}"])
    assert ": rounds: rounds 10000001 is above the limit 10,000,000" in message
    assert "admarket sweep" in message
    assert load_scenario("demo", [f"rounds={MAX_ROUNDS}"]).rounds == MAX_ROUNDS
    message = error_of("demo", [f"sampling.max_new_tokens={MAX_TOKENS + 1}"])
    assert ": sampling.max_new_tokens: max_new_tokens 4097 is above the limit 4,096" in message
    message = error_of(
        "token_vs_mosaic", ["mechanism={type: token_auction, kwargs: {max_tokens: 5000}}"]
    )
    assert ": mechanism.kwargs.max_tokens: " in message and "[1, 4096]" in message


@pytest.mark.parametrize(
    ("override", "field"),
    [
        ("queries.0.text='   '", "queries.0.text"),
        ("queries.0.text='\t\n'", "queries.0.text"),
        ("queries.0.topic=' '", "queries.0.topic"),
        ("advertisers.0.description='  '", "advertisers.0.description"),
    ],
)
def test_whitespace_only_text_is_refused(override, field):
    message = error_of("demo", [override])
    assert f": {field}: is empty or only whitespace — " in message


@pytest.mark.parametrize("value", [".nan", ".inf", "0", "1.5", "-0.1"])
def test_top_p_must_be_a_number_in_the_unit_interval(value):
    message = error_of("demo", [f"sampling.top_p={value}"])
    assert ": sampling.top_p: top_p must be a number in (0, 1], got " in message
    assert "smaller value" not in message and "e.g. 0.95" in message


def test_watts_strogatz_k_gives_a_range_that_exists():
    two = error_of(
        "demo",
        [
            "advertisers=[{name: A, description: selling a, topics: [music]}, "
            "{name: B, description: selling b, topics: [music]}]",
            "network={type: watts_strogatz}",
        ],
    )
    assert ": network.kwargs.k: " in two and "[2, 1]" not in two
    assert "needs at least 3 advertisers" in two and "has 2" in two and "complete or ring" in two
    four = error_of("demo", ["network={type: watts_strogatz, kwargs: {k: 9}}"])
    assert "k (neighbors per node) must be an integer in [2, 3] for 4 advertisers, got 9" in four
    three = error_of(
        "demo",
        [
            "advertisers=[{catalog: {names: [InstaTune, ChordCraft, JetSaver]}}]",
            "network={type: watts_strogatz, kwargs: {k: 3}}",
        ],
    )
    assert "k (neighbors per node) must be 2 for 3 advertisers, got 3" in three


@pytest.mark.parametrize(
    "args",
    [
        ["run", "{bad}"],
        ["run", "demo", "--set", "engine.type=synthetic", "--seed", str(2**63)],
        ["run", "demo", "--set", "engine.type=synthetic", "--set", "sampling.top_p=.nan"],
    ],
    ids=["binary file", "seed", "top_p nan"],
)
def test_the_command_line_exits_2_with_one_line_and_writes_nothing(
    tmp_path, monkeypatch, capsys, args
):
    from market.cli import main

    monkeypatch.chdir(tmp_path)
    bad = write(tmp_path, b"\x89PNG\r\n\x1a\n\x00\x00", "bad.yaml")
    code = main([arg.format(bad=bad) for arg in args])
    err = capsys.readouterr().err
    assert code == 2 and "Traceback" not in err
    assert len([line for line in err.splitlines() if line.strip()]) == 1
    assert not (tmp_path / "runs").exists()
