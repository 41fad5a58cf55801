"""The search driver: flags and space → a plan → Ray Tune runs the trials Optuna proposes → the run folder.

``python search.py --space NAME_OR_PATH [...]`` (also ``nas-attn search``), or from Python
:func:`run_search`. ``nas-attn train --arch ARCH`` runs the same path with one fixed arch, a trial per seed
(:meth:`~nas_attn.space.SearchSpace.for_arch`). Everything the flags and the space file can get wrong is
checked before torch or Ray is imported and before anything is written.

One concern a module:

| module | what |
| --- | --- |
| :mod:`~nas_attn.search.flags` | the command lines of ``search`` and ``train``: parsers and ``main`` |
| :mod:`~nas_attn.search.driver` | :func:`run_search` and an attempt's life cycle (interrupts, failures) |
| :mod:`~nas_attn.search.folder` | the run folder: locked first, checked, prepared for an attempt |
| :mod:`~nas_attn.search.inputs` | the dataset a search trains on, its split checked |
| :mod:`~nas_attn.search.process` | what a search sets in its process (undone after), the Ray session |
| :mod:`~nas_attn.search.tuning` | Ray Tune: the Tuner, its scheduler and callbacks (imports Ray) |
| :mod:`~nas_attn.search.measure` | after the trials: the front's test accuracy, its heatmaps (imports Ray) |

Only the package and its first five modules are imported up front; the last two are imported once the input
is checked.
"""

from nas_attn.fsutil import WRITE_FAILURES
from nas_attn.search.driver import SearchResult, resume_command, run_attempt, run_search
from nas_attn.search.flags import build_parser, build_train_parser, main, train_main
from nas_attn.search.folder import check_run_files
from nas_attn.search.inputs import data_handle, dataset_info, load_search_data
from nas_attn.search.process import ProcessSettings, process_settings, ray_session

__all__ = ["WRITE_FAILURES", "ProcessSettings", "SearchResult", "build_parser", "build_train_parser",
           "check_run_files", "data_handle", "dataset_info", "load_search_data", "main", "process_settings",
           "ray_session", "resume_command", "run_attempt", "run_search", "train_main"]
