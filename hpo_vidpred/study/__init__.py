"""``hpo run``'s study: the plan (:mod:`.plan`), how configurations are proposed and given compute
(:mod:`.strategy`, :mod:`.goals`, :mod:`.promote`, :mod:`.rung_tpe`, :mod:`.sobol`), one trial's
life (:mod:`.trial`, :mod:`.objective`, :mod:`.segments`), the worker pool (:mod:`.pool`,
:mod:`.progress`), warm starts (:mod:`.warm`) and the summary (:mod:`.summary`)."""
