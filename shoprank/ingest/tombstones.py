"""Tombstones of forgotten users (``shoprank forget``): their ids pseudonymized with the workdir's
salt in ``raw.forgotten``. Ingest skips the rows of a tombstoned user: re-ingesting an old file
does not bring them back."""

from __future__ import annotations

import hashlib
from datetime import datetime

import duckdb
import polars as pl

USER = "user_id"


def pseudonym(user_id: str, salt: str) -> str:
    """A user's tombstone: the salted SHA-256 of their id, trimmed and lower case (as the dbt macro
    ``pseudonymize`` hashes)."""
    return hashlib.sha256((salt + user_id.strip().lower()).encode()).hexdigest()


def bury(con: duckdb.DuckDBPyConnection, users: list[str], salt: str, now: datetime) -> None:
    """Record the tombstones of ``users`` (inside the caller's transaction)."""
    con.execute("create table if not exists raw.forgotten (user_hash varchar, forgotten_at timestamp)")
    con.executemany("insert into raw.forgotten values (?, ?)", [[pseudonym(user, salt), now] for user in users])


def tombstones(con: duckdb.DuckDBPyConnection) -> set[str]:
    """The warehouse's tombstones (none before the first ``forget``)."""
    (exists,) = con.execute(
        "select count(*) from information_schema.tables where table_schema = 'raw' and table_name = 'forgotten'"
    ).fetchone()
    return {user for (user,) in con.execute("select user_hash from raw.forgotten").fetchall()} if exists else set()


def buried(frame: pl.DataFrame, graves: set[str], salt: str) -> pl.Series:
    """Per row of ``frame``: whether its user is tombstoned (False without a ``user_id`` column)."""
    if not graves or USER not in frame.columns:
        return pl.Series([False] * frame.height)
    users = frame[USER].cast(pl.Utf8)
    dead = [user for user in users.drop_nulls().unique().to_list() if pseudonym(user, salt) in graves]
    return users.is_in(dead).fill_null(False)
