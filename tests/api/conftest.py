"""Fixtures of the API tests.

`database`: a fresh, empty snapshot store URL, parametrized over SQLite (a file under
tmp_path) and PostgreSQL (a fresh schema per test on the server named by
CROSSMARGIN_TEST_PG, dropped afterwards). Without CROSSMARGIN_TEST_PG, or with the
server unreachable, the PostgreSQL cases skip locally and FAIL when CI=true.
"""

from __future__ import annotations

import contextlib
import os
import secrets
from collections.abc import Iterator
from pathlib import Path

import pytest
from sqlalchemy import create_engine, text
from sqlalchemy.engine import make_url
from sqlalchemy.exc import OperationalError

from api.store import normalise_url

PG_ENV = "CROSSMARGIN_TEST_PG"
SESSION = secrets.token_hex(4)


def _in_ci() -> bool:
    return os.environ.get("CI", "").lower() in ("1", "true", "yes")


def _unusable(reason: str) -> None:
    if _in_ci():
        pytest.fail(f"PostgreSQL tests must run in CI: {reason}", pytrace=False)
    pytest.skip(f"PostgreSQL tests skipped: {reason}")


@pytest.fixture(scope="session")
def pg_server() -> Iterator[str | None]:
    """The PostgreSQL base URL, checked once; None if not configured or unreachable."""
    raw = os.environ.get(PG_ENV)
    if not raw:
        yield None
        return
    url = normalise_url(raw)
    engine = create_engine(url, connect_args={"connect_timeout": 5})
    try:
        with engine.connect() as conn:
            conn.execute(text("select 1"))
    except OperationalError:
        engine.dispose()
        yield "unreachable:" + make_url(url).render_as_string(hide_password=True)
        return
    yield url
    with engine.connect() as conn:  # drop whatever a crashed test left behind
        rows = conn.execute(
            text("select nspname from pg_namespace where nspname like :p"),
            {"p": f"cmt_{SESSION}_%"},
        ).scalars()
        for schema in list(rows):
            conn.execute(text(f'drop schema if exists "{schema}" cascade'))
        conn.commit()
    engine.dispose()


@contextlib.contextmanager
def pg_schema(base: str) -> Iterator[str]:
    """A fresh schema on the server; the URL puts it first on the search_path."""
    schema = f"cmt_{SESSION}_{secrets.token_hex(4)}"
    admin = create_engine(base, isolation_level="AUTOCOMMIT")
    try:
        with admin.connect() as conn:
            conn.execute(text(f'create schema "{schema}"'))
        url = make_url(base).update_query_dict({"options": f"-csearch_path={schema}"})
        yield url.render_as_string(hide_password=False)
        with admin.connect() as conn:
            conn.execute(text(f'drop schema if exists "{schema}" cascade'))
    finally:
        admin.dispose()


@pytest.fixture
def pg_base(pg_server: str | None) -> str:
    """The PostgreSQL server's URL; skips (fails with CI=true) when there is none."""
    if pg_server is None:
        _unusable(f"{PG_ENV} is not set")
    elif pg_server.startswith("unreachable:"):
        _unusable(f"cannot connect to {pg_server.removeprefix('unreachable:')}")
    assert pg_server is not None
    return pg_server


@pytest.fixture
def pg_database(pg_base: str) -> Iterator[str]:
    """A fresh schema on the PostgreSQL server (no SQLite case)."""
    with pg_schema(pg_base) as url:
        yield url


@pytest.fixture(params=["sqlite", "postgres"])
def database(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[str]:
    if request.param == "sqlite":
        yield f"sqlite:///{tmp_path / 'snapshots.db'}"
        return
    with pg_schema(request.getfixturevalue("pg_base")) as url:
        yield url
