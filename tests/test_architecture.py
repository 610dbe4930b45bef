"""The module map in docs/architecture.md holds for the code: what each core module imports,
no reads of another object's private attributes, no comment pointing outside the repo."""

from __future__ import annotations

import ast
import re
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
PACKAGE = ROOT / "novelkit"
MAP = ROOT / "docs" / "architecture.md"


def module_map() -> dict[str, set[str]]:
    """Core module → the package modules it may import, from the map's first table."""
    allowed: dict[str, set[str]] = {}
    for line in MAP.read_text(encoding="utf-8").splitlines():
        cells = [c.strip() for c in line.strip().strip("|").split("|")]
        if len(cells) == 3 and re.fullmatch(r"`_\w+\.py`", cells[0]):
            names = set(re.findall(r"`([\w.]+)`", cells[2]))
            allowed[cells[0].strip("`")[:-3]] = names
    return allowed


def top_level_imports(path: Path) -> set[str]:
    """The package modules ``path`` imports at module level (not lazily, not for typing)."""
    found: set[str] = set()
    for node in ast.parse(path.read_text(encoding="utf-8")).body:
        if isinstance(node, ast.ImportFrom) and node.level == 1:
            if node.module:
                found.add(node.module)
            else:
                found.update(alias.name for alias in node.names)
    return found


CORE = sorted(p.stem for p in PACKAGE.glob("_*.py") if p.stem != "__init__")


def test_the_map_lists_every_core_module() -> None:
    assert sorted(module_map()) == CORE


@pytest.mark.parametrize("module", CORE)
def test_a_core_module_imports_only_what_the_map_allows(module: str) -> None:
    imported = top_level_imports(PACKAGE / f"{module}.py")
    extra = imported - module_map()[module]
    assert not extra, f"{module}.py imports {sorted(extra)}; docs/architecture.md allows " + str(
        sorted(module_map()[module])
    )


def private_reads(path: Path) -> list[str]:
    """``job._x`` / ``project._x`` (also ``self.job._x``) reads, dunders and ``_repr_*_`` aside."""
    found = []
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if not isinstance(node, ast.Attribute) or not node.attr.startswith("_"):
            continue
        if node.attr.endswith("_"):
            continue  # __dunder__ and IPython's _repr_mimebundle_ protocol
        owner = node.value
        name = owner.id if isinstance(owner, ast.Name) else getattr(owner, "attr", None)
        if name in ("job", "project"):
            found.append(f"{path.relative_to(ROOT)}:{node.lineno} {name}.{node.attr}")
    return found


def test_nothing_reads_a_job_or_a_project_private_attribute() -> None:
    files = [*PACKAGE.rglob("*.py"), *(ROOT / "tests").glob("*.py")]
    files += (ROOT / "benchmarks").glob("*.py")
    reads = [r for f in sorted(files) for r in private_reads(f)]
    assert not reads, "\n".join(reads)


def test_no_comment_points_outside_the_repo() -> None:
    suffixes = {".py", ".md", ".js", ".html", ".css", ".ipynb", ".toml"}
    pointing = []
    for path in ROOT.rglob("*"):
        parts = path.relative_to(ROOT).parts
        if path.suffix not in suffixes or parts[0] in (".git", ".venv") or path == Path(__file__):
            continue
        text = path.read_text(encoding="utf-8", errors="replace")
        if "DESIGN §" in text or "../shared" in text:
            pointing.append(str(path.relative_to(ROOT)))
    assert not pointing, pointing
