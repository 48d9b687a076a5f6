"""Shared fixtures: real settings in a temp folder, the real app over ASGI, the real tiny model."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from litestar.testing import TestClient

from docqa.settings import Settings
from docqa.web.app import create_app
from tests.support import LOOPBACK


@pytest.fixture
def settings(tmp_path: Path) -> Settings:
    return Settings(data_dir=tmp_path / "data")


@pytest.fixture
def client(settings: Settings) -> Iterator[TestClient]:
    with TestClient(create_app(settings), base_url=LOOPBACK) as c:
        yield c


def stored_files(settings: Settings) -> list[Path]:
    """Every file under the blob store, temp files included."""
    root = settings.blobs_dir
    return sorted(p for p in root.rglob("*") if p.is_file()) if root.exists() else []
