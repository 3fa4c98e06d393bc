"""A workdir's identity: a random id and the absolute path it was made at (``WORKDIR/identity.json``).

Workdirs on the production profile share Redis and PostgreSQL, so each one's default Feast project
is named after its id. A copy (``cp -r``) carries its original's file; it is recognised because the
recorded path differs and the original is still there with the same id, and gets an id of its own.
A moved workdir (nothing with its id left at the recorded path) keeps its id and records its new path.
"""

from __future__ import annotations

import fcntl
import json
import os
import re
from dataclasses import dataclass
from pathlib import Path
from uuid import uuid4

from shoprank.errors import ConfigError

IDENTITY_FILE = "identity.json"


@dataclass(frozen=True)
class Identity:
    """Who a workdir is: ``id`` (32 hex digits, random) and the absolute ``path`` it lives at."""

    id: str
    path: Path


def identify(workdir: Path) -> Identity:
    """The workdir's identity: made on first use, renewed in a copy, its path updated after a move.

    Raises:
        ConfigError: The identity file is not one this module wrote.
    """
    here = workdir.resolve()
    here.mkdir(parents=True, exist_ok=True)
    path = here / IDENTITY_FILE
    with path.open("a+", encoding="utf-8") as file:
        fcntl.flock(file, fcntl.LOCK_EX)  # two commands starting on a fresh copy agree on one id
        file.seek(0)
        text = file.read()
        recorded = _parse(text, path) if text else None
        identity = _current(recorded, here)
        if identity != recorded:
            file.seek(0)
            file.truncate()
            file.write(json.dumps({"id": identity.id, "path": str(identity.path)}) + "\n")
            file.flush()
            os.fsync(file.fileno())
    return identity


def _current(recorded: Identity | None, here: Path) -> Identity:
    """The identity of the workdir at ``here``, given what its file records."""
    if recorded is None:
        return Identity(uuid4().hex, here)
    if recorded.path == here or _same_file(recorded.path / IDENTITY_FILE, here / IDENTITY_FILE):
        return recorded
    original = recorded.path / IDENTITY_FILE
    try:
        copied = original.is_file() and _parse(original.read_text(encoding="utf-8"), original).id == recorded.id
    except (OSError, ConfigError):  # unreadable or rewritten by hand: not the workdir this one was copied from
        copied = False
    return Identity(uuid4().hex if copied else recorded.id, here)


def _same_file(first: Path, second: Path) -> bool:
    """Whether two paths name one file (a workdir seen through another mount, say)."""
    try:
        return first.samefile(second)
    except OSError:
        return False


def _parse(text: str, path: Path) -> Identity:
    try:
        values = json.loads(text)
        identity = Identity(values["id"], Path(values["path"]))
        valid = re.fullmatch("[0-9a-f]{32}", identity.id) and identity.path.is_absolute()
    except (ValueError, KeyError, TypeError):
        valid = False
    if not valid:
        raise ConfigError(
            f'Workdir identity "{path}" is not {{"id": <32 hex digits>, "path": <absolute path>}}; delete it to '
            "give the workdir a new id (and, on the production profile, a new default Feast project)"
        )
    return identity
