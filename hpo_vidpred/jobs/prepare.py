"""``hpo store prepare``: create (or check) the study of an ``hpo run`` command line without
running a trial -- once, before jobs on many machines (a Slurm array, a Kubernetes Indexed Job)
join it with that same command (docs/deploy.md). Bad flags, a search-space error, a study of the
same name with another spec, a warm start that cannot warm it or an unreachable store are then
one line at submission time, not one line in each of N job logs. ``hpo run`` opens its study
through the same function (:func:`open_run_study`), so the two check the same things."""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

import optuna

from ..errors import HpoError
from ..store import mask_url, open_storage, study_lock
from ..store.records import trial_counts
from .search import StudyPlan, adopt_recorded, open_search_study
from .warm import warm_start

__all__ = ["check_flags", "format_prepared", "open_run_study", "prepare_study"]


def check_flags(*, trials: int, timeout: float | None = None, heartbeat: int = 30,
                grace: int | None = None, threads: int = 0, warm_top: int = 3) -> None:
    """Numbers ``hpo run`` cannot use: one line each, before anything is opened or created."""
    if trials < 1:
        raise HpoError("--trials must be at least 1")
    if timeout is not None and not (math.isfinite(timeout) and timeout > 0):
        raise HpoError("--timeout must be a positive number of seconds")
    if heartbeat < 1 or (grace is not None and grace < 1):
        raise HpoError("--heartbeat (and a grace period) must be at least 1 second")
    if threads < 0:
        raise HpoError("--threads must be 0 (share the cores out) or a positive number")
    if warm_top < 1:
        raise HpoError("--warm-top must be at least 1")


def open_run_study(plan: StudyPlan, storage: Any, trials: int, warm: Sequence[str] = (),
                   warm_top: int = 3) -> tuple[optuna.Study, StudyPlan, list[str], bool]:
    """Under the study lock: create the plan's study, or open it after the one spec check, and
    enqueue the warm starts it has room for (:func:`hpo_vidpred.jobs.warm.warm_start`; a source
    that cannot warm it is one line, and a study created here is deleted again). Returns the
    study, the plan as the study recorded it, the warm start's lines and whether the study
    existed."""
    with study_lock(storage, plan.name):
        existed = plan.name in optuna.get_all_study_names(storage)
        plan = adopt_recorded(plan, storage)
        study = open_search_study(plan, storage)
        plan = plan.as_recorded(study.user_attrs)
        try:
            counts = trial_counts(study.get_trials(deepcopy=False))
            room = trials - counts["finished"] - counts["running"] - counts["waiting"]
            warmed = warm_start(study, storage, warm, plan.space, plan.spec.arch, warm_top,
                                room) if warm else []
        except HpoError:  # a source that cannot warm this study: nothing created
            if not existed:
                optuna.delete_study(study_name=plan.name, storage=storage)
            raise
    return study, plan, warmed, existed


def prepare_study(plan: StudyPlan, storage_url: str, trials: int, *,
                  warm: Sequence[str] = (), warm_top: int = 3, **flags: Any) -> dict[str, Any]:
    """Create the plan's study in the store at ``storage_url`` (or check that the existing one
    has the same spec) and enqueue its warm starts once, as ``hpo run`` does, and count its
    trials. ``flags``: the run's other numbers (``timeout``, ``heartbeat``, ``threads``),
    checked as ``hpo run`` checks them."""
    check_flags(trials=trials, warm_top=warm_top, **flags)
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    storage = open_storage(storage_url)
    study, _, warmed, existed = open_run_study(plan, storage, trials, warm, warm_top)
    counts = trial_counts(study.get_trials(deepcopy=False))
    return {"study": plan.name, "storage": mask_url(storage_url), "created": not existed,
            "target": trials, "warm_start": warmed, **counts}


def format_prepared(summary: dict[str, Any]) -> str:
    """One line: the study, whether it was created, how far it is."""
    verb = "created" if summary["created"] else "exists"
    line = (f"study {summary['study']} {verb} on {summary['storage']}: {summary['finished']}/"
            f"{summary['target']} finished trials")
    if summary["finished"] >= summary["target"]:
        line += ("; jobs with this command will run nothing (--trials is the study's total: "
                 "raise it to add trials)")
    else:
        line += (f"; jobs running the same 'hpo run' command join it until "
                 f"{summary['target']} trials have finished")
    return "\n".join([*summary.get("warm_start", ()), line])
