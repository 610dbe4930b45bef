"""Projects: creating and opening, config validation, staleness, per-stage runs, bad input."""

from __future__ import annotations

import json
import os
from collections.abc import Callable
from pathlib import Path

import pytest
from _tools import STAGE_NAMES

import novelkit as nk
from novelkit import JobState, StageState

DOWNSTREAM_OF_CHAPTERS = STAGE_NAMES[STAGE_NAMES.index("scenes") :]


def finished(project: nk.Project) -> nk.Project:
    assert project.start().wait(60) is JobState.SUCCEEDED
    return project


def states(project: nk.Project) -> dict[str, StageState]:
    return {s.name: s.state for s in project.stages}


def units_run(project: nk.Project, since: int) -> dict[str, int]:
    counts: dict[str, int] = {}
    for event in project.store.events_since(since, 100_000):
        if event.type == "unit" and event.data["state"] == "done":
            counts[event.data["stage"]] = counts.get(event.data["stage"], 0) + 1
    return counts


def test_new_project_creates_the_documented_folder(project: nk.Project) -> None:
    root = project.root
    assert (root / "novel.toml").is_file()
    assert (root / "artefacts").is_dir() and (root / "exports").is_dir()
    assert (root / ".novelkit" / "state.db").is_file()
    text = (root / "novel.toml").read_text()
    assert "chapters = 3" in text and "premise = " in text


def test_open_project_reads_the_config_back(project: nk.Project, tmp_path: Path) -> None:
    reopened = nk.open_project(project.root)
    assert reopened.config == project.config
    reopened.close()


def test_new_project_refuses_to_overwrite_an_existing_one(project: nk.Project) -> None:
    with pytest.raises(nk.ProjectError, match="already holds a project"):
        nk.new_project(project.root, premise="another story")


@pytest.mark.parametrize(
    ("config", "expected"),
    [
        ({"chapters": 500}, r"chapters = 500 is invalid: .*less than or equal to 200"),
        (
            {"words_per_chapter": 10},
            r"words_per_chapter = 10 is invalid: .*greater than or equal to 100",
        ),
        ({"temperature": 3.5}, r"temperature = 3.5 is invalid"),
        (
            {"backend": "gpt"},
            r"backend = 'gpt' is invalid: .*'offline', 'openai', 'anthropic' or 'replay'",
        ),
        ({"chapter": 12}, r"unknown key 'chapter' — did you mean 'chapters'\?"),
        (
            {"stages": {"draft": {"temprature": 1.0}}},
            r"unknown key 'stages.draft.temprature' — did you mean 'temperature'",
        ),
    ],
)
def test_bad_config_names_field_value_and_range(
    tmp_path: Path, config: dict[str, object], expected: str
) -> None:
    with pytest.raises(nk.ConfigError, match=expected):
        nk.new_project(tmp_path / "bad", premise="a story", **config)  # type: ignore[arg-type]
    assert not (tmp_path / "bad" / "novel.toml").exists()


def test_blank_premise_is_refused(tmp_path: Path) -> None:
    with pytest.raises(nk.ConfigError, match="premise"):
        nk.new_project(tmp_path / "p", premise="   ")


def test_hand_edited_novel_toml_is_validated_on_open(project: nk.Project) -> None:
    path = project.root / "novel.toml"
    path.write_text(path.read_text().replace("chapters = 3", "chapterz = 3"))
    with pytest.raises(
        nk.ConfigError, match=r"novel.toml: unknown key 'chapterz' — did you mean 'chapters'"
    ):
        nk.open_project(project.root)
    path.write_text("premise = [unterminated")
    with pytest.raises(nk.ConfigError, match="not valid TOML"):
        nk.open_project(project.root)


def test_open_missing_folder_or_non_project(tmp_path: Path) -> None:
    with pytest.raises(nk.ProjectError, match="is not a folder"):
        nk.open_project(tmp_path / "nothing")
    (tmp_path / "empty").mkdir()
    with pytest.raises(nk.ProjectError, match="no novel.toml"):
        nk.open_project(tmp_path / "empty")


def test_unwritable_folder_is_a_clear_error(
    project: nk.Project, monkeypatch: pytest.MonkeyPatch
) -> None:
    root = project.root
    project.close()
    root.chmod(0o500)
    try:
        if os.geteuid() == 0:  # root ignores permission bits; make the check see what a user would
            monkeypatch.setattr("novelkit._project.os.access", lambda path, mode: False)
        with pytest.raises(nk.ProjectError, match="cannot write to .*permission denied"):
            nk.open_project(root)
    finally:
        root.chmod(0o755)


def test_unwritable_folder_via_store_failure(
    make_project: Callable[..., nk.Project], tmp_path: Path
) -> None:
    """As root, permissions do not bite: a folder path that is a file must still be a clear error."""
    blocker = tmp_path / "blocker"
    blocker.write_text("I am a file")
    with pytest.raises(nk.ProjectError, match="cannot create the project"):
        nk.new_project(blocker / "novel", premise="x")


def test_unknown_stage_suggests_the_right_name(project: nk.Project) -> None:
    with pytest.raises(nk.PipelineError, match=r"unknown stage 'drafts' — did you mean 'draft'\?"):
        project.run_stage("drafts")
    with pytest.raises(nk.PipelineError, match="there is no stage 13"):
        project.run_stage(13)


def test_run_stage_without_upstream_names_the_missing_stage(project: nk.Project) -> None:
    with pytest.raises(
        nk.PipelineError, match=r"stage 'draft' needs stage 1 'premise', which has not run yet"
    ):
        project.run_stage("draft", chapters=[1])


def test_run_stage_by_number_and_chapters(project: nk.Project) -> None:
    for stage in range(1, 6):
        assert project.run_stage(stage).wait(30) is JobState.SUCCEEDED
    assert project.run_stage("scenes", chapters=[2]).wait(30) is JobState.SUCCEEDED
    scenes = project.artefacts["scenes"]
    assert list(scenes) == [2]
    assert scenes[2].chapter == 2
    with pytest.raises(nk.PipelineError, match="needs stage 6 'scenes'.*missing: ch01"):
        project.run_stage("draft", chapters=[1])
    with pytest.raises(
        nk.PipelineError, match="chapters \\[9\\] are not in the outline; valid chapters are 1–3"
    ):
        project.run_stage("scenes", chapters=[9])
    with pytest.raises(nk.PipelineError, match="single unit"):
        project.run_stage("premise", chapters=[1])


def test_memoised_calls_make_a_forced_rerun_free(project: nk.Project) -> None:
    finished(project)
    calls = project.store.call_count()
    assert project.run_stage("draft", chapters=[2], force=True).wait(30) is JobState.SUCCEEDED
    assert project.store.call_count() == calls, "identical requests are served from the memo"


def test_running_a_stage_marks_everything_downstream_stale(project: nk.Project) -> None:
    finished(project)
    project.run_stage("chapters", force=True).wait(30)
    after = states(project)
    assert all(
        after[name] is StageState.SUCCEEDED
        for name in ("premise", "world", "characters", "structure", "chapters")
    )
    assert [n for n, s in after.items() if s is StageState.STALE] == DOWNSTREAM_OF_CHAPTERS


def test_python_edit_makes_exactly_downstream_stale_and_start_reruns_only_those(
    project: nk.Project,
) -> None:
    finished(project)
    outline = project.artefacts["chapters"]
    outline.chapters[1].summary = "Rosa burns the letter at the harbour and lies about it."
    project.artefacts["chapters"] = outline
    after = states(project)
    assert [n for n, s in after.items() if s is StageState.STALE] == DOWNSTREAM_OF_CHAPTERS
    assert project.artefacts["chapters"].chapters[1].summary.startswith("Rosa burns")
    seq = project.store.last_seq()
    assert project.start().wait(60) is JobState.SUCCEEDED
    rerun = units_run(project, seq)
    assert set(rerun) <= set(DOWNSTREAM_OF_CHAPTERS)
    assert "scenes" in rerun and rerun.get("premise") is None
    assert all(s is StageState.SUCCEEDED for s in states(project).values())


def test_hand_edit_is_detected_on_open(project: nk.Project) -> None:
    finished(project)
    path = project.root / "artefacts" / "03-characters.json"
    cast = json.loads(path.read_text())
    cast["characters"][0]["flaw"] = "cannot stop counting the tides"
    path.write_text(json.dumps(cast, indent=2))
    project.close()
    reopened = nk.open_project(project.root)
    try:
        after = states(reopened)
        assert after["characters"] is StageState.SUCCEEDED, "the edit is accepted as the artefact"
        stale = [n for n, s in after.items() if s is StageState.STALE]
        assert stale == STAGE_NAMES[STAGE_NAMES.index("structure") :]
        assert (
            json.loads(path.read_text())["characters"][0]["flaw"]
            == "cannot stop counting the tides"
        )
        assert reopened.start().wait(60) is JobState.SUCCEEDED
        assert (
            json.loads(path.read_text())["characters"][0]["flaw"]
            == "cannot stop counting the tides"
        )
    finally:
        reopened.close()


def test_invalid_hand_edit_names_file_and_field_and_overwrites_nothing(project: nk.Project) -> None:
    finished(project)
    path = project.root / "artefacts" / "05-chapters.json"
    outline = json.loads(path.read_text())
    outline["chapters"][0]["target_words"] = "lots"
    broken = json.dumps(outline, indent=2)
    path.write_text(broken)
    project.close()
    reopened = nk.open_project(project.root)
    try:
        with pytest.raises(
            nk.ArtefactError,
            match=r"05-chapters.json does not validate as Outline: chapters.0.target_words",
        ):
            reopened.start()
        with pytest.raises(nk.ArtefactError, match="target_words"):
            reopened.run_stage("scenes", force=True)
        with pytest.raises(nk.ArtefactError, match="05-chapters.json"):
            reopened.artefacts["chapters"]
        assert path.read_text() == broken, "nothing is overwritten"
    finally:
        reopened.close()


def test_saving_the_wrong_type_is_refused(project: nk.Project) -> None:
    finished(project)
    with pytest.raises(nk.ArtefactError, match="'chapters' artefacts are Outline, not Cast"):
        project.artefacts["chapters"] = project.artefacts["characters"]


def test_variants_run_beside_the_active_artefact_and_can_be_chosen(project: nk.Project) -> None:
    finished(project)
    active = project.artefacts["draft"][1].text
    job = project.run_stage("draft", chapters=[1], variant="warm", seed=7, temperature=1.1)
    assert job.wait(30) is JobState.SUCCEEDED
    assert project.variants("draft") == ["warm"]
    warm = project.read_variant("draft", "warm", chapter=1)
    assert warm.text != active
    assert project.artefacts["draft"][1].text == active, (
        "a variant never replaces the active artefact"
    )
    project.choose_variant("draft", "warm", chapters=[1])
    assert project.artefacts["draft"][1].text == warm.text
    assert states(project)["continuity"] is StageState.STALE
    with pytest.raises(nk.PipelineError, match="need variant="):
        project.run_stage("draft", chapters=[1], seed=3)


def test_prompt_override_changes_the_request_and_is_saved(project: nk.Project) -> None:
    finished(project)
    project.set_prompt("premise", "Make it gothic. {premise}")
    assert 'prompt = "Make it gothic. {premise}"' in (project.root / "novel.toml").read_text()
    assert states(project)["premise"] is StageState.STALE
    calls = project.store.call_count()
    project.run_stage("premise").wait(30)
    assert project.store.call_count() == calls + 1
    last = (
        project.store._reader()
        .execute("SELECT request FROM calls ORDER BY created DESC LIMIT 1")
        .fetchone()[0]
    )
    assert "Make it gothic. A lighthouse keeper" in last


def test_report_has_lengths_repetition_and_findings(project: nk.Project) -> None:
    finished(project)
    report = project.report()
    assert report is not None
    assert [c.chapter for c in report.chapters] == [1, 2, 3]
    assert all(c.target_words == 300 for c in report.chapters)
    assert all(c.within_tolerance for c in report.chapters)
    assert report.missing_chapters == [] and report.duplicated_chapters == []
    assert 0.0 <= report.repeated_12gram_share < 1.0
    assert "words in 3 chapters" in project.status().table()
    assert (project.root / "artefacts" / "report.md").read_text().startswith("# Report:")
