"""The built wheel works on its own, and the code passes its linters."""

from __future__ import annotations

import os
import shutil
import sqlite3
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent


def run(*argv: str, cwd: Path, env: dict[str, str] | None = None) -> str:
    done = subprocess.run(
        argv, cwd=cwd, env=env, capture_output=True, text=True, timeout=300, check=False
    )
    assert done.returncode == 0, done.stdout + done.stderr
    return done.stdout


@pytest.fixture(scope="module")
def installed_wheel(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The project built into a wheel offline and installed into a folder of its own."""
    work = tmp_path_factory.mktemp("wheel")
    source = work / "src"
    shutil.copytree(ROOT, source, ignore=shutil.ignore_patterns(".venv", ".git", "*.db*", "dist"))
    pip = [sys.executable, "-m", "pip", "--disable-pip-version-check", "-q"]
    run(
        *pip,
        "wheel",
        "--no-deps",
        "--no-build-isolation",
        "-w",
        str(work / "dist"),
        ".",
        cwd=source,
    )
    (wheel,) = (work / "dist").glob("batch_crawler-*.whl")
    target = work / "site"
    run(*pip, "install", "--no-deps", "--target", str(target), str(wheel), cwd=work)
    return target


def test_installed_wheel_finds_its_migrations_and_creates_a_database(
    installed_wheel: Path, tmp_path: Path
) -> None:
    """From the wheel alone (no checkout on the path), the migrations load and apply."""
    env = {**os.environ, "PYTHONPATH": str(installed_wheel)}
    script = tmp_path / "check.py"
    script.write_text(
        "import asyncio, sys\n"
        "from pathlib import Path\n"
        "import crawler\n"
        "from crawler.store.schema import load_migrations\n"
        "from crawler.store import open_store\n"
        "assert crawler.__file__.startswith(sys.argv[1]), crawler.__file__\n"
        "async def main():\n"
        "    async with open_store(Path('w.db')):\n"
        "        pass\n"
        "asyncio.run(main())\n"
        "print(len(load_migrations()))\n"
    )
    out = run(sys.executable, "-P", str(script), str(installed_wheel), cwd=tmp_path, env=env)
    assert int(out) >= 1
    with sqlite3.connect(tmp_path / "w.db") as conn:
        assert conn.execute("SELECT count(*) FROM schema_migrations").fetchone() == (int(out),)
    version = run(sys.executable, "-P", "-m", "crawler", "--version", cwd=tmp_path, env=env)
    assert version.startswith("batch-crawler ")


def test_ruff_is_clean() -> None:
    """ruff check and ruff format --check pass on the whole project."""
    run(sys.executable, "-m", "ruff", "check", ".", cwd=ROOT)
    run(sys.executable, "-m", "ruff", "format", "--check", ".", cwd=ROOT)


def test_mypy_strict_is_clean() -> None:
    """mypy --strict passes on the package."""
    run(sys.executable, "-m", "mypy", cwd=ROOT)


def test_installed_wheel_is_marked_typed(installed_wheel: Path) -> None:
    """Users' type checkers read the package's types (PEP 561)."""
    assert (installed_wheel / "crawler" / "py.typed").is_file()


def test_every_public_name_loads_from_the_package() -> None:
    """The package loads its names on first use: each one named in __all__ is there."""
    import crawler  # noqa: PLC0415 (the package's own loading is what is tested)

    missing = [name for name in crawler.__all__ if getattr(crawler, name, None) is None]
    assert missing == []
    assert crawler.sync.__module__ == "crawler.sync_run"
