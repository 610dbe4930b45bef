"""The offline prose generator: deterministic, on length, varied, and built from the material."""

from __future__ import annotations

import random
import re
from typing import Any

import pytest

from novelkit import _artefacts as a
from novelkit._motifs import motifs
from novelkit.llm import _offline_words as words
from novelkit.llm import offline
from novelkit.llm._prose import SCENE_BREAK, write_chapter
from novelkit.stages.continuity import check_chapter
from novelkit.stages.finishing import repeated_ngram_share
from novelkit.stages.writing import remove_repeats

PREMISE = "A lighthouse keeper finds a letter from her drowned brother."
CAST = [
    {
        "name": "Rosa Delane",
        "role": "protagonist",
        "voice": "quiet, then suddenly blunt",
        "status": "alive",
    },
    {"name": "Eli Marsh", "role": "mentor", "voice": "warm, full of questions", "status": "alive"},
    {
        "name": "Bram Hollis",
        "role": "antagonist",
        "voice": "formal, careful with words",
        "status": "alive",
    },
    {
        "name": "Oren Blackwood",
        "role": "rival",
        "voice": "quick, funny, deflecting",
        "status": "alive",
    },
]
PLACES = ["Iron Street", "Harbor Row", "Reed Gate", "Gray Yard", "Salt Hill"]
BEATS = [
    "Rosa Delane finds the lighthouse",
    "Bram Hollis warns Rosa Delane off",
    "a promise is made",
    "Rosa Delane follows the trail to Reed Gate",
    "an ally wavers",
    "the midpoint reversal",
    "Rosa Delane confronts Bram Hollis",
    "the town chooses",
    "a quiet new morning",
]
OUTCOMES = ["a hard-won answer", "a new question", "a loss", "a truce"]


def _ctx(chapter: int, target: int, scenes: int | None = None) -> dict[str, Any]:
    """Material shaped like the offline planning stages make it."""
    rng = random.Random(chapter)
    beat = BEATS[(chapter - 1) % len(BEATS)]
    count = scenes or (2 if target < 1500 else 3)
    pov = CAST[0]["name"]
    scene_list = []
    for i in range(1, count + 1):
        companion = CAST[1 + (chapter + i) % 3]["name"]
        scene_list.append(
            {
                "number": i,
                "goal": f"{pov} wants to settle {beat}",
                "conflict": f"{companion} stands in the way",
                "outcome": rng.choice(OUTCOMES),
                "location": PLACES[(chapter + i) % len(PLACES)],
                "cast": [pov, companion],
                "beat": beat if i % 2 else f"{pov} pays a price at {PLACES[chapter % len(PLACES)]}",
            }
        )
    return {
        "unit": f"ch{chapter:02d}",
        "scenes": scene_list,
        "cast": CAST,
        "motifs": motifs(PREMISE),
        "previous_ending": "" if chapter == 1 else "the end of the last chapter",
        "target_words": target,
    }


def _bible() -> tuple[a.Cast, a.World]:
    """Every name and place the offline backend can invent: the widest net for the checks."""
    cast = a.Cast(
        characters=[
            a.Character(name=name, role="ally", description="", goal="", flaw="", arc="", voice="")
            for name in words.FIRST_NAMES
        ]
    )
    world = a.World(
        setting="",
        era="",
        locations=[
            a.Location(name=f"{x} {y}", description="")
            for x in words.PLACE_FIRST
            for y in words.PLACE_SECOND
        ],
    )
    return cast, world


def test_same_seed_same_text_and_different_seed_different_text() -> None:
    ctx = _ctx(3, 2000)
    first = write_chapter(ctx, random.Random(7), target=2000)
    assert write_chapter(ctx, random.Random(7), target=2000) == first
    assert write_chapter(ctx, random.Random(8), target=2000) != first


@pytest.mark.parametrize("target", [300, 1000, 2000, 5000])
def test_length_within_tolerance_even_after_polish(target: int) -> None:
    for chapter in range(1, 7):
        text = write_chapter(_ctx(chapter, target), random.Random(chapter * 31), target=target)
        words = a.count_words(text)
        assert abs(words - target) <= 0.05 * target, (chapter, words)
        polished = remove_repeats(offline.respond("polish", {"text": text}, seed=1))
        assert abs(a.count_words(polished) - target) <= 0.10 * target, (
            chapter,
            a.count_words(polished),
        )
        assert polished == text  # nothing repeated for the polish stage to drop


def test_repeated_12gram_share_is_low_across_a_long_manuscript() -> None:
    texts = [
        write_chapter(_ctx(chapter, 2000), random.Random(1000 + chapter), target=2000)
        for chapter in range(1, 25)
    ]
    assert repeated_ngram_share(texts) < 0.03


def test_uses_cast_locations_and_motifs() -> None:
    ctx = _ctx(2, 2000)
    text = write_chapter(ctx, random.Random(3), target=2000)
    parts = text.split(f"\n\n{SCENE_BREAK}\n\n")
    assert len(parts) == len(ctx["scenes"])
    for part, scene in zip(parts, ctx["scenes"], strict=True):
        pov, other = (name.split()[0] for name in scene["cast"])
        assert pov in part and other in part
        assert scene["location"] in part
        first_name = re.search(r"\b(Rosa|Eli|Bram|Oren)\b", part)
        assert first_name is not None and first_name.group(1) == pov  # the POV comes first
    assert any(m in text for m in ctx["motifs"])
    assert "“" in text and "”" in text  # there is dialogue


@pytest.mark.parametrize("target", [300, 2000])
def test_format_scene_breaks_and_no_template_slots(target: int) -> None:
    ctx = _ctx(4, target)
    text = write_chapter(ctx, random.Random(5), target=target)
    assert text.count(SCENE_BREAK) == len(ctx["scenes"]) - 1
    assert f"\n\n{SCENE_BREAK}\n\n" in text
    for mark in "{}[]#":
        assert mark not in text
    assert "  " not in text and "\n\n\n" not in text
    assert "lorem" not in text.lower()
    for paragraph in text.split("\n\n"):
        assert paragraph == paragraph.strip()
        assert paragraph == SCENE_BREAK or paragraph[0].isupper() or paragraph[0] == "“"


def test_continuity_checks_find_nothing_to_flag() -> None:
    cast, world = _bible()
    for chapter in range(1, 13):
        text = write_chapter(_ctx(chapter, 2000), random.Random(chapter), target=2000)
        findings = check_chapter(chapter, text, cast, world)
        assert findings == [], [f.explanation for f in findings]


def test_pronouns_follow_the_character() -> None:
    text = write_chapter(_ctx(1, 5000), random.Random(11), target=5000)
    for name in ("Eli",):  # Eli is "they": never "Eli ... his" in one short action
        assert not re.search(rf"\b{name} (?:\w+ ){{1,3}}(?:his|her) (?:hands|jaw|arms)\b", text)
    assert not re.search(r"\bRosa (?:\w+ ){1,3}his\b", text)


def test_motifs_are_nouns() -> None:
    found = motifs(PREMISE)
    assert found[:4] == ["lighthouse", "keeper", "letter", "brother"]
    assert "drowned" not in found and "finds" not in found
    widow = motifs(
        "A grieving widow inherits a haunted bookshop in Paris and slowly uncovers "
        "her husband's secret life."
    )
    assert "widow" in widow and "bookshop" in widow
    assert not {"grieving", "haunted", "slowly", "inherits", "uncovers", "paris"} & set(widow)
    assert motifs("He runs.") == ["letter", "lamp", "river"]
    assert motifs("The wedding ring was lost at sea.") == ["wedding", "ring"]


def test_no_drowned_object_in_the_offline_pipeline(tmp_path: Any) -> None:
    import novelkit as nk

    project = nk.new_project(tmp_path / "p", premise=PREMISE, chapters=4, words_per_chapter=1000)
    project.start().wait()
    report = project.report()
    assert report is not None
    assert all(c.within_tolerance for c in report.chapters)
    assert report.open_findings == []
    manuscript = (tmp_path / "p" / "artefacts" / "12-manuscript.md").read_text(encoding="utf-8")
    assert "the drowned" not in manuscript
