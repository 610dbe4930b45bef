"""A sweep's grid, its runs' names, grid.toml and the bad input refused before anything runs."""

from __future__ import annotations

from pathlib import Path

import pytest

import novelkit as nk
from novelkit._sweep import expand, load_grid_file, run_name

BASE = {"premise": "A keeper finds a letter.", "chapters": 1, "words_per_chapter": 100}


def test_grid_expands_to_every_combination_with_stable_names() -> None:
    runs = expand({"temperature": [0.6, 0.9], "seed": [1, 2, 3]}, BASE)
    assert len(runs) == 6
    assert {(r.params["temperature"], r.params["seed"]) for r in runs} == {
        (t, s) for t in (0.6, 0.9) for s in (1, 2, 3)
    }
    again = expand({"seed": [1, 2, 3], "temperature": [0.6, 0.9]}, BASE)  # key order differs
    assert {r.name for r in runs} == {r.name for r in again}
    one = next(r for r in runs if r.params == {"temperature": 0.9, "seed": 2})
    assert one.name.startswith("seed-2_temperature-0.9-")
    assert one.config["temperature"] == 0.9 and one.config["chapters"] == 1


def test_list_of_dicts_and_dotted_keys_reach_config_tables() -> None:
    runs = expand(
        [{"backend_options.latency": 0.01}, {"stages.draft.temperature": 0.3}],
        {**BASE, "backend_options": {"tokens_per_second": 5000}},
    )
    assert runs[0].config["backend_options"] == {"tokens_per_second": 5000, "latency": 0.01}
    assert runs[1].config["stages"] == {"draft": {"temperature": 0.3}}
    assert runs[0].name != runs[1].name


def test_names_differ_for_values_that_slug_alike() -> None:
    assert run_name({"premise": "A cat!"}) != run_name({"premise": "A cat?"})


def test_unknown_grid_key_lists_valid_keys_and_the_closest(tmp_path: Path) -> None:
    with pytest.raises(nk.ConfigError) as info:
        nk.sweep(tmp_path / "s", grid={"temprature": [0.5]}, base=BASE)
    message = str(info.value)
    assert "'temprature' is not a config field" in message
    assert "did you mean 'temperature'?" in message
    assert "words_per_chapter" in message  # the valid keys are listed
    assert not (tmp_path / "s").exists()


def test_empty_grid_and_empty_values_are_refused(tmp_path: Path) -> None:
    with pytest.raises(nk.ConfigError, match="the sweep grid is empty"):
        nk.sweep(tmp_path / "s", grid={}, base=BASE)
    with pytest.raises(nk.ConfigError, match="no runs"):
        nk.sweep(tmp_path / "s", grid=[], base=BASE)
    with pytest.raises(nk.ConfigError, match="'seed' has an empty list"):
        nk.sweep(tmp_path / "s", grid={"seed": []}, base=BASE)
    with pytest.raises(nk.ConfigError, match="needs a list of values"):
        nk.sweep(tmp_path / "s", grid={"seed": 3}, base=BASE)  # type: ignore[dict-item]
    assert not (tmp_path / "s").exists()


def test_a_bad_value_names_the_run_and_the_field(tmp_path: Path) -> None:
    with pytest.raises(nk.ConfigError, match=r"sweep run chapters-0-.*chapters"):
        nk.sweep(tmp_path / "s", grid={"chapters": [0]}, base=BASE)
    with pytest.raises(nk.ConfigError, match="no premise"):
        nk.sweep(tmp_path / "s", grid={"seed": [1]}, base={"chapters": 1})


def test_root_holding_another_sweep_is_refused_and_left_alone(tmp_path: Path) -> None:
    root = tmp_path / "s"
    from novelkit._sweep._record import SweepDefinition

    first = SweepDefinition(root.resolve(), BASE, expand({"seed": [1, 2]}, BASE))
    first.check()
    first.write()
    before = (root / "sweep.toml").read_bytes()
    with pytest.raises(nk.ProjectError) as info:
        nk.sweep(root, grid={"seed": [3]}, base=BASE)
    assert "holds another sweep" in str(info.value) and "nothing was changed" in str(info.value)
    with pytest.raises(nk.ProjectError, match="base config differs"):
        nk.sweep(root, grid={"seed": [1, 2]}, base={**BASE, "chapters": 2})
    assert (root / "sweep.toml").read_bytes() == before


def test_root_holding_projects_of_no_sweep_is_refused(tmp_path: Path) -> None:
    root = tmp_path / "s"
    nk.new_project(root / "mine", premise="Mine.", chapters=1).close()
    with pytest.raises(nk.ProjectError, match="not runs of this sweep.*mine"):
        nk.sweep(root, grid={"seed": [1]}, base=BASE)
    assert not (root / "sweep.toml").exists()
    with pytest.raises(nk.ProjectError, match="itself a novelkit project"):
        nk.sweep(root / "mine", grid={"seed": [1]}, base=BASE)


def test_unreachable_scheduler_is_a_clear_error_and_writes_nothing(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import socket

    from novelkit._sweep import _sweep

    monkeypatch.setattr(_sweep, "CONNECT_TIMEOUT", 1.0)

    with socket.socket() as sock:  # a port nothing listens on
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    root = tmp_path / "s"
    with pytest.raises(
        nk.SweepError, match=f"cannot reach the Dask scheduler at tcp://127.0.0.1:{port}"
    ):
        nk.sweep(root, grid={"seed": [1]}, base=BASE, client=f"tcp://127.0.0.1:{port}")
    assert not root.exists()


def test_grid_file_reads_base_grid_and_budget(tmp_path: Path) -> None:
    path = tmp_path / "grid.toml"
    path.write_text(
        'premise = "A keeper finds a letter."\nchapters = 1\n\n[grid]\nseed = [1, 2]\n\n'
        "[grid.backend_options]\nlatency = [0.0, 0.01]\n\n[sweep]\nmax_tokens = 5000\n"
    )
    base, grid, settings = load_grid_file(path)
    assert base == {"premise": "A keeper finds a letter.", "chapters": 1}
    assert grid == {"seed": [1, 2], "backend_options.latency": [0.0, 0.01]}
    assert settings == {"max_tokens": 5000}
    assert len(expand(grid, base)) == 4
    path.write_text('premise = "x"\n')
    with pytest.raises(nk.ConfigError, match=r"no \[grid\] table"):
        load_grid_file(path)


def test_a_sweep_driven_by_a_live_process_is_not_started_twice(tmp_path: Path) -> None:
    import os
    import socket
    import time

    from novelkit._sweep._record import SweepDefinition, write_json

    root = tmp_path / "s"
    definition = SweepDefinition(root.resolve(), BASE, expand({"seed": [1]}, BASE))
    definition.check()
    definition.write()
    alive = {"pid": os.getpid(), "host": socket.gethostname(), "updated": time.time()}
    write_json(root / ".sweep" / "state.json", {**alive, "state": "running", "message": ""})
    with pytest.raises(nk.SweepError, match="is being run by another process"):
        nk.sweep(root, grid={"seed": [1]}, base=BASE)
