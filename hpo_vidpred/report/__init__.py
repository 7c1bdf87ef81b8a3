"""``hpo report``: the report of a study store (:func:`write_report`), readable offline.

- :mod:`.collect` reads the store into search studies, comparisons and the rest;
- :mod:`.overview` the overview table across datasets, architectures and cells, and the budget
  and device banner of every page;
- :mod:`.tables` gathers the numbers (pandas) into the comparison tables and ``results.csv``;
- :mod:`.studies` the search studies' tables; :mod:`.figures` plotly figures and PNG strips;
- :mod:`.render` writes them: index.html, study pages, tables.md, tables.tex, results.csv.

Needs no torch: it reads what the studies recorded (:mod:`hpo_vidpred.store.records`).
"""

from __future__ import annotations

from .render import default_out, write_report

__all__ = ["write_report", "default_out"]
