"""``hpo store prepare``: create (or check) the study of an ``hpo run`` command line without
running a trial -- once, before jobs on many machines (a Slurm array, a Kubernetes Indexed Job)
join it with that same command (docs/deploy.md). Bad flags, a search-space error, a study of the
same name with another spec, a warm start that cannot warm it or an unreachable store are then
one line at submission time, not one line in each of N job logs. ``hpo run`` opens its study
through the same function (:func:`open_run_study`), so the two check the same things."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import optuna

from ..store import mask_url, open_storage
from ..store.records import trial_counts
from ..study.plan import StudyPlan, check_flags, open_run_study

__all__ = ["format_prepared", "prepare_study"]


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
