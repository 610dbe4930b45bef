"""A voice profile: measured features of sample prose plus a short description.

Measured: sentence length (mean and spread), dialogue share, point of view, tense, and
diction (word length, long-word share, lexical variety, contractions). The draft and
revision prompts carry the profile (``voice`` in their material); :func:`chapter_drift`
says how far a chapter's prose is from it, for the scorecard.
"""

from __future__ import annotations

import json
import math
import os
import re
import statistics
from collections.abc import Iterable
from pathlib import Path
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field

from .. import _artefacts as a
from .._errors import ManuscriptError
from ._text import person, sentences, tense

__all__ = [
    "VOICE",
    "VoiceFeatures",
    "VoiceProfile",
    "chapter_drift",
    "measure",
    "read_voice",
    "voice_profile",
    "write_voice",
]

VOICE = "00-voice.json"  # under artefacts/
SAMPLE_WORDS = 40_000  # a voice is measured on at most about this many words
VARIETY_WINDOW = 2000  # words: lexical variety is measured over windows of this size
_WORD = re.compile(r"[A-Za-z][A-Za-z'’-]*")
_QUOTED = re.compile(r"“[^”]*”|\"[^\"]*\"")
_CONTRACTION = re.compile(r"\b\w+['’](?:t|s|re|ve|ll|d|m)\b", re.IGNORECASE)


class VoiceFeatures(BaseModel):
    model_config = ConfigDict(extra="forbid")

    words: int = Field(ge=0)
    sentence_words: float = Field(ge=0, description="Mean words per sentence.")
    sentence_spread: float = Field(ge=0, description="Standard deviation of sentence length.")
    dialogue_share: float = Field(ge=0, le=1, description="Share of words inside quotation marks.")
    pov: str
    tense: Literal["past", "present"]
    word_letters: float = Field(ge=0, description="Mean letters per word.")
    long_word_share: float = Field(ge=0, le=1, description="Share of words of 9+ letters.")
    variety: float = Field(ge=0, le=1, description="Distinct words per word, per 2,000 words.")
    contractions: float = Field(ge=0, description="Contractions per 100 words.")


class VoiceProfile(BaseModel):
    model_config = ConfigDict(extra="forbid")

    source: list[str] = Field(description="Where the samples came from.")
    features: VoiceFeatures
    description: str


def measure(text: str) -> VoiceFeatures:
    words = _WORD.findall(text)
    if not words:
        raise ManuscriptError("a style sample has no words; give prose to take the voice from")
    lengths = [len(s.split()) for s in sentences(text)] or [len(words)]
    quoted = len(_WORD.findall(" ".join(_QUOTED.findall(text))))
    windows = [words[i : i + VARIETY_WINDOW] for i in range(0, len(words), VARIETY_WINDOW)]
    windows = [w for w in windows if len(w) >= min(VARIETY_WINDOW, len(words))]
    variety = statistics.fmean(len({x.lower() for x in w}) / len(w) for w in windows)
    return VoiceFeatures(
        words=len(words),
        sentence_words=round(sum(lengths) / len(lengths), 2),
        sentence_spread=round(statistics.pstdev(lengths), 2),
        dialogue_share=round(min(1.0, quoted / len(words)), 3),
        pov=person(text),
        tense="present" if tense(text) == "present" else "past",
        word_letters=round(sum(map(len, words)) / len(words), 2),
        long_word_share=round(sum(len(w) >= 9 for w in words) / len(words), 3),
        variety=round(variety, 3),
        contractions=round(100 * len(_CONTRACTION.findall(text)) / len(words), 2),
    )


def describe(f: VoiceFeatures) -> str:
    rhythm = "short" if f.sentence_words < 11 else "long" if f.sentence_words > 20 else "medium"
    spread = "varied" if f.sentence_spread > f.sentence_words * 0.6 else "even"
    talk = (
        "mostly dialogue"
        if f.dialogue_share > 0.5
        else "much dialogue"
        if f.dialogue_share > 0.25
        else "some dialogue"
        if f.dialogue_share > 0.08
        else "little dialogue"
    )
    diction = (
        "plain"
        if f.word_letters < 4.3 and f.long_word_share < 0.06
        else "elaborate"
        if f.word_letters > 4.8
        else "moderate"
    )
    tone = (
        "conversational, with contractions" if f.contractions > 1.0 else "formal, few contractions"
    )
    return (
        f"{f.pov.capitalize()}, {f.tense} tense. {rhythm.capitalize()}, {spread} sentences "
        f"(about {f.sentence_words:.0f} words); {talk} ({f.dialogue_share:.0%} of words); "
        f"{diction} diction ({f.word_letters:.1f} letters a word); {tone}."
    )


def _sample(texts: list[str], limit: int) -> str:
    """Whole paragraphs from the start of every text, about ``limit`` words in all: a long
    manuscript is measured on a spread of its chapters rather than read twice over."""
    share = max(200, limit // max(1, len(texts)))
    parts = []
    for text in texts:
        taken, words = [], 0
        for paragraph in text.split("\n\n"):
            if words >= share:
                break
            taken.append(paragraph)
            words += paragraph.count(" ") + 1
        parts.append("\n\n".join(taken))
    return "\n\n".join(parts)


def voice_profile(texts: Iterable[str], source: Iterable[str] = ()) -> VoiceProfile:
    """The voice of ``texts`` (sample passages, or an imported manuscript's chapters); past
    ``SAMPLE_WORDS`` words it is measured on paragraphs from the start of every text."""
    kept = [t.strip() for t in texts if t.strip()]
    total = sum(t.count(" ") + 1 for t in kept)
    joined = _sample(kept, SAMPLE_WORDS) if total > SAMPLE_WORDS else "\n\n".join(kept)
    features = measure(joined)
    return VoiceProfile(source=list(source), features=features, description=describe(features))


def profile_from_files(paths: Iterable[str | os.PathLike[str]]) -> VoiceProfile:
    """A profile from sample files (.md, .txt, .docx or .epub: their text, headings aside)."""
    from ._read import TEXT, read_source

    texts, names = [], []
    for path in paths:
        source = read_source(Path(path))
        texts.append("\n\n".join(b.text for b in source.blocks if b.kind == TEXT and not b.title))
        names.append(str(path))
    if not texts:
        raise ManuscriptError("style_samples is empty; give one or more files of sample prose")
    return voice_profile(texts, names)


def chapter_drift(profile: VoiceProfile, text: str) -> float:
    """How far ``text`` is from the voice: 0 is the same, about 1 a clearly different voice.

    The mean of each feature's relative difference (sentence length and spread, word length,
    contractions), absolute difference scaled to its usual range (dialogue share, long words,
    variety), and a full point for a different point of view or tense.
    """
    want, got = profile.features, measure(text)

    def relative(x: float, y: float) -> float:
        return min(1.0, abs(x - y) / max(abs(x), 1e-9)) if x or y else 0.0

    parts = [
        relative(want.sentence_words, got.sentence_words),
        relative(want.sentence_spread, got.sentence_spread),
        relative(want.word_letters, got.word_letters) * 4,
        min(1.0, abs(want.dialogue_share - got.dialogue_share) / 0.3),
        min(1.0, abs(want.long_word_share - got.long_word_share) / 0.08),
        min(1.0, abs(want.variety - got.variety) / 0.15),
        min(1.0, abs(want.contractions - got.contractions) / 2.0),
        float(want.pov != got.pov),
        float(want.tense != got.tense),
    ]
    return round(math.fsum(min(1.0, p) for p in parts) / len(parts), 3)


def write_voice(root: Path, profile: VoiceProfile) -> Path:
    path = root / "artefacts" / VOICE
    a.write_atomic(path, (profile.model_dump_json(indent=2) + "\n").encode("utf-8"))
    return path


def read_voice(root: str | Path) -> VoiceProfile | None:
    """The project's voice profile (``artefacts/00-voice.json``), or None."""
    path = Path(root) / "artefacts" / VOICE
    try:
        return VoiceProfile.model_validate(json.loads(path.read_text(encoding="utf-8")))
    except FileNotFoundError:
        return None
    except (json.JSONDecodeError, ValueError) as exc:
        raise ManuscriptError(f"{path} is not a voice profile ({exc}); fix or delete it") from None
