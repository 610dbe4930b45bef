"""Stages 7, 9, 10: draft (with length control and summaries), revision, polish."""

from __future__ import annotations

import bisect
import re
from collections.abc import Callable
from typing import Any

from .. import _artefacts as a
from .._answers import Shape, clean_prose
from .._errors import BackendError
from .._motifs import motifs
from .._pipeline import Outputs, Stage, unit_name
from .._runner import UnitContext
from ..imports._material import SERIES, VOICE, optional_material
from ..llm.base import Message, count_tokens
from .continuity import check_chapter
from .finishing import warm_report

TOLERANCE = 0.10
MAX_EXTENSIONS = 6  # requests to extend a short chapter (two in a row that add little stop)
MIN_ADDED = 20  # words an extension must add to count as progress
RECENT_SUMMARIES = 2
ENDING_WORDS = 150


def last_words(text: str, count: int) -> str:
    words = text.rsplit(None, count)  # splits from the end: the rest of the text stays whole
    return " ".join(words[1:] if len(words) > count else words)


def trim_to_length(text: str, target: int) -> str:
    """Cut a too-long chapter back at paragraph ends, never inside a scene's closing beat."""
    scenes = [s.split("\n\n") for s in text.split(f"\n\n{a.SCENE_BREAK}\n\n")]
    limit = int(target * (1 + TOLERANCE / 2))

    def total() -> int:
        return sum(a.count_words(p) for scene in scenes for p in scene)

    while total() > limit:
        longest = max(scenes, key=lambda s: sum(a.count_words(p) for p in s))
        if len(longest) <= 2:
            break
        del longest[-2]  # keep the scene's last paragraph: it lands the scene
    trimmed = f"\n\n{a.SCENE_BREAK}\n\n".join("\n\n".join(scene) for scene in scenes)
    if total() > limit:  # too few paragraphs to trim (a model that writes one long block)
        trimmed = _cut_at_sentence(trimmed, limit)
    return trimmed


def _cut_at_sentence(text: str, limit: int) -> str:
    """The text up to the last sentence end within ``limit`` words."""
    ends = [m.end() for m in a.WORD.finditer(text)]
    cut = 0
    for match in _SENTENCE_END.finditer(text):
        if bisect.bisect_right(ends, match.end()) > limit:
            break
        cut = match.end()
    return text[:cut].rstrip() if cut else text


class Draft(Stage):
    name = "draft"
    version = "2"  # instruction after the material; extended until long enough or stalled
    description = "First draft of each chapter, in order, plus a summary for the chapters after it."
    inputs = ("premise", "characters", "world", "chapters", "scenes")
    per_chapter = True
    parallel = False  # each chapter opens from the previous one's ending
    path = "07-draft/{ch}.md"
    extra_paths = ("07-draft/{ch}.summary.json",)
    model = a.ChapterText
    config_keys = ("style", "context_tokens")
    optional_inputs = (VOICE, SERIES)  # a voice profile, a sequel's book before
    prompt = (
        "Write chapter {unit} in {pov_style}, {tense} tense, in this style: {style}. Follow the "
        "scenes in order, separate scenes with a line '* * *', and write about {target_words} words. "
        "Open where the previous chapter's ending leaves off. Prose only, no headings."
    )

    def extra_inputs(self, unit: str) -> list[str]:
        chapter = int(unit[2:])
        if chapter <= 1:
            return []
        prev = unit_name(chapter - 1)
        return [self.output_paths(prev)[1]]

    def context(self, ctx: UnitContext, unit: str) -> dict[str, Any]:
        premise: a.Premise = ctx.read("premise", shared=True)
        cast: a.Cast = ctx.read("characters", shared=True)
        outline: a.Outline = ctx.read("chapters", shared=True)
        plan = outline.chapter(ctx.chapter)
        scenes: a.ChapterScenes = ctx.read("scenes", ctx.chapter, shared=True)
        present = {name for scene in scenes.scenes for name in scene.cast} | {plan.pov}
        summaries = []
        for prev in range(max(1, ctx.chapter - RECENT_SUMMARIES), ctx.chapter):
            if ctx.exists("draft", prev):
                summaries.append(
                    ctx.read("draft", prev, index=1, model=a.ChapterSummary, shared=True)
                )
        context: dict[str, Any] = {
            "unit": unit,
            "plan": plan.model_dump(),
            "scenes": [s.model_dump() for s in scenes.scenes],
            "cast": [
                {"name": c.name, "role": c.role, "voice": c.voice, "status": c.status}
                for c in cast.characters
                if c.name in present
            ],
            "motifs": motifs(premise.premise),
            "recent_summaries": [s.summary for s in summaries],
            "previous_ending": summaries[-1].ending if summaries else "",
            "style": ctx.config.style,
            "pov_style": premise.pov,
            "tense": premise.tense,
            "target_words": plan.target_words,
        }
        context.update(optional_material(ctx, self.optional_inputs))
        # bounded context: drop the oldest summaries first when the material is over budget
        while (
            count_tokens(str(context)) > ctx.config.context_tokens and context["recent_summaries"]
        ):
            context["recent_summaries"] = context["recent_summaries"][1:]
        return context

    async def run(self, ctx: UnitContext, unit: str) -> Outputs:
        context = self.context(ctx, unit)
        target = int(context["target_words"])
        text = end_on_sentence(await ctx.text("draft", context, expected_tokens=int(target * 1.4)))
        words = a.count_words(text)
        stalled = 0
        for _ in range(MAX_EXTENSIONS):
            if words >= target * (1 - TOLERANCE) or stalled == 2:
                break
            extend = {
                **context,
                "target_words": target - words,
                "so_far": last_words(text, ENDING_WORDS),
            }
            request = ctx.request(
                "extend",
                extend,
                instructions=(
                    "Follow-up: extend. The chapter so far ends with the 'so_far' text. Continue it "
                    "with about {target_words} more words of the same scenes; prose only."
                ),
            )
            more = end_on_sentence(clean_prose(await ctx.complete(request)))
            added = a.count_words(more)
            stalled = stalled + 1 if added < MIN_ADDED else 0
            if added:
                text = text.rstrip() + "\n\n" + more
                words += added
        if words < target * (1 - TOLERANCE):
            raise BackendError(
                f"stage 'draft' {unit}: the model wrote {words} of about {target} words, after "
                f"{MAX_EXTENSIONS} requests to extend it. Resume with another seed or a stronger "
                "model, or lower words_per_chapter in novel.toml"
            )
        if words > target * (1 + TOLERANCE):
            text = trim_to_length(text, target)
        plan = context["plan"]
        chapter = a.ChapterText(chapter=ctx.chapter, title=plan["title"], text=_clean(text))
        summary_context = {
            "unit": unit,
            "plan": plan,
            "scenes": context["scenes"],
            "ending": last_words(chapter.text, ENDING_WORDS),
        }
        shape = Shape(
            items={"characters": (0, 8)},
            fixed={"chapter": ctx.chapter, "ending": summary_context["ending"]},
        )
        summary = await ctx.json("summary", summary_context, a.ChapterSummary, shape)
        paths = self.output_paths(unit)
        return {paths[0]: chapter, paths[1]: summary}


_SENTENCE_END = re.compile(r"[.!?…][\"'”’)\]*_]*(?=\s|$)")


def end_on_sentence(text: str) -> str:
    """The text without a last sentence the model broke off mid-way (a chapter never ends on
    half a sentence); text with no sentence end at all is returned as it is."""
    text = text.rstrip()
    ends = list(_SENTENCE_END.finditer(text))
    if not ends or ends[-1].end() == len(text):
        return text
    return text[: ends[-1].end()]


def _clean(text: str) -> str:
    """Normalise scene breaks and blank lines; drop a heading the model added."""
    lines = [line for line in text.strip().splitlines() if not line.startswith("#")]
    text = "\n".join(lines)
    text = re.sub(r"\n\s*(\*\s*\*\s*\*|---+|#)\s*\n", f"\n\n{a.SCENE_BREAK}\n\n", text)
    return re.sub(r"\n{3,}", "\n\n", text).strip()


async def rewrite(
    ctx: UnitContext,
    task: str,
    context: dict[str, Any],
    source: a.ChapterText,
    tidy: Callable[[str], str] = str.strip,
) -> str:
    """A whole-chapter rewrite (revision, polish) that keeps the chapter whole.

    Models often return a rewrite cut short, or run on. One that runs long is trimmed at
    paragraph ends; one that comes back short is asked for again once with its length; if it
    is still short, the chapter is kept as it was and a notice says so.
    """
    target = ctx.read("chapters", shared=True).chapter(ctx.chapter).target_words
    low = min(source.words, target * (1 - TOLERANCE))  # in the band, or no shorter than before
    request = ctx.request(task, context)
    text = ""
    for _ in range(2):
        answer = await ctx.complete(request, expected_tokens=int(source.words * 1.4))
        text = tidy(_clean(end_on_sentence(clean_prose(answer))))
        if a.count_words(text) > target * (1 + TOLERANCE):
            text = trim_to_length(text, target)
        words = a.count_words(text)
        if words >= low:
            return text
        request = request.with_messages(
            Message("assistant", answer),
            Message(
                "user",
                f"Follow-up: whole. That has {words} words; the chapter has {source.words}. "
                "Return the whole chapter, every scene, at its full length; prose only.",
            ),
            task="whole",
        )
    ctx.notice(
        f"the {task} of chapter {ctx.chapter} came back at {a.count_words(text)} words for "
        f"{source.words}; the chapter is kept as it was"
    )
    return source.text


class Revision(Stage):
    name = "revision"
    version = "2"  # a rewrite cut short is asked again or not taken
    description = "Revise each chapter to resolve its continuity findings."
    inputs = ("draft", "continuity", "chapters")
    per_chapter = True
    parallel = True
    path = "09-revision/{ch}.md"
    model = a.ChapterText
    optional_inputs = (VOICE,)  # the voice profile, when the project has one
    prompt = (
        "Revise chapter {unit} to fix every finding listed in the material, changing as little "
        "as possible. Keep scene breaks ('* * *'). Return the whole chapter, prose only."
    )

    async def run(self, ctx: UnitContext, unit: str) -> Outputs:
        draft: a.ChapterText = ctx.read("draft", ctx.chapter)
        report: a.ContinuityReport = ctx.read("continuity", ctx.chapter)
        context = {
            "unit": unit,
            "chapter": ctx.chapter,
            "text": draft.text,
            "findings": [
                {
                    "kind": f.kind,
                    "quote": f.quote,
                    "explanation": f.explanation,
                    "wrong": f.wrong,
                    "right": f.right,
                }
                for f in report.findings
            ],
            **optional_material(ctx, self.optional_inputs),
        }
        text = await rewrite(ctx, "revision", context, draft)
        revised = a.ChapterText(chapter=ctx.chapter, title=draft.title, text=text)
        return {self.output_paths(unit)[0]: revised}


def remove_repeats(text: str) -> str:
    """Drop any sentence (of six or more words) that already appeared in the chapter."""
    seen: set[str] = set()
    out = []
    for paragraph in text.split("\n\n"):
        sentences = re.split(r"(?<=[.!?”])\s+", paragraph)
        kept = []
        for sentence in sentences:
            key = re.sub(r"\W+", " ", sentence.lower()).strip()
            if len(key.split()) >= 6 and key in seen:
                continue
            seen.add(key)
            kept.append(sentence)
        out.append(" ".join(kept) if kept else paragraph)
    return "\n\n".join(out)


class Polish(Stage):
    name = "polish"
    version = "3"  # a rewrite cut short is asked again or not taken; repeats out before that
    description = "Line edit each chapter; repeated sentences removed."
    # the cast and places are not in the prompt: they check the final text (see below)
    inputs = ("revision", "characters", "world", "chapters")
    per_chapter = True
    parallel = True
    path = "10-polish/{ch}.md"
    model = a.ChapterText
    prompt = (
        "Line-edit chapter {unit}: tighten sentences, vary rhythm, remove repeated phrases. Keep "
        "the content, names and scene breaks ('* * *'). Return the whole chapter, prose only."
    )

    async def run(self, ctx: UnitContext, unit: str) -> Outputs:
        revised: a.ChapterText = ctx.read("revision", ctx.chapter)
        context = {"unit": unit, "chapter": ctx.chapter, "text": revised.text}
        # repeated sentences go before the length is checked: a small model repeats itself
        text = await rewrite(ctx, "polish", context, revised, tidy=remove_repeats)
        polished = a.ChapterText(chapter=ctx.chapter, title=revised.title, text=text)
        # the report's figures for this chapter, worked out while other chapters are still
        # being written (and, for the last one, while the metadata is asked for)
        cast, world = ctx.read("characters", shared=True), ctx.read("world", shared=True)
        ctx.warm(warm_report, ctx.chapter, polished.text, cast, world)
        return {self.output_paths(unit)[0]: polished}


__all__ = ["Draft", "Polish", "Revision", "check_chapter", "remove_repeats", "trim_to_length"]
