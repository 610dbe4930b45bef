"""The scorecard as Markdown (report.md) and as HTML (the page, and the notebook display).

Charts come in as a mapping name → SVG text (inlined) or file name (linked, ``*.svg``).
Every piece of text from the book is escaped: a chapter may hold anything.
"""

from __future__ import annotations

import base64
import html
from collections.abc import Mapping
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from .scorecard import Scorecard

__all__ = ["chart_source", "escape", "html_fragment", "html_page", "markdown"]


def _who(card: Scorecard) -> str:
    models = ", ".join(card.models)
    if not card.backend:  # the assemble stage's report: see project.report()
        return ""
    if not models:
        return "No model call is recorded: the text was written or imported by hand."
    if card.placeholder:
        return (
            "Written by the offline backend: placeholder prose for trying the pipeline, "
            "not a model's writing. Its figures say nothing about a real model."
        )
    return f"Written by the {card.backend or 'unknown'} backend ({models})."


def markdown(card: Scorecard, charts: Mapping[str, str]) -> str:
    from .charts import TITLES

    who = _who(card)
    lines = [f"# Report: {card.title}", "", card.headline(), ""] + ([f"_{who}_", ""] if who else [])
    if card.problems:
        lines += ["## Missing or unreadable", ""] + [f"- {p}" for p in card.problems] + [""]
    lines += ["## Issues", ""]
    if not card.issues:
        lines.append("None found.")
    for issue in card.issues:
        where = f" (chapters {', '.join(map(str, issue.chapters))})" if issue.chapters else ""
        evidence = f" — “{issue.evidence}”" if issue.evidence else ""
        lines.append(f"- **{issue.kind}**, {issue.severity}{where}: {issue.message}{evidence}")
    lines += [
        "",
        "## Book",
        "",
        f"- Words: {card.total_words:,} (target {card.target_words:,})",
        f"- Lexical diversity (MATTR, 500-word window): {card.mattr:.3f}",
        f"- Stock phrases: {card.slop_per_1k:.2f} per 1,000 words (list {card.slop_version})",
        f"- Dialogue share: {card.dialogue_share:.0%}",
        f"- Sentence-length spread (standard deviation, words): {card.sentence_spread:.1f}",
        f"- Readability (Flesch reading ease): {card.readability:.0f}",
        f"- Repeated 12-grams across the book: {card.repeated_12gram_share:.1%}",
        f"- Point of view and tense in the premise: {card.expected_pov or '?'}, "
        f"{card.expected_tense or '?'}",
    ]
    if card.judge is not None:
        score = card.judge.book_score
        lines.append(
            f"- LLM judge ({card.judge.model}, rubric {card.judge.rubric}): "
            + (f"{score:.1f}/10" if score is not None else "per chapter only")
        )
    lines += [
        "",
        "## Chapters",
        "",
        "| # | title | target | actual | within ±10% | tense | dialogue | MATTR | slop/1k "
        "| repeated 12-grams | seam | from |",
        "|---|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    for c in card.chapters:
        lines.append(
            f"| {c.chapter} | {c.title.replace('|', '/')} | {c.target_words} | {c.actual_words} "
            f"| {'yes' if c.within_tolerance else 'NO'} | {c.tense} | {c.dialogue_share:.0%} "
            f"| {c.mattr:.2f} | {c.slop_per_1k:.1f} | {c.repeated_ngram_share:.1%} "
            f"| {c.seam_overlap:.0%} | {c.source} |"
        )
    if card.presence:
        numbers = [c.chapter for c in card.chapters]
        lines += ["", "## Cast presence (mentions per chapter)", ""]
        lines.append("| character | " + " | ".join(map(str, numbers)) + " |")
        lines.append("|---|" + "---|" * len(numbers))
        for name, counts in card.presence.items():
            lines.append(f"| {name} | " + " | ".join(map(str, counts)) + " |")
    if charts:
        lines += ["", "## Charts", ""]
        for name, ref in charts.items():
            lines += [f"![{TITLES.get(name, name)}]({ref})", ""]
    lines += ["", "## Open continuity findings", ""]
    if not card.open_findings:
        lines.append("None.")
    for f in card.open_findings:
        lines.append(
            f"- Chapter {f.chapter} ({f.kind}, {f.severity}): {f.explanation}. "
            f"Quote: “{f.quote}” — {f.bible_entry}"
        )
    return "\n".join(lines) + "\n"


_CSS = """
.nk-report{font-family:system-ui,-apple-system,Segoe UI,sans-serif;font-size:14px;color:#222;max-width:60em}
.nk-report table{border-collapse:collapse;margin:.5em 0}
.nk-report td,.nk-report th{border:1px solid #ddd;padding:2px 6px;text-align:left}
.nk-report .bad{color:#b33}.nk-report .note{background:#fff4d6;padding:.4em .6em;border-radius:4px}
.nk-report figure{margin:.5em 0}.nk-report figure svg,.nk-report figure img{max-width:100%;height:auto}
"""


def escape(text: object) -> str:
    return html.escape(str(text), quote=True)


def chart_source(chart: str) -> str:
    """An <img> source for a chart: a file name or data URI as given; SVG text as a data URI
    (inlined <svg> elements would share matplotlib's element ids, and a sanitiser may strip
    them)."""
    if chart.lstrip().startswith("<"):
        return "data:image/svg+xml;base64," + base64.b64encode(chart.encode()).decode("ascii")
    return chart


def html_fragment(card: Scorecard, charts: Mapping[str, str]) -> str:
    """The scorecard as an HTML block (the notebook display; the body of the page)."""
    from .charts import TITLES

    out = [f"<div class='nk-report'><style>{_CSS}</style>"]
    out.append(f"<h2>Report: {escape(card.title)}</h2><p>{escape(card.headline())}</p>")
    if _who(card):
        out.append(f"<p class='{'note' if card.placeholder else ''}'>{escape(_who(card))}</p>")
    if card.problems:
        out.append("<h3>Missing or unreadable</h3><ul>")
        out += [f"<li>{escape(p)}</li>" for p in card.problems]
        out.append("</ul>")
    out.append(f"<h3>Issues ({len(card.issues)})</h3>")
    if card.issues:
        out.append(
            "<table><tr><th>kind</th><th>severity</th><th>chapters</th><th>what</th>"
            "<th>evidence</th></tr>"
        )
        for i in card.issues:
            out.append(
                f"<tr><td>{escape(i.kind)}</td><td>{escape(i.severity)}</td>"
                f"<td>{escape(', '.join(map(str, i.chapters)))}</td><td>{escape(i.message)}</td>"
                f"<td>{escape(i.evidence)}</td></tr>"
            )
        out.append("</table>")
    else:
        out.append("<p>None found.</p>")
    for name, chart in charts.items():
        title = escape(TITLES.get(name, name))
        out.append(
            f"<figure data-chart='{escape(name)}'>"
            f"<img src='{escape(chart_source(chart))}' alt='{title}'></figure>"
        )
    out.append(
        "<h3>Chapters</h3><table><tr><th>#</th><th>title</th><th>target</th>"
        "<th>actual</th><th>tense</th><th>dialogue</th><th>MATTR</th><th>slop/1k</th>"
        "<th>repeated 12-grams</th><th>readability</th></tr>"
    )
    for c in card.chapters:
        bad = "" if c.within_tolerance else " class='bad'"
        out.append(
            f"<tr><td>{c.chapter}</td><td>{escape(c.title)}</td><td>{c.target_words}</td>"
            f"<td{bad}>{c.actual_words}</td><td>{escape(c.tense)}</td>"
            f"<td>{c.dialogue_share:.0%}</td><td>{c.mattr:.2f}</td><td>{c.slop_per_1k:.1f}</td>"
            f"<td>{c.repeated_ngram_share:.1%}</td><td>{c.readability:.0f}</td></tr>"
        )
    out.append("</table>")
    if card.judge is not None:
        out.append(
            f"<h3>LLM judge: {escape(card.judge.model)} ({escape(card.judge.rubric)})</h3><table>"
            "<tr><th>chapter</th><th>score /10</th><th>comment</th></tr>"
        )
        for r in card.judge.results:
            label = "book" if r.chapter == 0 else str(r.chapter)
            stale = " (text changed since)" if r.stale else ""
            out.append(
                f"<tr><td>{label}</td><td>{r.score:.1f}{stale}</td>"
                f"<td>{escape(r.comment)}</td></tr>"
            )
        out.append("</table>")
    out.append("</div>")
    return "".join(out)


def html_page(card: Scorecard, charts: Mapping[str, str]) -> str:
    return (
        "<!doctype html><html lang='en'><head><meta charset='utf-8'>"
        f"<title>Report: {escape(card.title)}</title>"
        "<meta name='viewport' content='width=device-width,initial-scale=1'></head><body>"
        + html_fragment(card, charts)
        + "</body></html>\n"
    )
