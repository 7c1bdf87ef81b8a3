"""What the commands do beyond one study: ``hpo fixed`` (:mod:`.fixed`), ``hpo compare``
(:mod:`.compare`, :mod:`.compare_plan`), ``hpo matrix`` (:mod:`.matrix`), ``hpo export``
(:mod:`.export`), ``hpo store prepare`` (:mod:`.prepare`). Each records what it did through
:mod:`hpo_vidpred.store.records`."""
