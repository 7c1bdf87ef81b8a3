"""Recurrent cells, registered by name: ``convlstm`` (Shi et al. 2015) and ``stlstm`` (Wang et
al. 2017). Every cell has ``init_state(batch, height, width)`` and
``forward(x_t, state) -> (h_t, state)`` (see :class:`Cell`); architectures choose one by name
through :func:`create_cell`."""

from __future__ import annotations

from ._base import CELLS, Cell, State, adapt_memory
from .convlstm import PEEPHOLES, ConvLSTM
from .stlstm import STLSTM

__all__ = [
    "CELLS",
    "PEEPHOLES",
    "Cell",
    "ConvLSTM",
    "STLSTM",
    "State",
    "adapt_memory",
    "create_cell",
]


def create_cell(
    name: str, in_channels: int, hidden: int, kernel: int = 3, peephole: str = "none"
) -> Cell:
    """A cell by registry name; unknown names (and unknown peephole modes) are an ``HpoError``
    listing the valid ones."""
    PEEPHOLES.get(peephole)  # validate for every cell, so a typo never passes silently
    return CELLS.get(name)(in_channels, hidden, kernel, peephole=peephole)
