"""Cells are chosen by name; a wrong name says which exist."""

from __future__ import annotations

import pytest

from hpo_vidpred.cells import CELLS, Cell, create_cell
from hpo_vidpred.errors import HpoError


def test_registered_cells() -> None:
    assert CELLS.names() == ["convlstm", "stlstm"]
    for name in CELLS.names():
        cell = create_cell(name, 2, 3, 5)
        assert isinstance(cell, Cell) and (cell.in_channels, cell.hidden, cell.kernel) == (2, 3, 5)


def test_unknown_cell_lists_the_valid_ones() -> None:
    with pytest.raises(HpoError, match="unknown cell 'gru'; choose one of: convlstm, stlstm"):
        create_cell("gru", 1, 4)
