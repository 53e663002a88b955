"""The prompt templates say what the paper says, and parse back to what they were built from."""

from hypothesis import given
from hypothesis import strategies as st

from market.prompts import (
    REFERENCE_SYSTEM,
    Brand,
    advertiser_prompt,
    context_prompt,
    parse_prompt,
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


def test_parse_recovers_role_and_brands():
    assert parse_prompt(reference_prompt(QUERY)).role == "reference"
    parsed = parse_prompt(advertiser_prompt(QUERY, MUSIC))
    assert (parsed.role, parsed.brands, parsed.query) == ("advertiser", (MUSIC,), QUERY)
    parsed = parse_prompt(context_prompt(QUERY, [MUSIC, TUNE]))
    assert (parsed.role, parsed.brands) == ("context", (MUSIC, TUNE))


names = st.from_regex(r"[A-Z][A-Za-z0-9]{2,12}", fullmatch=True)
descriptions = st.lists(
    st.sampled_from(["selling", "offering", "shoes", "and", "gear", "for", "who", "music", "a"]),
    min_size=1,
    max_size=8,
).map(" ".join)


@given(st.lists(st.tuples(names, descriptions), min_size=1, max_size=12, unique_by=lambda t: t[0]))
def test_context_prompt_round_trips_any_listing(items):
    brands = [Brand(n, d) for n, d in items]
    assert parse_prompt(context_prompt(QUERY, brands)).brands == tuple(brands)
