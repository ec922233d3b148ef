"""Numbered SQL migrations, found in the installed package or in a source checkout."""

from __future__ import annotations

import re
from dataclasses import dataclass
from importlib import resources
from importlib.resources.abc import Traversable
from pathlib import Path

# PRAGMA application_id marks a file as ours ("BCRW"), so that we never write into
# some other program's database by mistake.
APPLICATION_ID = 0x42435257

_NAME = re.compile(r"^(\d{4})_([a-z0-9_]+)\.sql$")


@dataclass(frozen=True)
class Migration:
    """One schema step; `version` is its number, applied in increasing order."""

    version: int
    name: str
    sql: str


def _migrations_dir() -> Traversable:
    packaged = resources.files("crawler").joinpath("migrations")
    if packaged.is_dir():
        return packaged
    # Running from a source checkout: the wheel maps the top-level folder into the package.
    return Path(__file__).resolve().parent.parent / "migrations"


def load_migrations() -> list[Migration]:
    """Every migration shipped with this version, in order."""
    found = []
    for entry in _migrations_dir().iterdir():
        match = _NAME.match(entry.name)
        if match:
            found.append(Migration(int(match[1]), match[2], entry.read_text(encoding="utf-8")))
    found.sort(key=lambda m: m.version)
    if not found or [m.version for m in found] != list(range(1, len(found) + 1)):
        raise RuntimeError("migrations are missing or not numbered 0001, 0002, ...")
    return found
