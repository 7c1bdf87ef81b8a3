"""The jobs the commands run: ``hpo run`` (:mod:`.search`, :mod:`.workers`), ``hpo fixed``
(:mod:`.fixed`), ``hpo compare`` (:mod:`.compare`), ``hpo matrix`` (:mod:`.matrix`) and
``hpo export`` (:mod:`.export`). Each records what it did through
:mod:`hpo_vidpred.store.records`."""
