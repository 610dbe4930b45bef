"""novelkit: write a whole novel with a language model, through twelve stages you can drive.

    import novelkit as nk
    project = nk.new_project("novels/lighthouse", premise="A keeper finds a letter...")
    job = project.start()      # returns at once; a live panel in a notebook
    job.wait()
    project.export("docx")
"""


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
from ._config import NovelConfig
from ._errors import (
    ArtefactError,
    BackendConfigError,
    BackendError,
    BudgetExceededError,
    ConfigError,
    ExportError,
    JobStateError,
    NovelkitError,
    PipelineError,
    ProjectError,
    ProjectLockedError,
    ReplayMissError,
    TransientBackendError,
)
from ._events import Event, Subscription
from ._job import ControlResult, Job, JobState, JobStatus, StageStatus
from ._pipeline import Pipeline, Stage, StageState
from ._project import Project, new_project, open_project
from ._runner import UnitContext

__version__ = "0.1.0.dev0"

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
    "ConfigError",
    "ContinuityReport",
    "ControlResult",
    "Event",
    "ExportError",
    "Finding",
    "Job",
    "JobState",
    "JobStateError",
    "JobStatus",
    "Location",
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
    "Scene",
    "Stage",
    "StageState",
    "StageStatus",
    "Structure",
    "Subscription",
    "TransientBackendError",
    "UnitContext",
    "World",
    "new_project",
    "open_project",
]
