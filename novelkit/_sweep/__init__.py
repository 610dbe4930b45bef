"""Parameter sweeps on Dask: many runs of one novel config, from a laptop to a cluster.

    import novelkit as nk
    sweep = nk.sweep("sweeps/temps", grid={"temperature": [0.6, 0.9], "seed": [1, 2]},
                     base={"premise": "A keeper finds a letter", "chapters": 3})
    sweep.wait()
    sweep.results()          # a DataFrame: parameters and scorecard figures of every run

Needs ``pip install 'novelkit[sweep]'`` (dask distributed and pandas), imported on first use.
"""

from ._figures import run_figures
from ._grid import Run, expand, load_grid_file, run_name
from ._status import RunStatus, SweepStatus, read_sweep_status
from ._sweep import LEGAL, Sweep, SweepError, control_sweep, legal_sweep_actions, sweep

__all__ = [
    "LEGAL",
    "Run",
    "RunStatus",
    "Sweep",
    "SweepError",
    "SweepStatus",
    "control_sweep",
    "expand",
    "legal_sweep_actions",
    "load_grid_file",
    "read_sweep_status",
    "run_figures",
    "run_name",
    "sweep",
]
