"""The study store: connecting to it (:mod:`.connect`), what studies record (:mod:`.records`) and
a trial's life in a shared study (:mod:`.lifecycle`). The only package that touches Optuna's
private names, all of them in :mod:`.optuna_private`. ``hpo_vidpred.store`` offers what
:mod:`.connect` does."""

from __future__ import annotations

from .connect import *  # noqa: F403 (the connection functions are the package's own)
from .connect import __all__  # noqa: F401
