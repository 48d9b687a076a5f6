"""Shared fixtures: real settings in a temp folder, the real app over ASGI, the real tiny model, and the
database: SQLite by default; tests marked `both_databases` run once on SQLite and once on a real
PostgreSQL server (tests/pg.py: one throwaway cluster per run, one fresh database per test, copied
from a template migrated once).
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

import pytest
from litestar.testing import TestClient

from docqa.settings import Settings
from docqa.store.db import migrate
from docqa.web.app import create_app
from tests.pg import Cluster
from tests.support import LOOPBACK

BACKENDS = ("sqlite", "postgresql")
# Read-ahead (readahead.py) would read every session's documents in the background and change what the
# other tests measure (prefix sources, restarts, timings); its own tests (test_readahead.py) turn it on.
os.environ.setdefault("DOCQA_READ_AHEAD", "false")
os.environ.setdefault("DOCQA_PRELOAD", "false")  # tests load models when they ask (test_runner.py tests preloading)
# The models in this machine's Ollama / LM Studio / Hugging Face folders would change what /api/models lists;
# test_discovery.py builds those folders in a temporary HOME and turns discovery on.
os.environ.setdefault("DOCQA_DISCOVER_MODELS", "false")
# No test reaches a model hub: whatever would (a fuzzed pull, a recommendation for hf:…) is refused as offline;
# the pull tests point HF_ENDPOINT at their loopback hub (tests/fake_hub.py) and turn this off.
os.environ["HF_HUB_OFFLINE"] = "1"


@pytest.fixture(scope="module")
def browser() -> Iterator[object]:
    """Debian's Chromium through Playwright, one per test module (tests/browser.py launches it)."""
    from tests.browser import launch_chromium

    sync_api = pytest.importorskip("playwright.sync_api", reason="playwright is in the test extra")
    with sync_api.sync_playwright() as p:
        chromium = launch_chromium(p)
        yield chromium
        chromium.close()


def pytest_generate_tests(metafunc: pytest.Metafunc) -> None:
    if "database_url" in metafunc.fixturenames and metafunc.definition.get_closest_marker("both_databases"):
        metafunc.parametrize("database_url", BACKENDS, indirect=True)


@pytest.fixture(scope="session")
def pg_cluster() -> Iterator[Cluster]:
    cluster = Cluster().start()
    try:
        yield cluster
    finally:
        cluster.remove()


@pytest.fixture(scope="session")
def pg_template(pg_cluster: Cluster) -> str:
    """A database migrated to head once; every test's database is a copy of it."""
    name = pg_cluster.create_database()
    migrate(pg_cluster.url(name))
    return name


@pytest.fixture
def pg_url(pg_cluster: Cluster, pg_template: str) -> Iterator[str]:
    """A fresh, migrated PostgreSQL database of the run's cluster, dropped afterwards."""
    name = pg_cluster.create_database(template=pg_template)
    try:
        yield pg_cluster.url(name)
    finally:
        pg_cluster.drop_database(name)


@pytest.fixture
def database_url(request: pytest.FixtureRequest) -> str | None:
    """None (the default SQLite file in the data folder) or a fresh PostgreSQL database's URL."""
    backend = getattr(request, "param", "sqlite")
    if backend == "sqlite":
        return None
    return str(request.getfixturevalue("pg_url"))


@pytest.fixture
def settings(tmp_path: Path, database_url: str | None) -> Settings:
    return Settings(data_dir=tmp_path / "data", database_url=database_url)


@pytest.fixture
def client(settings: Settings) -> Iterator[TestClient]:
    with TestClient(create_app(settings), base_url=LOOPBACK) as c:
        yield c


def stored_files(settings: Settings) -> list[Path]:
    """Every file under the blob store, temp files included."""
    root = settings.blobs_dir
    return sorted(p for p in root.rglob("*") if p.is_file()) if root.exists() else []
