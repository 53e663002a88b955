"""The HTML page skeleton shared by the run report and the replication report."""

from __future__ import annotations

import html
from string import Template

import pandas as pd

CSS = """
*, *::before, *::after { box-sizing: border-box; }
body { font-family: system-ui, sans-serif; max-width: 1200px; margin: 2em auto; color: #222;
       line-height: 1.45; padding: 0 1em; }
h1 { font-size: 1.6em; overflow-wrap: anywhere; }
h2 { margin-top: 2em; border-bottom: 1px solid #ccc; }
.table-wrap { max-width: 100%; overflow-x: auto; margin: 0.8em 0; }
table { border-collapse: collapse; font-size: 0.85em; }
th, td { border: 1px solid #ccc; padding: 0.25em 0.6em; text-align: right; }
td { white-space: nowrap; }
th { background: #f3f3f3; } td:first-child, th:first-child { text-align: left; }
figure { margin: 1.5em 0; max-width: 100%; }
figure img { max-width: 100%; height: auto; border: 1px solid #eee; }
figcaption { font-size: 0.9em; color: #444; max-width: 900px; }
pre { background: #f7f7f7; padding: 1em; overflow-x: auto; font-size: 0.8em; max-width: 100%; }
.note { color: #7a4b00; background: #fff6e5; padding: 0.4em 0.8em; border-left: 3px solid #e0a030; }
dl.meta { display: grid; grid-template-columns: max-content minmax(0, 1fr); gap: 0.2em 1em; }
dl.meta dt { font-weight: 600; } dl.meta dd { margin: 0; overflow-wrap: anywhere; }
.reply-card { border: 1px solid #ddd; border-radius: 4px; padding: 0.4em 1em 0.6em; margin: 1em 0; }
.reply-card h4 { margin: 0.4em 0; }
blockquote.reply { margin: 0.6em 0; padding: 0.5em 0.9em; background: #fafafa;
                   border-left: 3px solid #888; white-space: pre-wrap; overflow-wrap: anywhere; }
mark { padding: 0 0.15em; border-radius: 2px; color: inherit; }
"""

PAGE = Template(
    """<!DOCTYPE html>
<html lang="en">
<head>
<meta charset="utf-8">
<title>$title</title>
<style>$css</style>
</head>
<body>
<h1>$title</h1>
$body
</body>
</html>
"""
)


def page(title: str, body: str) -> str:
    """A complete HTML document; ``body`` is already-escaped HTML."""
    return PAGE.substitute(title=html.escape(title), css=CSS, body=body)


def table_html(frame: pd.DataFrame, *, digits: int = 3, index: bool = False) -> str:
    """A DataFrame as an escaped HTML table, floats with ``digits`` significant digits, in a
    sideways-scrolling box (`scroll_box`)."""
    return scroll_box(
        frame.to_html(
            index=index,
            escape=True,
            border=0,
            na_rep="n/a",
            float_format=lambda v: f"{v:.{digits}g}",
        )
    )


def scroll_box(table: str) -> str:
    """A table in a container that scrolls sideways by itself, so that a wide table never widens
    the page (the report has no horizontal scroll bar at 1400 px, tests/test_report_layout.py)."""
    return f'<div class="table-wrap">{table}</div>'


def meta_list(items: dict[str, object]) -> str:
    rows = "".join(
        f"<dt>{html.escape(str(k))}</dt><dd>{html.escape(str(v))}</dd>" for k, v in items.items()
    )
    return f'<dl class="meta">{rows}</dl>'


def notes_html(notes: list[str]) -> str:
    return "".join(f'<p class="note">{html.escape(n)}</p>' for n in notes)


def figure_html(src: str, caption: str, alt: str) -> str:
    return (
        f'<figure><img src="{html.escape(src)}" alt="{html.escape(alt)}">'
        f"<figcaption>{html.escape(caption)}</figcaption></figure>"
    )
