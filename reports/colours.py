"""One colour per advertiser, shared by the figures (lines) and the HTML replies (<mark> tints)."""

from __future__ import annotations

import seaborn as sns

from reports.data import RunData

RGB = tuple[float, float, float]


def advertiser_names(data: RunData) -> list[str]:
    """Advertisers in the order the run wrote them (first appearance in the advertisers table)."""
    return [str(n) for n in dict.fromkeys(data.advertisers["advertiser"])]


def advertiser_colours(names: list[str]) -> dict[str, RGB]:
    """tab10 up to 10 advertisers, tab20 up to 20, husl beyond (distinct, never recycled)."""
    palette = "tab10" if len(names) <= 10 else ("tab20" if len(names) <= 20 else "husl")
    return dict(zip(names, sns.color_palette(palette, len(names)), strict=True))


def tint(colour: RGB, strength: float = 0.4) -> str:
    """``colour`` mixed with white (``strength`` of the colour) as #rrggbb: a highlighter
    background that keeps black text readable."""
    mixed = (round(255 * (1 - strength + strength * c)) for c in colour)
    return "#" + "".join(f"{v:02x}" for v in mixed)
