"""Fixtures of the deployment tests: a tiny search space (the servers of tests/clusters.py and a
fresh database on the shared test PostgreSQL are in tests/conftest.py)."""

from __future__ import annotations

from pathlib import Path

import pytest
from deploy_helpers import TINY


@pytest.fixture
def tiny_space(tmp_path: Path) -> str:
    path = tmp_path / "tiny.yaml"
    path.write_text(TINY)
    return str(path)
