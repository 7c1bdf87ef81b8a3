"""``hpo store prepare``: create (or check) the study of an ``hpo run`` command line without
running a trial -- once, before jobs on many machines (a Slurm array, a Kubernetes Indexed Job)
join it with that same command (docs/deploy.md). Bad flags, a search-space error, a study of the
same name with another spec or an unreachable store are then one line at submission time, not
one line in each of N job logs."""

from __future__ import annotations

from typing import Any

import optuna

from ..errors import HpoError
from ..store import mask_url, open_storage, study_lock
from ..store.records import trial_counts
from .search import StudyPlan, adopt_recorded, open_search_study

__all__ = ["format_prepared", "prepare_study"]


def prepare_study(plan: StudyPlan, storage_url: str, trials: int) -> dict[str, Any]:
    """Create the plan's study in the store at ``storage_url`` (or check that the existing one
    has the same spec) under the study lock, as ``hpo run`` does, and count its trials."""
    if trials < 1:
        raise HpoError("--trials must be at least 1")
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    storage = open_storage(storage_url)
    with study_lock(storage, plan.name):
        existed = plan.name in optuna.get_all_study_names(storage)
        study = open_search_study(adopt_recorded(plan, storage), storage)
    counts = trial_counts(study.get_trials(deepcopy=False))
    return {"study": plan.name, "storage": mask_url(storage_url), "created": not existed,
            "target": trials, **counts}


def format_prepared(summary: dict[str, Any]) -> str:
    """One line: the study, whether it was created, how far it is."""
    verb = "created" if summary["created"] else "exists"
    line = (f"study {summary['study']} {verb} on {summary['storage']}: {summary['finished']}/"
            f"{summary['target']} finished trials")
    if summary["finished"] >= summary["target"]:
        return line + ("; jobs with this command will run nothing (--trials is the study's "
                       "total: raise it to add trials)")
    return line + (f"; jobs running the same 'hpo run' command join it until "
                   f"{summary['target']} trials have finished")
