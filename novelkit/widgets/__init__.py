"""Notebook views: the live :class:`JobPanel`, variant comparison, and the text fallback.

    job = project.start()
    job                              # a live panel in Jupyter, a status table elsewhere
    nk.widgets.compare_variants(project, "draft", "", "warm", chapter=2)

Importing this package does not import ipywidgets; ``JobPanel``, ``VariantView`` and
``compare_variants`` do, and say how to install it when it is missing.
``NOVELKIT_PROGRESS=widget|text|off`` chooses what a Job or Project shows in a notebook.
"""

from __future__ import annotations

import sys
from typing import TYPE_CHECKING, Any

from .._job import Job
from ._text import ProgressMode, one_line, progress_mode

if TYPE_CHECKING:
    from .._project import Project
    from .panel import JobPanel
    from .sweep import SweepPanel
    from .variants import VariantView, compare_variants

__all__ = ["JobPanel", "SweepPanel", "VariantView", "compare_variants", "mimebundle"]

WIDGET_VIEW = "application/vnd.jupyter.widget-view+json"


def __getattr__(name: str) -> Any:
    if name == "JobPanel":
        from .panel import JobPanel

        return JobPanel
    if name == "SweepPanel":
        from .sweep import SweepPanel

        return SweepPanel
    if name in ("VariantView", "compare_variants"):
        from . import variants

        return getattr(variants, name)
    raise AttributeError(f"module 'novelkit.widgets' has no attribute {name!r}")


def mimebundle(obj: Job | Project, **kwargs: Any) -> dict[str, Any]:
    """What a Job or Project shows as a cell's result: always a text/plain status table, plus
    the live panel when ipywidgets is installed, a kernel runs and NOVELKIT_PROGRESS=widget."""
    status = obj.status if isinstance(obj, Job) else obj.status()
    mode, warning = progress_mode()
    if mode is ProgressMode.OFF:
        return {"text/plain": one_line(status)}
    text = status.table() + (f"\n  ({warning})" if warning else "")
    bundle: dict[str, Any] = {"text/plain": text}
    if mode is ProgressMode.WIDGET and _in_kernel() and _widgets_importable():
        from .panel import JobPanel

        view = JobPanel(obj)._repr_mimebundle_(**kwargs) or {}
        if WIDGET_VIEW in view:
            bundle[WIDGET_VIEW] = view[WIDGET_VIEW]
    return bundle


def _in_kernel() -> bool:
    """True inside a Jupyter kernel (not a terminal IPython, not plain Python)."""
    ipython = sys.modules.get("IPython")  # not loaded: certainly not in a kernel
    if ipython is None:
        return False
    shell = ipython.get_ipython()
    return shell is not None and getattr(shell, "kernel", None) is not None


def _widgets_importable() -> bool:
    try:
        import ipywidgets  # noqa: F401
    except ImportError:
        return False
    return True
