"""novel.toml: any string round-trips, a user's comments survive configure(), bad files are named."""

from __future__ import annotations

import tomllib
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import novelkit as nk
from novelkit.cli import main

# every string a user can put in the config, with the bounds the model enforces
TEXT = st.text(max_size=80)


def test_a_del_character_in_the_premise_and_author_leaves_the_project_usable(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """The probe: generate with \\x7f in the premise, export with \\x7f in --author, then status."""
    out = tmp_path / "p"
    premise = "A keeper\x7f finds a letter."
    code = main(
        ["generate", premise, "--out", str(out), "--chapters", "1", "--words-per-chapter", "100"]
    )
    assert code == 0, capsys.readouterr().err
    assert main(["export", str(out), "--format", "md", "--author", "Ada\x7f"]) == 0, (
        capsys.readouterr().err
    )
    capsys.readouterr()
    assert main(["status", str(out)]) == 0, capsys.readouterr().err
    project = nk.open_project(out)
    assert project.config.premise == premise
    assert project.config.author == "Ada\x7f"
    assert "\x7f" not in (out / "novel.toml").read_text()  # written escaped, as TOML requires
    project.close()


@settings(
    max_examples=40, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(
    premise=TEXT.filter(lambda s: s.strip() != ""),
    title=TEXT,
    genre=TEXT,
    style=TEXT,
    model=TEXT,
    base_url=TEXT,
    author=TEXT,
    contact=TEXT,
    stage_model=TEXT,
    prompt=TEXT,
    price_name=TEXT,
    option=TEXT,
)
def test_any_text_in_every_string_field_round_trips(
    tmp_path_factory: pytest.TempPathFactory,
    premise: str,
    title: str,
    genre: str,
    style: str,
    model: str,
    base_url: str,
    author: str,
    contact: str,
    stage_model: str,
    prompt: str,
    price_name: str,
    option: str,
) -> None:
    folder = tmp_path_factory.mktemp("fuzz") / "p"
    project = nk.new_project(folder, premise, title=title, genre=genre, style=style, author=author)
    project.configure(
        model=model,
        base_url=base_url,
        contact=contact,
        stages={"draft": {"model": stage_model, "prompt": prompt}},
        prices={price_name: {"prompt": 1.5, "completion": 2.0}},
    )
    expected = project.config
    project.close()
    # backend_options hold arbitrary values too; the offline backend checks its own keys,
    # so this one goes straight into the file as a user would put it there
    reopened = nk.open_project(folder)
    assert reopened.config == expected
    assert reopened.config.premise == premise.strip()
    assert (reopened.config.title, reopened.config.author, reopened.config.contact) == (
        title,
        author,
        contact,
    )
    assert reopened.config.stages["draft"].prompt == prompt
    assert list(reopened.config.prices) == [price_name]
    reopened.close()
    data = tomllib.loads((folder / "novel.toml").read_text(encoding="utf-8"))
    data["backend_options"] = {"note": option}
    assert nk._config.validate_config(data).backend_options == {"note": option}


def test_a_new_novel_toml_explains_every_section(tmp_path: Path) -> None:
    project = nk.new_project(tmp_path / "p", "A keeper finds a letter.")
    text = (tmp_path / "p" / "novel.toml").read_text()
    project.close()
    for section in ("[backend_options]", "[stages]", "[prices]"):
        after = text.split(section, 1)[1].lstrip("\n")
        assert after.startswith("# "), f"{section} has no comment saying what goes in it"
        assert "e.g." in after.split("\n[", 1)[0], f"{section} has no example"
    for line in ("# title = ", "# max_cost = ", "# model = "):  # unset settings shown as examples
        assert line in text
    assert "# Number of chapters" in text


def test_configure_keeps_the_users_comments_and_order(tmp_path: Path) -> None:
    folder = tmp_path / "p"
    nk.new_project(folder, "A keeper finds a letter.", chapters=4).close()
    path = folder / "novel.toml"
    hand = path.read_text().replace(
        "chapters = 4", "# Ada: keep it short until the outline works\nchapters = 4  # for now"
    )
    hand = "# my book\n" + hand
    path.write_text(hand)
    project = nk.open_project(folder)
    project.configure(chapters=6, title="The Keeper", stages={"draft": {"temperature": 0.9}})
    project.close()
    text = path.read_text()
    assert text.startswith("# my book\n")
    assert "# Ada: keep it short until the outline works\nchapters = 6  # for now\n" in text
    keys = [
        line.split(" =")[0]
        for line in text.splitlines()
        if " = " in line and not line.startswith("#")
    ]
    assert keys.index("premise") < keys.index("chapters") < keys.index("backend")
    reopened = nk.open_project(folder)
    assert reopened.config.chapters == 6
    assert reopened.config.stages["draft"].temperature == 0.9
    reopened.close()


def test_a_syntax_error_is_named_with_line_and_column_and_nothing_is_rewritten(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    folder = tmp_path / "p"
    nk.new_project(folder, "A keeper finds a letter.").close()
    path = folder / "novel.toml"
    broken = path.read_text().replace("chapters = 12", "chapters = = 12")
    path.write_text(broken)
    line = broken.splitlines().index("chapters = = 12") + 1
    assert main(["status", str(folder)]) == 2
    err = capsys.readouterr().err
    assert "novel.toml is not valid TOML" in err and f"line {line}" in err and "column" in err
    assert "Traceback" not in err
    assert main(["run", str(folder)]) == 2
    assert path.read_text() == broken


def test_configure_refuses_to_overwrite_a_file_being_edited(tmp_path: Path) -> None:
    project = nk.new_project(tmp_path / "p", "A keeper finds a letter.")
    path = tmp_path / "p" / "novel.toml"
    broken = path.read_text() + "\n[stages\n"
    path.write_text(broken)
    with pytest.raises(nk.ConfigError, match=r"not valid TOML \(line \d+, column \d+\)"):
        project.configure(chapters=3)
    assert path.read_text() == broken
    project.close()


@pytest.mark.parametrize("damage", ["latin-1", "folder"])
def test_an_unreadable_novel_toml_is_named_with_exit_2(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], damage: str
) -> None:
    folder = tmp_path / "p"
    nk.new_project(folder, "A keeper finds a letter.").close()
    path = folder / "novel.toml"
    if damage == "latin-1":
        path.write_bytes(path.read_text().replace("Anonymous", "Andrés").encode("latin-1"))
    else:
        path.unlink()
        path.mkdir()
    for command in (["status", str(folder)], ["run", str(folder)]):
        assert main(command) == 2
        err = capsys.readouterr().err
        assert str(path) in err and "Traceback" not in err
        assert ("not UTF-8" if damage == "latin-1" else "is a folder") in err


def test_a_huge_bad_value_is_quoted_as_a_short_marked_excerpt(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    premise = "A keeper finds a letter. " * 40_000  # 1 MB
    assert main(["generate", premise, "--out", str(tmp_path / "p")]) == 2
    err = capsys.readouterr().err
    assert len(err) < 1_000
    assert "premise" in err and "cut; 1000000 characters" in err
