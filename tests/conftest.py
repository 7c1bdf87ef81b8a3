"""Shared fixtures and the skip rules for the ``gpu`` and ``postgres`` markers."""

from __future__ import annotations

import os
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
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


def postgres_test_url() -> str:
    """URL of the real PostgreSQL server for the ``postgres`` tests (skips without one)."""
    url = os.environ.get("HPO_TEST_POSTGRES_URL")
    if not url:
        pytest.skip("HPO_TEST_POSTGRES_URL not set")
    return url


@contextmanager
def fresh_database(server_url: str) -> Iterator[str]:
    """A new, empty PostgreSQL database on the server of ``server_url``, dropped afterwards."""
    from sqlalchemy import create_engine, text
    from sqlalchemy.engine import make_url

    name = f"hpo_fresh_{uuid.uuid4().hex[:8]}"
    admin = create_engine(make_url(server_url).set(database="postgres"),
                          isolation_level="AUTOCOMMIT")
    with admin.connect() as conn:
        conn.execute(text(f'CREATE DATABASE "{name}"'))
    try:
        yield make_url(server_url).set(database=name).render_as_string(hide_password=False)
    finally:
        with admin.connect() as conn:
            conn.execute(text(f'DROP DATABASE "{name}" WITH (FORCE)'))
        admin.dispose()


@pytest.fixture
def postgres_url() -> str:
    """URL of a real PostgreSQL server for the ``postgres`` tests."""
    return postgres_test_url()


@pytest.fixture
def fresh_postgres(postgres_url: str):
    """A new, empty PostgreSQL database on the test server, dropped afterwards."""
    with fresh_database(postgres_url) as url:
        yield url


@pytest.fixture(scope="module")
def module_postgres():
    """A new PostgreSQL database for a module's tests (each test empties it first)."""
    with fresh_database(postgres_test_url()) as url:
        yield url


def _server(kind: str, what: str):
    """A server of tests/clusters.py, removed afterwards; skipped (failed where required)
    where this machine cannot run it."""
    import clusters

    try:
        server = getattr(clusters, kind)()
    except clusters.Unavailable as exc:
        clusters.unavailable(f"no {what} here: {exc}")
    yield server
    server.remove()


@pytest.fixture
def pg_cluster():
    """A throwaway PostgreSQL cluster of its own (it may be stopped and started)."""
    yield from _server("ThrowawayPostgres", "throwaway PostgreSQL cluster")


@pytest.fixture
def slurm():
    """A single-node Slurm (munged, slurmctld, slurmd) of its own."""
    yield from _server("SingleNodeSlurm", "single-node Slurm")


@pytest.fixture(autouse=True)
def _no_outage(monkeypatch: pytest.MonkeyPatch) -> None:
    """An outage of the store that one test provoked (hpo_vidpred/store/retry.py keeps it for the
    process) is not the next test's: its deadline and its stale-check pause stay there."""
    from hpo_vidpred.store import retry

    monkeypatch.setattr(retry, "_outage", {"at": float("-inf"), "since": None, "until": None,
                                           "store": None})


@pytest.fixture(autouse=True)
def _isolated_cwd(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """Every test runs in its own empty directory, so the default store (studies/hpo.db) and the
    default model/data folders never touch the checkout."""
    monkeypatch.chdir(tmp_path)
    for var in ("HPO_STORAGE", "HPO_DATA_DIR", "HPO_MODELS_DIR", "HPO_STUDIES_DIR"):
        monkeypatch.delenv(var, raising=False)
    return tmp_path
