"""Template prose for the offline backend: readable, varied, built from the chapter's material."""

from __future__ import annotations

import random
import re
from typing import Any

SCENE_BREAK = "* * *"

_OPEN = (
    "{place} was {weather} when {pov} arrived, and the {motif} was the first thing {pov_first} noticed.",
    "By the time {pov} reached {place}, the light had gone {light} and the street smelled of {smell}.",
    "{pov_first} had promised never to come back to {place}. {pron_cap} came back anyway.",
    "The {time} found {pov} at {place}, counting the reasons to leave and finding too few.",
    "Nobody at {place} looked up when {pov} came in, which was its own kind of welcome.",
    "It began, as these things did, with the {motif}, and with {other} waiting at {place}.",
)
_ACTION = (
    "{pov_first} set the {object} down on the table and waited for {other_first} to notice it.",
    "{other_first} crossed the room in three strides and stopped just short of touching the {object}.",
    "Outside, the {weather_noun} pressed against the windows as if it wanted to listen.",
    "{pov_first} turned the {motif} over in {pron_pos} hands, looking for the seam that would give.",
    "A door closed somewhere below them, and both of them pretended not to hear it.",
    "{other_first} laughed, short and without pleasure, and poured two cups that neither of them drank.",
    "The clock above the stove had stopped at a quarter past four; nobody had wound it in years.",
    "{pov_first} walked the length of {place} twice, memorising the cracks in the plaster.",
    "There was salt on the sill and a name scratched into the frame that {pov_first} did not recognise.",
    "{other_first} took out a folded paper, smoothed it flat, and slid it across without a word.",
    "Somewhere a radio was playing an old song about the sea, the words too faint to follow.",
    "{pov_first} counted to ten, the way {pron_pos} mother had taught {pron_obj}, and got as far as six.",
)
_INNER = (
    "{pov_first} thought about {goal_lc}, and about how little time was left to do it.",
    "It would have been easier to lie. {pov_first} had always been good at the easy thing.",
    "What frightened {pov_first} was not {other_first}, but how much {pron} wanted {other_first} to be right.",
    "There was a version of this night where {pov_first} simply went home. {pron_cap} could almost see it.",
    "{pov_first} felt the old {emotion} rise, familiar as a coat, and did not take it off.",
    "Every answer so far had cost something, and {pov_first} was running out of things to spend.",
    "The {motif} meant something to {other_first}; {pov_first} could see it in the set of {other_pos} jaw.",
    "{pov_first} remembered the last winter at {place}, and the promise that had not been kept.",
)
_SAY = (
    "“{line},” {speaker} said.",
    "“{line},” said {speaker}, not looking up.",
    "{speaker} shook {spron_pos} head. “{line}.”",
    "“{line}?” {speaker} asked.",
    "{speaker} waited a long moment. “{line}.”",
)
_LINES = (
    "You already know what this is", "I kept it because nobody else would",
    "Tell me what happened at {place}", "It isn't yours to give back", "Not tonight",
    "We said we would stop pretending", "You were there, weren't you", "Then show me",
    "I never asked you to protect me", "If we do this, there is no undoing it",
    "The {motif} was never the point", "Who else knows", "You should go before the tide turns",
    "I thought I could carry it alone", "Say it plainly, for once",
)
_TURN = (
    "That was when {conflict_lc}, and the room changed around them.",
    "It should have ended there. It did not, because {conflict_lc}.",
    "{pov_first} had one chance to {goal_verb}, and {pron} knew it.",
    "The argument circled, came back, and landed where it always did: {beat_lc}.",
)
_CLOSE = (
    "In the end it came to {outcome_lc}, and {pov_first} did not know yet whether that was enough.",
    "They left {place} separately, carrying {outcome_lc} between them like something breakable.",
    "Later, {pov_first} would remember only this: {outcome_lc}, and the {motif} cold in {pron_pos} hand.",
    "It was {outcome_lc}. It was not what {pov_first} had come for, but it was something.",
)
_FILL = {
    "weather": ("grey and quiet", "loud with rain", "bright and windless", "wrapped in fog", "bitter cold"),
    "weather_noun": ("rain", "fog", "wind", "dark", "sleet"),
    "light": ("thin and yellow", "blue", "the colour of slate", "amber"),
    "smell": ("tar and seaweed", "wet stone", "burnt sugar", "diesel and salt"),
    "time": ("morning", "evening", "small hours", "late afternoon"),
    "object": ("letter", "key", "photograph", "ledger", "compass", "ring", "map"),
    "emotion": ("anger", "shame", "longing", "fear", "stubbornness"),
}
_PRONOUNS = {
    "she": ("she", "her", "her"), "he": ("he", "him", "his"), "they": ("they", "them", "their"),
}
_FEMININE = {"Mara", "Ilse", "Nadia", "Juno", "Sefa", "Wren", "Pilar", "Hana", "Agnes", "Rosa"}


def _pronouns(name: str) -> tuple[str, str, str]:
    first = name.split()[0] if name else ""
    if first in _FEMININE:
        return _PRONOUNS["she"]
    if first in {"Cass", "Kit", "Eli"}:
        return _PRONOUNS["they"]
    return _PRONOUNS["he"]


def _lower_first(text: str) -> str:
    return text[:1].lower() + text[1:] if text else text


class _Writer:
    def __init__(self, ctx: dict[str, Any], rng: random.Random) -> None:
        self.rng = rng
        self.ctx = ctx
        self.motifs: list[str] = ctx.get("motifs") or ["letter"]
        self.recent: list[str] = []

    def fill(self, template: str, scene: dict[str, Any]) -> str:
        cast = scene["cast"]
        pov = cast[0]
        other = cast[1] if len(cast) > 1 else pov
        pron, obj, pos = _pronouns(pov)
        speaker = self.rng.choice(cast)
        values = {
            "pov": pov, "pov_first": pov.split()[0], "other": other, "other_first": other.split()[0],
            "pron": pron, "pron_cap": pron.capitalize(), "pron_obj": obj, "pron_pos": pos,
            "other_pos": _pronouns(other)[2], "place": scene["location"],
            "motif": self.rng.choice(self.motifs),
            "goal_lc": _lower_first(scene["goal"]),
            "goal_verb": "settle it" if "settle" in scene["goal"] else "change it",
            "conflict_lc": _lower_first(scene["conflict"]),
            "outcome_lc": _lower_first(scene["outcome"]),
            "beat_lc": _lower_first(scene["beat"]),
            "speaker": speaker.split()[0], "spron_pos": _pronouns(speaker)[2],
        }
        for key, options in _FILL.items():
            values[key] = self.rng.choice(options)
        values["line"] = self.rng.choice(_LINES).format(**values)
        return template.format(**values)

    def pick(self, pool: tuple[str, ...], scene: dict[str, Any]) -> str:
        # avoid reusing a template within the last few picks, so the prose does not loop
        for _ in range(6):
            template = self.rng.choice(pool)
            if template not in self.recent:
                break
        self.recent = (self.recent + [template])[-12:]
        return self.fill(template, scene)

    def scene(self, scene: dict[str, Any], budget: int, first: bool) -> str:
        paragraphs: list[str] = []
        words = 0
        opening = self.pick(_OPEN, scene)
        if first and self.ctx.get("previous_ending"):
            opening = "The night before still clung to everything. " + opening
        paragraphs.append(opening)
        words += _count(opening)
        turned = False
        while words < budget - 60:
            roll = self.rng.random()
            if roll < 0.35:
                sentences = [self.pick(_SAY, scene), self.pick(_ACTION, scene)]
            elif roll < 0.65:
                sentences = [self.pick(_ACTION, scene) for _ in range(self.rng.randint(2, 3))]
            else:
                sentences = [self.pick(_INNER, scene), self.pick(_ACTION, scene)]
            if not turned and words > budget / 2:
                sentences.append(self.pick(_TURN, scene))
                turned = True
            paragraph = " ".join(sentences)
            paragraphs.append(paragraph)
            words += _count(paragraph)
        closing = self.pick(_CLOSE, scene)
        paragraphs.append(closing)
        return "\n\n".join(paragraphs)


def _count(text: str) -> int:
    return len(re.findall(r"[\w'’-]+", text))


def write_chapter(ctx: dict[str, Any], rng: random.Random, *, target: int) -> str:
    """A chapter of roughly ``target`` words, scene by scene, separated by scene breaks."""
    scenes: list[dict[str, Any]] = ctx["scenes"]
    writer = _Writer(ctx, rng)
    budget = max(60, target // max(1, len(scenes)))
    parts = [writer.scene(scene, budget, first=i == 0) for i, scene in enumerate(scenes)]
    text = f"\n\n{SCENE_BREAK}\n\n".join(parts)
    return _trim_to(text, target)


def _trim_to(text: str, target: int) -> str:
    """Drop whole sentences from the longest paragraphs until within 3% of ``target``."""
    words = _count(text)
    if words <= target * 1.03:
        return text
    paragraphs = text.split("\n\n")
    while _count("\n\n".join(paragraphs)) > target * 1.03:
        longest = max(range(len(paragraphs)), key=lambda i: _count(paragraphs[i]))
        sentences = re.split(r"(?<=[.!?”])\s+", paragraphs[longest])
        if len(sentences) < 2:
            break
        paragraphs[longest] = " ".join(sentences[:-1])
    return "\n\n".join(paragraphs)
