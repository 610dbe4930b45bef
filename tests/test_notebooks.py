"""The notebooks in notebooks/: each runs headless, top to bottom, without an error, in under a
minute; git holds them without outputs except the cells marked ``# NBVAL_CHECK_OUTPUT``, whose
saved output is what a run must print (``pytest --nbval-lax notebooks`` checks it too).

After editing a notebook, refresh the saved outputs of its checked cells (and strip the rest):

    python tests/test_notebooks.py notebooks/02_stage_by_stage.ipynb     # or no argument: all
"""

from __future__ import annotations

import sys
import time
from pathlib import Path

import nbformat
import pytest
from nbclient import NotebookClient
from nbformat import NotebookNode

NOTEBOOKS_DIR = Path(__file__).resolve().parent.parent / "notebooks"
NOTEBOOKS = sorted(NOTEBOOKS_DIR.glob("*.ipynb"))
OURS = ["01_quickstart", "02_stage_by_stage", "03_backends", "04_control"]
CHECK = "# NBVAL_CHECK_OUTPUT"
BUDGET_SECONDS = 60.0
WIDGET_VIEW = "application/vnd.jupyter.widget-view+json"
PANEL_LINES = {"job", "project.job"}  # a cell ending in one of these shows a live panel


def is_checked(cell: NotebookNode) -> bool:
    return cell.cell_type == "code" and any(
        line.strip() == CHECK for line in cell.source.splitlines()
    )


def shows_panel(cell: NotebookNode) -> bool:
    lines = [line for line in cell.source.splitlines() if line.strip()]
    return cell.cell_type == "code" and bool(lines) and lines[-1].strip() in PANEL_LINES


def execute(path: Path) -> tuple[NotebookNode, float]:
    """Run a notebook in a fresh kernel, in its own folder (as JupyterLab would); returns it and the time."""
    notebook = nbformat.read(path, as_version=4)
    client = NotebookClient(
        notebook,
        timeout=120,
        kernel_name="python3",
        resources={"metadata": {"path": str(path.parent)}},
    )
    started = time.monotonic()
    client.execute()
    return notebook, time.monotonic() - started


def strip(notebook: NotebookNode) -> NotebookNode:
    """Outputs and execution counts only where they are checked; no saved widget state."""
    for cell in notebook.cells:
        if cell.cell_type != "code":
            continue
        if not is_checked(cell):
            cell.outputs = []
            cell.execution_count = None
        cell.metadata.pop("execution", None)
    notebook.metadata.pop("widgets", None)
    return notebook


def text_of(cell: NotebookNode) -> str:
    """What a checked cell printed: its streams and text/plain results, in order."""
    parts = []
    for output in cell.outputs:
        if output.output_type == "stream":
            parts.append(output.text)
        elif output.output_type == "execute_result":
            parts.append(output.data.get("text/plain", ""))
    return "".join(parts)


def errors_of(notebook: NotebookNode) -> list[str]:
    return [
        f"cell {index}: {output.ename}: {output.evalue}"
        for index, cell in enumerate(notebook.cells)
        if cell.cell_type == "code"
        for output in cell.outputs
        if output.output_type == "error"
    ]


def test_our_notebooks_are_there() -> None:
    assert [p.stem for p in NOTEBOOKS if p.stem in OURS] == OURS


@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.stem)
def test_notebook_is_stored_without_outputs(path: Path) -> None:
    notebook = nbformat.read(path, as_version=4)
    nbformat.validate(notebook)
    assert "widgets" not in notebook.metadata, "saved widget state: strip the notebook"
    for index, cell in enumerate(notebook.cells):
        if cell.cell_type != "code":
            continue
        if is_checked(cell):
            assert cell.outputs and cell.execution_count is not None, (
                f"cell {index} is checked but has no saved output: run python tests/test_notebooks.py {path}"
            )
        else:
            assert not cell.outputs and cell.execution_count is None, (
                f"cell {index} has a saved output: run python tests/test_notebooks.py {path}"
            )


@pytest.mark.slow
@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.stem)
def test_notebook_runs_headless(path: Path) -> None:
    saved = nbformat.read(path, as_version=4)
    executed, seconds = execute(path)

    assert errors_of(executed) == []
    assert seconds < BUDGET_SECONDS, (
        f"{path.name} took {seconds:.1f} s (budget {BUDGET_SECONDS:.0f} s)"
    )
    for index, (before, after) in enumerate(zip(saved.cells, executed.cells, strict=True)):
        if is_checked(before):
            assert text_of(after) == text_of(before), f"cell {index} printed something else"
        if shows_panel(before):
            shown = [output for output in after.outputs if WIDGET_VIEW in output.get("data", {})]
            assert shown, f"cell {index} should show the live panel as a widget: {after.outputs}"


def refresh(paths: list[Path]) -> None:
    for path in paths:
        executed, seconds = execute(path)
        problems = errors_of(executed)
        if problems:
            raise SystemExit(f"{path}: " + "; ".join(problems))
        nbformat.write(strip(executed), path)
        print(f"{path}: {seconds:.1f} s, checked outputs saved")


if __name__ == "__main__":
    refresh([Path(arg).resolve() for arg in sys.argv[1:]] or NOTEBOOKS)
