"""Engine, sessions and migrations.

SQLite runs in WAL mode with `synchronous=FULL`, foreign keys on and a busy timeout, set on every
connection. The schema is created and upgraded only by Alembic (`migrate()`), at start-up.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from alembic import command
from alembic.config import Config
from sqlalchemy import Engine, create_engine, event
from sqlalchemy.exc import OperationalError
from sqlalchemy.orm import Session, sessionmaker

from docqa.errors import StorageFull

SQLITE_FULL = 13  # "database or disk is full"

PROJECT_ROOT = Path(__file__).resolve().parents[2]


def alembic_config(url: str) -> Config:
    cfg = Config(str(PROJECT_ROOT / "alembic.ini"))
    cfg.set_main_option("script_location", str(PROJECT_ROOT / "migrations"))
    cfg.set_main_option("sqlalchemy.url", url.replace("%", "%%"))
    cfg.attributes["configure_logger"] = False
    return cfg


def migrate(url: str) -> None:
    """Upgrade the database at `url` to the newest schema."""
    if url.startswith("sqlite:///"):
        Path(url.removeprefix("sqlite:///")).parent.mkdir(parents=True, exist_ok=True)
    command.upgrade(alembic_config(url), "head")


def _sqlite_pragmas(dbapi_conn, _record) -> None:  # type: ignore[no-untyped-def]
    cur = dbapi_conn.cursor()
    cur.execute("PRAGMA journal_mode=WAL")
    cur.execute("PRAGMA synchronous=FULL")
    cur.execute("PRAGMA foreign_keys=ON")
    cur.execute("PRAGMA busy_timeout=10000")
    cur.close()


def make_engine(url: str) -> Engine:
    if url.startswith("sqlite"):
        engine = create_engine(url, connect_args={"check_same_thread": False, "timeout": 10})
        event.listen(engine, "connect", _sqlite_pragmas)
        return engine
    return create_engine(url, pool_pre_ping=True)


class Database:
    """The engine and a session factory; `with db.transaction() as s:` commits or rolls back."""

    def __init__(self, url: str) -> None:
        self.url = url
        self.engine = make_engine(url)
        self._sessions = sessionmaker(self.engine, expire_on_commit=False)

    @contextmanager
    def transaction(self) -> Iterator[Session]:
        with _disk_full_is_507(), self._sessions() as session, session.begin():
            yield session

    @contextmanager
    def immediate(self) -> Iterator[Session]:
        """A write transaction that takes SQLite's write lock up front (`BEGIN IMMEDIATE`): what it
        reads cannot change before it writes, so claim-then-update sequences (job leases) are atomic
        across threads and processes. Other databases get an ordinary transaction."""
        with _disk_full_is_507(), self._sessions() as session:
            if self.engine.dialect.name == "sqlite":
                session.connection().exec_driver_sql("BEGIN IMMEDIATE")
            try:
                yield session
                session.commit()
            except BaseException:
                session.rollback()
                raise

    @contextmanager
    def reader(self) -> Iterator[Session]:
        with self._sessions() as session:
            yield session

    def dispose(self) -> None:
        self.engine.dispose()


@contextmanager
def _disk_full_is_507() -> Iterator[None]:
    """A write that fails because the disk is full is the operator's problem, not a bug: 507 with a
    sentence (the transaction was rolled back, so nothing was half-written)."""
    try:
        yield
    except OperationalError as exc:
        if getattr(exc.orig, "sqlite_errorcode", None) != SQLITE_FULL:
            raise
        raise StorageFull("The server's disk is full: nothing was saved. Try again later or ask the operator "
                          "to free space.") from exc
