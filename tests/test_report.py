"""The scorecard (novelkit.report): each figure against a manuscript whose answer is known, the
files it writes, comparison, and what it says about a project that is incomplete or damaged."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import pytest
from _scorecard import CAST, CHAPTERS, PLANTED, REPEATED, planted_project, write_planted
from hypothesis import given, settings
from hypothesis import strategies as st

import novelkit as nk
from novelkit._artefacts import count_words
from novelkit.report import metrics, slop
from novelkit.report.cast import cast_presence

PREMISE = "A lighthouse keeper finds a letter from her drowned brother, dated after his death."
OLD_REPORT_KEYS = {
    "title",
    "total_words",
    "chapters",
    "repeated_12gram_share",
    "missing_chapters",
    "duplicated_chapters",
    "open_findings",
}


def snapshot(folder: Path) -> dict[str, bytes]:
    return {
        str(p.relative_to(folder)): p.read_bytes()
        for p in sorted(folder.rglob("*"))
        if p.is_file() and "report" not in p.relative_to(folder).parts
    }


# -- the planted manuscript ---------------------------------------------------------------------


def test_the_scorecard_finds_exactly_the_planted_faults(tmp_path: Path) -> None:
    card = planted_project(tmp_path / "p").report(save=False)

    assert {issue.kind for issue in card.issues} == PLANTED
    assert len(card.issues) == len(PLANTED)
    [repeated] = card.issues_of("repeated-paragraph")
    assert repeated.chapters == [1, 4] and repeated.evidence.startswith(REPEATED[:60])
    assert [(r.chapters, r.count) for r in card.repeated_paragraphs] == [([1, 4], 2)]
    [stray] = card.stray_names
    assert (stray.name, stray.chapters) == ("Corwin", [2])
    assert stray.quote.startswith("Corwin crossed the yard")
    [tense] = card.issues_of("tense")
    assert tense.chapters == [3] and "present" in tense.message
    assert [c.tense for c in card.chapters] == ["past", "past", "present", "past"]
    assert card.duplicate_titles == {"The Long Night": [2, 4]}
    assert [c.slop for c in card.chapters] == [{"a testament to": 1}, {}, {}, {}]
    assert card.slop_version == slop.VERSION


def test_what_the_planted_manuscript_does_not_have_is_not_reported(tmp_path: Path) -> None:
    card = planted_project(tmp_path / "p").report(save=False)

    assert all(c.within_tolerance and not c.cut_off for c in card.chapters)
    assert card.missing_chapters == [] and card.duplicated_chapters == []
    assert card.absent_cast == [] and card.aliases == []
    assert set(card.presence) == set(CAST)
    assert card.presence["Mara Quell"] == [0, 4, 1, 1]  # by first name; not in chapter 1
    assert all(c.person == "third" for c in card.chapters)
    assert card.repeated_chapter_openings == [] and card.repeated_openings == []
    assert [c.tension for c in card.chapters] == [2, 4, 6, 8]
    assert [a.chapters for a in card.acts] == [[1, 2], [3, 4]]
    assert not card.placeholder and card.models == []  # written by hand: no model call
    assert "No model call is recorded" in card.to_markdown()


def test_a_chapter_in_the_first_person_is_a_pov_fault(tmp_path: Path) -> None:
    chapters = dict(CHAPTERS)
    chapters[2] = (
        "The Ferry",
        "I kept the ferry office open past midnight because nobody had told me to close it. "
        "I heard the bell at the gate and I looked up from my ledger.\n\nMara Quell was my "
        "name then, and I was tired. I locked the door and sat with my lantern until dawn.",
    )
    write_planted(planted_project(tmp_path / "p").root, chapters=chapters)
    card = nk.open_project(tmp_path / "p").report(save=False)

    [pov] = card.issues_of("pov")
    assert pov.chapters == [2] and "first person" in pov.message
    assert card.expected_pov == "third person limited"


def test_cut_off_empty_and_duplicated_chapters(tmp_path: Path) -> None:
    chapters = dict(CHAPTERS)
    chapters[2] = (CHAPTERS[2][0], CHAPTERS[2][1].rsplit(".", 1)[0] + " and then the")
    chapters[3] = ("The Crossing", CHAPTERS[1][1])  # chapter 1's text again
    project = planted_project(tmp_path / "p")
    write_planted(project.root, chapters=chapters)
    (project.root / "artefacts" / "10-polish" / "ch04.md").write_text("# The Long Night\n\n")
    card = project.report(save=False)

    [cut] = card.issues_of("cut-off")
    assert cut.chapters == [2] and cut.evidence.endswith("and then the")
    [duplicate] = card.issues_of("duplicated-chapter")
    assert duplicate.chapters == [1, 3] and card.duplicated_chapters == [3]
    [empty] = card.issues_of("empty-chapter")
    assert empty.chapters == [4]
    assert card.chapters[3].actual_words == 0


# -- figures with a known answer -----------------------------------------------------------------


def test_mattr_is_the_mean_type_token_ratio_of_every_window() -> None:
    assert metrics.mattr(["a", "b", "a", "b"], window=2) == 1.0
    assert metrics.mattr(["a", "b", "a", "b"], window=3) == round(2 / 3, 4)
    assert metrics.mattr(["a", "a", "a"], window=500) == round(1 / 3, 4)  # shorter: plain TTR
    assert metrics.mattr([]) == 0.0


@settings(deadline=None)  # a loaded CI machine must not fail a correct answer for its speed
@given(
    tokens=st.lists(st.sampled_from("abcdefg"), max_size=60),
    window=st.integers(min_value=1, max_value=20),
)
def test_mattr_matches_the_definition(tokens: list[str], window: int) -> None:
    if len(tokens) <= window:
        expected = len(set(tokens)) / len(tokens) if tokens else 0.0
    else:
        ratios = [
            len(set(tokens[i : i + window])) / window for i in range(len(tokens) - window + 1)
        ]
        expected = sum(ratios) / len(ratios)
    assert metrics.mattr(tokens, window) == round(expected, 4)


def test_a_chapters_words_are_the_words_the_report_always_counted() -> None:
    text = "İstanbul's well-known ferry—“Don’t,” said Ana_B. 42 gulls; ok?"
    assert metrics.chapter_figures(text).words == count_words(text) == 9


def test_readability_dialogue_and_sentence_spread() -> None:
    # 6 words, 1 sentence, 6 syllables: 206.835 - 1.015*6 - 84.6*1
    assert metrics.flesch_reading_ease("The cat sat on the mat.") == 116.1
    assert metrics.dialogue_share("“Go home,” she said.") == 0.5
    assert metrics.sentence_lengths("One two three. One.\n\nOne two.") == [3, 1, 2]
    figures = metrics.chapter_figures("One two three. One.\n\nOne two.")
    assert figures.sentence_mean == 2.0 and figures.sentence_spread == 0.82


def test_tense_person_seam_and_cut_off() -> None:
    past = "She walked to the door. He said nothing. She turned and looked. It was late."
    present = "She walks to the door. He says nothing. She turns and looks. It is late."
    assert metrics.tense_of(past)[0] == "past" and metrics.tense_of(present)[0] == "present"
    speech = "“I am here,” she said. “It is late, it is.” She was tired and she was cold. She turned; he looked away."
    assert metrics.tense_of(speech) == ("past", 1.0)  # what is said aloud does not count
    assert (
        metrics.person_of("I went home and my mother met me at the gate. I was glad I came.")
        == "first"
    )
    assert (
        metrics.seam_overlap("the rain came in off the sea", "the rain came in off the sea") == 1.0
    )
    assert metrics.seam_overlap("the rain came in", "a dry morning followed it") == 0.0
    assert metrics.looks_cut_off("He walked to the") and not metrics.looks_cut_off("He left.")


def test_slop_counts_listed_phrases_once_with_curly_apostrophes() -> None:
    text = "She couldn’t help but smile. It was a testament to the tapestry of a symphony of rain."
    assert slop.slop_hits(text) == {
        "couldn't help but": 1,
        "a testament to": 1,
        "tapestry": 1,
        "a symphony of": 1,
    }
    assert slop.slop_hits("A plain sentence about a boat.") == {}


def test_cast_aliases_and_names_that_only_open_sentences() -> None:
    chapters = [(1, "Rain ran down the glass. Maara said nothing. Ines turned to Maara.")]
    found = cast_presence(chapters, ["Ines Varga", "Mara Quell", "Mara Dune"])
    assert found.stray == []  # "Rain" opens a sentence only; "Maara" is a spelling of Mara
    reasons = {tuple(alias.names): alias.reason for alias in found.aliases}
    assert ("Maara", "Mara Quell") in reasons
    assert ("Mara Quell", "Mara Dune") in reasons


# -- files, old readers and incomplete projects -------------------------------------------------


def test_report_writes_its_files_and_keeps_the_old_report_keys(tmp_path: Path) -> None:
    project = nk.new_project(tmp_path / "p", premise=PREMISE, chapters=3, words_per_chapter=300)
    assert project.start().wait(60) is nk.JobState.SUCCEEDED
    saved = json.loads((project.root / "artefacts" / "report.json").read_text())
    assert OLD_REPORT_KEYS <= set(saved)
    assert {"chapter", "title", "target_words", "actual_words", "within_tolerance"} <= set(
        saved["chapters"][0]
    )
    assert "slop" in project.status().table()

    card = project.report(charts=False)
    folder = project.root / "artefacts" / "report"
    assert sorted(p.name for p in folder.iterdir()) == ["index.html", "report.md", "scorecard.json"]
    assert json.loads((folder / "scorecard.json").read_text())["total_words"] == card.total_words
    assert "placeholder prose" in (folder / "index.html").read_text()
    assert card.placeholder and "offline" in card.models
    assert [c.tension for c in card.chapters] == [6, 10, 6]  # the offline plan carries tension


def test_a_first_format_report_json_still_reads(tmp_path: Path) -> None:
    project = nk.new_project(tmp_path / "p", premise=PREMISE, chapters=3)
    old = {
        "title": "Old",
        "total_words": 10,
        "chapters": [
            {
                "chapter": 1,
                "title": "A",
                "target_words": 10,
                "actual_words": 10,
                "within_tolerance": True,
            }
        ],
        "repeated_12gram_share": 0.0,
        "missing_chapters": [],
        "duplicated_chapters": [],
        "open_findings": [],
    }
    (project.root / "artefacts" / "report.json").write_text(json.dumps(old))
    saved = project.last_report()
    assert saved is not None and saved.headline() == nk.Report.model_validate(old).headline()


def test_a_project_without_a_manuscript_gets_the_scorecard_of_what_exists(tmp_path: Path) -> None:
    project = nk.new_project(tmp_path / "p", premise=PREMISE, chapters=3)
    before = snapshot(project.root / "artefacts")
    card = project.report(charts=False)

    assert card.chapters == [] and card.total_words == 0
    assert card.missing_chapters == [1, 2, 3]  # novel.toml plans three
    assert {i.kind for i in card.issues} == {"missing-chapter"}
    assert any("no chapter plan yet" in p for p in card.problems)
    assert any("no chapter has been written yet" in p for p in card.problems)
    assert any("no assembled manuscript yet" in p for p in card.problems)
    assert "no chapter has been written yet" in card.to_markdown()
    assert snapshot(project.root / "artefacts") == before

    for stage in ("premise", "world", "characters", "structure", "chapters", "scenes"):
        project.run_stage(stage).wait(60)
    project.run_stage("draft", chapters=[1]).wait(60)
    card = project.report(save=False)
    assert [c.chapter for c in card.chapters] == [1] and card.chapters[0].source == "draft"
    assert card.missing_chapters == [2, 3]
    assert any("chapters without text yet: 2, 3" in p for p in card.problems)
    assert {i.kind for i in card.issues} >= {"missing-chapter"}
    assert card.absent_cast == []  # half a book cannot show who never appears


@pytest.mark.parametrize(
    ("content", "why"),
    [
        (b'{"chapter": 2, "text": "x"}', "holds JSON"),
        (b"\xff\xfe\x00binary", "is not UTF-8 text"),
        (b"<!doctype html><html><body>x</body></html>", "holds HTML"),
    ],
)
def test_an_edited_chapter_that_is_not_markdown_is_named_and_left_alone(
    tmp_path: Path, content: bytes, why: str
) -> None:
    project = planted_project(tmp_path / "p")
    bad = project.root / "artefacts" / "10-polish" / "ch02.md"
    bad.write_bytes(content)
    card = project.report(charts=False)

    assert any(str(bad) in p and why in p for p in card.problems), card.problems
    assert card.missing_chapters == [2] and [c.chapter for c in card.chapters] == [1, 3, 4]
    assert bad.read_bytes() == content


# -- comparison -----------------------------------------------------------------------------------


def two_projects(tmp_path: Path) -> tuple[nk.Project, nk.Project]:
    a = planted_project(tmp_path / "a")
    b = nk.new_project(tmp_path / "b", premise=PREMISE, chapters=3, words_per_chapter=300)
    b.start().wait(60)
    return a, b


def test_compare_lines_up_the_figures_in_a_dataframe(tmp_path: Path) -> None:
    a, b = two_projects(tmp_path)
    table = nk.compare([a, tmp_path / "b"])

    assert list(table.index) == ["a", "b"]
    assert table.loc["a", "words"] == a.report(save=False).total_words
    assert table.loc["a", "stray_names"] == 1 and table.loc["b", "backend"] == "offline"
    assert table.loc["a", "issues"] == len(PLANTED)


def test_compare_without_pandas_is_a_list_of_dicts(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    a, b = two_projects(tmp_path)
    monkeypatch.setitem(sys.modules, "pandas", None)  # import pandas raises ImportError
    rows = nk.compare([a, b])
    assert isinstance(rows, list) and [r["run"] for r in rows] == ["a", "b"]
    assert rows[0]["repeated_paragraphs"] == 1 and rows[1]["chapters"] == 3


def test_compare_needs_a_list(tmp_path: Path) -> None:
    with pytest.raises(nk.ProjectError, match="list of projects"):
        nk.compare(str(tmp_path))
    with pytest.raises(nk.ProjectError, match="not a folder"):
        nk.compare([tmp_path / "nowhere"])


def test_compare_variants_scores_the_active_text_and_each_variant(tmp_path: Path) -> None:
    project = nk.new_project(tmp_path / "p", premise=PREMISE, chapters=2, words_per_chapter=400)
    project.start().wait(60)
    project.run_stage("draft", variant="warm", seed=7, temperature=1.1).wait(60)
    table = project.compare_variants("draft")

    assert list(table.index) == ["active", "warm"]
    assert table.loc["warm", "words"] > 0 and table.loc["active", "chapters"] == 2
    comparison = nk.Comparison.of_variants(project, "draft")
    assert set(comparison.cards) == {"active", "warm"}
    with pytest.raises(nk.PipelineError, match="scores prose"):
        project.compare_variants("premise")
