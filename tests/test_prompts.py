"""Structured prompts: the paper's wording, the styles, the fields, and the one relevance."""

import subprocess
import sys

import pytest
from hypothesis import given
from hypothesis import strategies as st

from market.prompts import (
    PROMPT_STYLES,
    REFERENCE_SYSTEM,
    Brand,
    Prompt,
    Query,
    advertiser_prompt,
    context_prompt,
    is_relevant,
    listing_order,
    reference_prompt,
)

QUERY = "What are effective ways to learn a musical instrument online?"
MUSIC = Brand("MusicMastery", "offering online music lessons and virtual tutoring")
TUNE = Brand("InstaTune", "selling musical instruments and learning aids")


def test_templates_follow_the_paper_wording():
    assert reference_prompt(QUERY).system == REFERENCE_SYSTEM
    assert advertiser_prompt(QUERY, MUSIC).system == (
        "Answer the question advertising MusicMastery, "
        "offering online music lessons and virtual tutoring."
    )
    assert context_prompt(QUERY, [MUSIC, TUNE]).system == (
        "Answer the query. Try to mention MusicMastery, who offering online music lessons and "
        "virtual tutoring and InstaTune, who selling musical instruments and learning aids."
    )
    assert all(p.user == QUERY for p in (reference_prompt(QUERY), context_prompt(QUERY, [MUSIC])))


def test_context_prompt_without_entrants_is_the_reference_prompt():
    assert context_prompt(QUERY, []) == reference_prompt(QUERY)
    assert context_prompt(QUERY, [], "user") == reference_prompt(QUERY, "user")


def test_the_prompt_carries_role_query_and_brands_as_fields():
    assert reference_prompt(QUERY).role == "reference"
    prompt = advertiser_prompt(QUERY, MUSIC)
    assert (prompt.role, prompt.brands, prompt.query) == ("advertiser", (MUSIC,), Query(QUERY))
    prompt = context_prompt(Query(QUERY, "music"), [MUSIC, TUNE])
    assert (prompt.role, prompt.brands, prompt.query.topic) == ("context", (MUSIC, TUNE), "music")
    assert prompt.messages == (("system", prompt.system), ("user", QUERY))


def test_user_style_appends_the_instruction_to_the_query():
    context = context_prompt(QUERY, [MUSIC, TUNE], "user")
    assert context.system == REFERENCE_SYSTEM
    assert context.user == (
        f"{QUERY} In your answer, mention MusicMastery, who offering online music lessons and "
        "virtual tutoring and InstaTune, who selling musical instruments and learning aids."
    )
    advertiser = advertiser_prompt(QUERY, MUSIC, "user")
    assert advertiser.user == (
        f"{QUERY} In your answer, advertise MusicMastery, who offering online music lessons and "
        "virtual tutoring."
    )
    both = context_prompt(QUERY, [MUSIC], "both")
    assert both.system == context_prompt(QUERY, [MUSIC]).system
    assert both.user == context_prompt(QUERY, [MUSIC], "user").user


def test_named_style_asks_for_the_names_after_the_user_instruction():
    one = context_prompt(QUERY, [MUSIC], "named")
    assert one.system == REFERENCE_SYSTEM
    assert one.user == (
        f"{context_prompt(QUERY, [MUSIC], 'user').user} Write the name MusicMastery in your answer."
    )
    two = context_prompt(QUERY, [MUSIC, TUNE], "named")
    assert two.user.endswith(
        "InstaTune, who selling musical instruments and learning aids. "
        "Write the names MusicMastery and InstaTune in your answer."
    )
    advertiser = advertiser_prompt(QUERY, MUSIC, "named")
    assert advertiser.user == (
        f"{QUERY} In your answer, advertise MusicMastery, who offering online music lessons and "
        "virtual tutoring. Write the name MusicMastery in your answer."
    )


@pytest.mark.parametrize("style", list(PROMPT_STYLES))
def test_the_reference_prompt_is_the_bare_query_in_every_style(style):
    prompt = reference_prompt(QUERY, style)
    assert prompt.messages == (("system", REFERENCE_SYSTEM), ("user", QUERY))


def test_malformed_prompts_are_rejected():
    with pytest.raises(ValueError, match="role"):
        Prompt("narrator", Query(QUERY))
    with pytest.raises(ValueError, match="exactly one brand"):
        Prompt("advertiser", Query(QUERY), (MUSIC, TUNE))
    with pytest.raises(ValueError, match="no brand"):
        Prompt("reference", Query(QUERY), (MUSIC,))
    with pytest.raises(ValueError, match="at least one brand"):
        Prompt("context", Query(QUERY), ())
    with pytest.raises(ValueError, match="prompt style must be one of system, user, both"):
        reference_prompt(QUERY, "shouting")
    with pytest.raises(TypeError, match="Brand objects"):
        Prompt("context", Query(QUERY), ("MusicMastery",))
    with pytest.raises(TypeError, match="topic"):
        Query(QUERY, "")


def test_relevance_has_one_definition():
    assert is_relevant(("music", "education"), "music")
    assert not is_relevant(("music",), "cooking")
    assert not is_relevant(("music",), None)
    assert Brand("MusicMastery", "lessons", ("music",)).is_relevant_to(Query(QUERY, "music"))
    assert not MUSIC.is_relevant_to(Query(QUERY, "music"))  # a brand of unknown topics


def test_the_prompt_layer_imports_nothing_from_the_project():
    code = (
        "import sys, market.prompts; "
        "sys.exit(1 if any(m.startswith(('market.engines', 'agents', 'scenarios', 'torch')) "
        "for m in sys.modules) else 0)"
    )
    assert subprocess.run([sys.executable, "-c", code], check=False).returncode == 0


names = st.from_regex(r"[A-Z][A-Za-z0-9]{2,12}", fullmatch=True)
descriptions = st.lists(
    st.sampled_from(
        [
            "selling",
            "offering",
            "shoes",
            "and",
            "gear",
            "for",
            "who",
            "music",
            "a",
            ",",
            "Answer the question advertising",
            "Try to mention",
            "In your answer, mention",
            ".",
            "\n",
        ]
    ),
    min_size=1,
    max_size=8,
).map(" ".join)


@given(
    st.lists(st.tuples(names, descriptions), min_size=1, max_size=12, unique_by=lambda t: t[0]),
    st.sampled_from(list(PROMPT_STYLES)),
)
def test_any_listing_is_carried_exactly_and_rendered_in_order(items, style):
    """Descriptions that imitate the template are just text: nothing is parsed back from it."""
    brands = [Brand(n, d) for n, d in items]
    prompt = context_prompt(QUERY, brands, style)
    assert prompt.brands == tuple(brands)
    instruction = prompt.system if style == "system" else prompt.user
    positions = [instruction.index(f"{b.name}, who ") for b in brands]
    assert positions == sorted(positions)


@given(
    topics=st.lists(st.sampled_from(["music", "cooking", "travel"]), min_size=1, max_size=8),
    listing=st.sampled_from(["entry", "shuffled", "relevance"]),
    data=st.data(),
)
def test_a_listing_order_is_a_permutation_and_relevance_lists_relevant_brands_first(
    topics, listing, data
):
    brands = [Brand(f"B{i}", "selling things", (t,)) for i, t in enumerate(topics)]
    permutation = data.draw(st.permutations(range(len(brands))))
    query = Query("How can I learn to play the guitar?", "music")
    order = listing_order(brands, query, listing, permutation)
    assert sorted(b.name for b in order) == sorted(b.name for b in brands)
    if listing == "entry":
        assert order == tuple(brands)
    elif listing == "shuffled":
        assert order == tuple(brands[i] for i in permutation)
    else:
        flags = [b.is_relevant_to(query) for b in order]
        assert flags == sorted(flags, reverse=True)
        shuffled = [brands[i] for i in permutation]
        for group in (True, False):
            assert [b for b in order if b.is_relevant_to(query) is group] == [
                b for b in shuffled if b.is_relevant_to(query) is group
            ]
