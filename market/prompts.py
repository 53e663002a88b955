"""What an LLM is asked, as data: queries, brands, structured prompts, and relevance.

This is the bottom layer that auctions, agents, scenarios and every engine share (it imports
nothing from the project). A `Prompt` is structured — its role, the `Query`, the `Brand`s it names
and its style — and never parsed back from text: the synthetic engine reads its fields, the hf and
vLLM engines turn it into chat messages (`Prompt.messages`) and those through the model's chat
template (`market.engines.chat`). The wording follows the paper (App. C.1):

- reference π_ref(·|x): the user query alone, under a neutral system prompt, in every style;
- advertiser π_i: the reference model told to advertise one brand;
- context-aware π_con(·|x; c): told to mention every entrant, "<a1>, who <d1> and <a2>, who <d2>"
  (footnote 3): the more entrants, the more diluted the instruction.

Styles place the instruction (`PROMPT_STYLES`): ``system`` puts it in the system turn, exactly the
text of wave 1 (so its cached calls and results stay valid); ``user`` keeps the neutral system
turn and appends it to the query ("<query> In your answer, mention X, who ..."), so the prompts of
a round share the chat header and the query (an engine can reuse that prefix); ``both`` does
both; ``named`` is ``user`` followed by "Write the name X in your answer." Small models follow the user-turn instruction far more often; the measured mention rates
that choose the embedded model's default are in `market.engines.chat.EMBEDDED_PROMPT_STYLE`.

Relevance has one definition here, `is_relevant`: a brand is relevant to a query when the query's
topic is one of the brand's topics (an edge of the scenario's advertisers–topics graph).
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass

ROLES = ("reference", "advertiser", "context")

PROMPT_STYLES: dict[str, str] = {
    "system": "the instruction in the system turn, the query alone in the user turn (App. C.1)",
    "user": "a neutral system turn; the instruction appended to the query in the user turn",
    "both": "the instruction in the system turn and appended to the query in the user turn",
    "named": "as user, and the user turn also asks for the brand names written out",
}
_NEUTRAL_SYSTEM_STYLES = ("user", "named")

REFERENCE_SYSTEM = "You are a helpful assistant. Answer the user's question."

_BRANDS_OF_ROLE = {
    "reference": lambda k: k == 0,
    "advertiser": lambda k: k == 1,
    "context": lambda k: k >= 1,
}
_BRANDS_WANTED = {
    "reference": "no brand",
    "advertiser": "exactly one brand",
    "context": "at least one brand",
}


def is_relevant(topics: Iterable[str], topic: str | None) -> bool:
    """rel(b, x): whether the query topic ``topic`` is one of the brand's ``topics``.

    The one definition of relevance (the market's relevant/irrelevant split, the scenario's
    advertisers–topics graph and the synthetic engine's rel(b, x)). A query without a topic is
    relevant to no brand.
    """
    return topic is not None and topic in tuple(topics)


@dataclass(frozen=True)
class Query:
    """A user query x: its text and, when known, its topic (what makes a brand relevant)."""

    text: str
    topic: str | None = None

    def __post_init__(self) -> None:
        if not isinstance(self.text, str):
            raise TypeError(f"Query.text must be a str, got {type(self.text).__name__}")
        if self.topic is not None and (not isinstance(self.topic, str) or not self.topic):
            raise TypeError(f"Query.topic must be a non-empty str or None, got {self.topic!r}")


@dataclass(frozen=True)
class Brand:
    """An advertiser as the prompts see her: a name, a short description ("selling ...") and the
    topics she is relevant to (empty when unknown to the caller)."""

    name: str
    description: str
    topics: tuple[str, ...] = ()

    def __post_init__(self) -> None:
        if not isinstance(self.name, str) or not self.name.strip():
            raise ValueError(f"Brand.name must be a non-empty str, got {self.name!r}")
        if not isinstance(self.description, str):
            raise TypeError(
                f"Brand.description of {self.name} must be a str, got "
                f"{type(self.description).__name__}"
            )
        topics = (self.topics,) if isinstance(self.topics, str) else tuple(self.topics)
        if not all(isinstance(t, str) and t for t in topics):
            raise TypeError(f"Brand.topics of {self.name} must be topic names, got {self.topics!r}")
        object.__setattr__(self, "topics", topics)

    def is_relevant_to(self, query: Query) -> bool:
        """Whether this brand is relevant to ``query`` (`is_relevant`)."""
        return is_relevant(self.topics, query.topic)


@dataclass(frozen=True)
class Prompt:
    """A structured prompt: role ("reference", "advertiser", "context"), query, brands, style.

    A reference prompt names no brand, an advertiser prompt exactly one, a context prompt at least
    one (with none it is the reference prompt: build it with `context_prompt`). ``query`` may be
    given as a str (a query of unknown topic) and ``brands`` as any sequence.
    """

    role: str
    query: Query
    brands: tuple[Brand, ...] = ()
    style: str = "system"

    def __post_init__(self) -> None:
        if self.role not in _BRANDS_OF_ROLE:
            raise ValueError(f"Prompt.role must be one of {', '.join(ROLES)}, got {self.role!r}")
        if type(self.query) is not Query:
            object.__setattr__(self, "query", as_query(self.query))
        brands = self.brands
        if type(brands) is not tuple:
            if isinstance(brands, Brand) or not isinstance(brands, Sequence):
                raise TypeError(f"Prompt.brands must be a sequence of Brand, got {brands!r}")
            brands = tuple(brands)
            object.__setattr__(self, "brands", brands)
        for brand in brands:
            if not isinstance(brand, Brand):
                raise TypeError(f"Prompt.brands must hold Brand objects, got {brands!r}")
        if not _BRANDS_OF_ROLE[self.role](len(brands)):
            raise ValueError(
                f"a {self.role} prompt names {_BRANDS_WANTED[self.role]}, got {len(brands)}"
                + ("; with none use reference_prompt (context_prompt does)" if not brands else "")
            )
        if self.style not in PROMPT_STYLES:
            check_style(self.style)

    @property
    def messages(self) -> tuple[tuple[str, str], ...]:
        """The chat turns, ((role, content), ...): a system turn, then the user turn."""
        return (("system", self.system), ("user", self.user))

    @property
    def system(self) -> str:
        """The system turn's text."""
        if self.role == "reference" or self.style in _NEUTRAL_SYSTEM_STYLES:
            return REFERENCE_SYSTEM
        return _system_instruction(self.role, self.brands)

    @property
    def user(self) -> str:
        """The user turn's text: the query, followed by the instruction in the user-turn styles."""
        if self.role == "reference" or self.style == "system":
            return self.query.text
        instruction = _user_instruction(self.role, self.brands)
        if self.style == "named":
            instruction += f" {_name_request(self.brands)}"
        return f"{self.query.text} {instruction}"


def check_style(style: object) -> str:
    """``style`` if it names a prompt style, else a ValueError listing them."""
    if style not in PROMPT_STYLES:
        raise ValueError(f"prompt style must be one of {', '.join(PROMPT_STYLES)}, got {style!r}")
    return style  # type: ignore[return-value]


def as_query(query: Query | str) -> Query:
    """A `Query` from a Query or a bare text (a query of unknown topic)."""
    if isinstance(query, Query):
        return query
    if isinstance(query, str):
        return Query(query)
    raise TypeError(f"query must be a Query or a str, got {type(query).__name__}")


def reference_prompt(query: Query | str, style: str = "system") -> Prompt:
    """π_ref(·|x): the platform's reference LLM (the bare query in every style)."""
    return Prompt("reference", as_query(query), (), style)


def advertiser_prompt(query: Query | str, brand: Brand, style: str = "system") -> Prompt:
    """π_i(·|x): the reference model instructed to advertise one brand (App. C.1)."""
    return Prompt("advertiser", as_query(query), (brand,), style)


def context_prompt(query: Query | str, brands: Sequence[Brand], style: str = "system") -> Prompt:
    """π_con(·|x; c): the context-aware generator listing every entrant (footnote 3, App. C.1).

    With no entrants it is the reference prompt: there is nothing to mention.
    """
    if not brands:
        return reference_prompt(query, style)
    return Prompt("context", as_query(query), tuple(brands), style)


def listing_order(
    brands: Sequence[Brand], query: Query, listing: str, permutation: Sequence[int]
) -> tuple[Brand, ...]:
    """The entrants in the order π_con's prompt lists them.

    ``listing``: "entry" keeps ``brands`` as given (the advertisers' order); "shuffled" takes them
    in the order of ``permutation`` (a permutation of ``range(len(brands))`` the caller draws anew
    each round); "relevance" puts the brands relevant to ``query`` (`is_relevant`) first, each
    group in the order of ``permutation``. The order matters on a real LLM: small models name the
    first-listed brand far more often than the others (docs/prompts.md).
    """
    if listing == "entry":
        return tuple(brands)
    if sorted(permutation) != list(range(len(brands))):
        raise ValueError(f"permutation must order {len(brands)} brands, got {list(permutation)}")
    shuffled = [brands[i] for i in permutation]
    if listing == "shuffled":
        return tuple(shuffled)
    if listing == "relevance":
        relevant = [b for b in shuffled if b.is_relevant_to(query)]
        return tuple(relevant + [b for b in shuffled if not b.is_relevant_to(query)])
    raise ValueError(f"listing must be entry, shuffled or relevance, got {listing!r}")


# -- wording ------------------------------------------------------------------------------------


def _clean(description: str) -> str:
    return description.strip().rstrip(".")


def _listing(brands: tuple[Brand, ...]) -> str:
    parts = [f"{b.name}, who {_clean(b.description)}" for b in brands]
    return parts[0] if len(parts) == 1 else ", ".join(parts[:-1]) + " and " + parts[-1]


def _system_instruction(role: str, brands: tuple[Brand, ...]) -> str:
    if role == "advertiser":
        return f"Answer the question advertising {brands[0].name}, {_clean(brands[0].description)}."
    return f"Answer the query. Try to mention {_listing(brands)}."


def _user_instruction(role: str, brands: tuple[Brand, ...]) -> str:
    verb = "advertise" if role == "advertiser" else "mention"
    return f"In your answer, {verb} {_listing(brands)}."


def _name_request(brands: tuple[Brand, ...]) -> str:
    names = [b.name for b in brands]
    if len(names) == 1:
        return f"Write the name {names[0]} in your answer."
    return f"Write the names {', '.join(names[:-1])} and {names[-1]} in your answer."
