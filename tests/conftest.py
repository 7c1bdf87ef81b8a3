"""Shared fixtures and the skip rules for the ``gpu`` and ``postgres`` markers."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
import torch

# Tiny recurrent convolutions run fastest on one thread, and a shared 2-core machine makes the second
# thread a straggler (5-60x slower tests with the default). Worker subprocesses keep torch's default.
torch.set_num_threads(1)

REPO = Path(__file__).resolve().parents[1]
SHARED_DATA = REPO.parent / "shared" / "data"  # real data beside a developer checkout (optional)


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    postgres_url = os.environ.get("HPO_TEST_POSTGRES_URL")
    required = os.environ.get("HPO_REQUIRE_POSTGRES") == "1"
    for item in items:
        if "gpu" in item.keywords and not torch.cuda.is_available():
            item.add_marker(pytest.mark.skip(reason="needs CUDA (no GPU on this machine)"))
        if "postgres" in item.keywords and not postgres_url:
            if required:
                item.add_marker(
                    pytest.mark.xfail(reason="HPO_REQUIRE_POSTGRES=1 but HPO_TEST_POSTGRES_URL unset",
                                      run=False, strict=True)
                )
            else:
                item.add_marker(
                    pytest.mark.skip(reason="needs PostgreSQL: set HPO_TEST_POSTGRES_URL "
                                     "(e.g. postgresql+psycopg://postgres@127.0.0.1:5432/test)")
                )


@pytest.fixture
def postgres_url() -> str:
    """URL of a real PostgreSQL server for the ``postgres`` tests."""
    url = os.environ.get("HPO_TEST_POSTGRES_URL")
    if not url:
        pytest.skip("HPO_TEST_POSTGRES_URL not set")
    return url


@pytest.fixture(autouse=True)
def _isolated_cwd(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """Every test runs in its own empty directory, so the default store (studies/hpo.db) and the
    default model/data folders never touch the checkout."""
    monkeypatch.chdir(tmp_path)
    for var in ("HPO_STORAGE", "HPO_DATA_DIR", "HPO_MODELS_DIR", "HPO_STUDIES_DIR"):
        monkeypatch.delenv(var, raising=False)
    return tmp_path
