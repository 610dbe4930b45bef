"""novelkit: write a whole novel with a language model, through twelve stages you can drive.

    import novelkit as nk
    project = nk.new_project("novels/lighthouse", premise="A keeper finds a letter...")
    job = project.start()      # returns at once; a live panel in a notebook
    job.wait()
    project.export("docx")

The names below load on first use, so ``import novelkit`` costs next to nothing.
"""

import importlib as _importlib
from typing import TYPE_CHECKING as _TYPE_CHECKING
from typing import Any as _Any

__version__ = "0.1.0.dev0"

_EXPORTS = {
    "Act": "._artefacts",
    "ArtefactError": "._errors",
    "BackendConfigError": "._errors",
    "BackendError": "._errors",
    "BudgetExceededError": "._errors",
    "Cast": "._artefacts",
    "Comparison": ".report.compare",
    "ChapterPlan": "._artefacts",
    "ChapterScenes": "._artefacts",
    "ChapterSummary": "._artefacts",
    "ChapterText": "._artefacts",
    "Character": "._artefacts",
    "ConfigError": "._errors",
    "ContinuityReport": "._artefacts",
    "ControlResult": "._status",
    "Estimate": "._estimate",
    "Event": "._events",
    "ExportError": "._errors",
    "Finding": "._artefacts",
    "Job": "._job",
    "JobState": "._status",
    "JobFailedError": "._errors",
    "JobStateError": "._errors",
    "JobStatus": "._status",
    "Location": "._artefacts",
    "ManuscriptError": "._errors",
    "Metadata": "._artefacts",
    "NovelConfig": "._config",
    "NovelkitError": "._errors",
    "Outline": "._artefacts",
    "Pipeline": "._pipeline",
    "PipelineError": "._errors",
    "Premise": "._artefacts",
    "Project": "._project",
    "ProjectError": "._errors",
    "ProjectLockedError": "._errors",
    "Relationship": "._artefacts",
    "ReplayMissError": "._errors",
    "Report": "._artefacts",
    "RunStatus": "._sweep",
    "Scene": "._artefacts",
    "Scorecard": ".report.scorecard",
    "Stage": "._pipeline",
    "StageEstimate": "._estimate",
    "StageState": "._pipeline",
    "StageStatus": "._status",
    "Structure": "._artefacts",
    "Subscription": "._events",
    "Sweep": "._sweep",
    "SweepError": "._sweep",
    "SweepStatus": "._sweep",
    "TransientBackendError": "._errors",
    "UnitContext": "._runner",
    "World": "._artefacts",
    "compare": ".report.compare",
    "import_manuscript": ".imports",
    "new_project": "._project",
    "open_project": "._project",
    "sweep": "._sweep",
}

__all__ = [
    "Act",
    "ArtefactError",
    "BackendConfigError",
    "BackendError",
    "BudgetExceededError",
    "Cast",
    "ChapterPlan",
    "ChapterScenes",
    "ChapterSummary",
    "ChapterText",
    "Character",
    "Comparison",
    "ConfigError",
    "ContinuityReport",
    "ControlResult",
    "Estimate",
    "Event",
    "ExportError",
    "Finding",
    "Job",
    "JobFailedError",
    "JobState",
    "JobStateError",
    "JobStatus",
    "Location",
    "ManuscriptError",
    "Metadata",
    "NovelConfig",
    "NovelkitError",
    "Outline",
    "Pipeline",
    "PipelineError",
    "Premise",
    "Project",
    "ProjectError",
    "ProjectLockedError",
    "Relationship",
    "ReplayMissError",
    "Report",
    "RunStatus",
    "Scene",
    "Scorecard",
    "Stage",
    "StageEstimate",
    "StageState",
    "StageStatus",
    "Structure",
    "Subscription",
    "Sweep",
    "SweepError",
    "SweepStatus",
    "TransientBackendError",
    "UnitContext",
    "World",
    "compare",
    "import_manuscript",
    "new_project",
    "open_project",
    "sweep",
]


def __getattr__(name: str) -> _Any:
    module = _EXPORTS.get(name)
    if module is None:
        raise AttributeError(f"module 'novelkit' has no attribute {name!r}")
    value = getattr(_importlib.import_module(module, __name__), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted({*globals(), *__all__})


if _TYPE_CHECKING:
    from ._artefacts import (
        Act,
        Cast,
        ChapterPlan,
        ChapterScenes,
        ChapterSummary,
        ChapterText,
        Character,
        ContinuityReport,
        Finding,
        Location,
        Metadata,
        Outline,
        Premise,
        Relationship,
        Report,
        Scene,
        Structure,
        World,
    )
    from ._config import (
        NovelConfig,
    )
    from ._errors import (
        ArtefactError,
        BackendConfigError,
        BackendError,
        BudgetExceededError,
        ConfigError,
        ExportError,
        JobFailedError,
        JobStateError,
        ManuscriptError,
        NovelkitError,
        PipelineError,
        ProjectError,
        ProjectLockedError,
        ReplayMissError,
        TransientBackendError,
    )
    from ._events import (
        Event,
        Subscription,
    )
    from ._job import Job
    from ._pipeline import (
        Pipeline,
        Stage,
        StageState,
    )
    from ._project import (
        Project,
        new_project,
        open_project,
    )
    from ._runner import (
        UnitContext,
    )
    from ._status import (
        ControlResult,
        JobState,
        JobStatus,
        StageStatus,
    )
    from ._sweep import (
        RunStatus,
        Sweep,
        SweepError,
        SweepStatus,
        sweep,
    )
    from .imports import import_manuscript
    from .report.compare import Comparison, compare
    from .report.scorecard import Scorecard
