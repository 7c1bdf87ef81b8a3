"""Search spaces: the YAML format of ``studies/<arch>.yaml``, its validation and its sampling.

A file has three top-level keys::

    arch: autoencoder              # optional; must match --arch when given
    fixed:                         # optional; values every trial uses (over the seed's fixed config)
      schedule: cosine
    params:                        # what the sampler chooses, in this order
      lr:          {type: float, low: 1.0e-4, high: 1.0e-2, log: true}
      batch_size:  {type: categorical, choices: [8, 16, 32]}
      depth:       {type: int, low: 1, high: 3}
      hidden:      {type: int, low: 16, high: 128, log: true, per_layer: depth}
      l_all:       {type: float, low: 0.0, high: 0.5, when: {layer_loss: all}}

Parameter keys: ``type`` (float | int | categorical); float and int take ``low``, ``high``
(inclusive), ``log`` (log-uniform, low > 0) or ``step`` (a grid), not both; categorical takes a
non-empty list ``choices``. Two keys make a space conditional: ``per_layer: P`` samples one value
per layer, ``name_1 .. name_P`` (P an int parameter declared above), and hands the architecture a
tuple; ``when: {Q: v}`` (or ``{Q: [v, w]}``) samples the parameter only when Q, declared above or
fixed, has one of those values. A name must be something the architecture takes
(:func:`hpo_vidpred.archs.config_keys`), a :class:`~hpo_vidpred.specs.TrainSpec` field other than
those the budget and the device set, or ``cell`` / ``peephole``; the one exception is a helper
(such as ``depth``) that only other parameters refer to. Everything is checked before anything
runs, each problem as one line.
"""

from __future__ import annotations

from ._file import from_record, load_search_space
from ._space import MODEL_KEYS, TRAIN_KEYS, Param, SearchSpace, param_base

__all__ = ["MODEL_KEYS", "TRAIN_KEYS", "Param", "SearchSpace", "from_record",
           "load_search_space", "param_base"]
