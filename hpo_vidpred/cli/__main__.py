"""``python -m hpo_vidpred.cli``: the ``hpo`` command."""

from . import entry

entry()
