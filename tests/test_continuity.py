"""Deterministic continuity checks (stage 8) and the integrity report (stage 12)."""

from __future__ import annotations

import novelkit as nk
from novelkit import JobState
from novelkit.stages.continuity import check_chapter

CAST = nk.Cast(
    characters=[
        nk.Character(
            name="Mara Quill",
            role="protagonist",
            description="d",
            goal="g",
            flaw="f",
            arc="a",
            voice="v",
        ),
        nk.Character(
            name="Tomas Reyes",
            role="antagonist",
            description="d",
            goal="g",
            flaw="f",
            arc="a",
            voice="v",
            status="dead",
        ),
    ]
)
WORLD = nk.World(
    setting="s", era="e", locations=[nk.Location(name="Lantern Quay", description="d")]
)


def test_unknown_speaker_dead_character_and_spelling_variants_are_found() -> None:
    text = (
        "Mara walked to Lantern Quay. “Not tonight,” Bartholomew said. Tomas laughed at the window. "
        "Later, Marra found the key near Lanturn Quay."
    )
    findings = {f.kind: f for f in check_chapter(4, text, CAST, WORLD)}
    assert set(findings) == {"unknown-character", "dead-character-acts", "spelling"}
    unknown = findings["unknown-character"]
    assert unknown.chapter == 4 and "Bartholomew said" in unknown.quote
    assert unknown.bible_entry == "Cast: Mara Quill, Tomas Reyes"
    dead = findings["dead-character-acts"]
    assert (
        dead.quote == "Tomas laughed at the window."
        and dead.bible_entry == "Character: Tomas Reyes (status: dead)"
    )
    spelling = [f for f in check_chapter(4, text, CAST, WORLD) if f.kind == "spelling"]
    assert {(f.wrong, f.right) for f in spelling} == {("Marra", "Mara"), ("Lanturn", "Lantern")}
    assert {f.bible_entry for f in spelling} == {"Character: Mara Quill", "Location: Lantern Quay"}


def test_clean_text_has_no_findings() -> None:
    text = "Mara Quill walked to Lantern Quay. “Who else knows?” Mara asked. Nobody answered."
    assert check_chapter(1, text, CAST, WORLD) == []


def test_findings_flow_into_revision_and_the_report(project: nk.Project) -> None:
    assert project.start().wait(60) is JobState.SUCCEEDED
    draft = project.artefacts["draft"][2]
    cast = project.artefacts["characters"]
    first = cast.characters[0].name.split()[0]
    typo = first[0] + first[1] + first[1:]  # "Mara" → "Maara"
    draft.text = draft.text.replace(first, typo, 1)
    project.artefacts["draft"][2] = draft
    assert project.start().wait(60) is JobState.SUCCEEDED
    report = project.artefacts["continuity"][2]
    spelling = [f for f in report.findings if f.kind == "spelling"]
    assert spelling and spelling[0].wrong == typo and spelling[0].right == first
    assert typo not in project.artefacts["revision"][2].text, "revision applies the fix"
    final = project.report()
    assert final is not None and final.open_findings == []
