"""A plain (non-editable) wheel works from any directory (issue 15, part 1): the
templates and the migrations ship inside the package. The wheel is built from this
checkout, installed into a fresh virtual environment (its dependencies are this
environment's, reached through a path file: no download), and run from a folder
that holds nothing of the repository."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import sysconfig
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]

pytestmark = pytest.mark.slow


def run(
    *args: str | Path, cwd: Path, env: dict[str, str] | None = None, input: str | None = None
) -> str:
    done = subprocess.run(
        [str(a) for a in args],
        cwd=cwd,
        env=env,
        input=input,
        capture_output=True,
        text=True,
        timeout=240,
    )
    assert done.returncode == 0, f"{args}: {done.stdout[-2000:]}\n{done.stderr[-2000:]}"
    return done.stdout


def test_the_wheel_runs_from_another_directory(tmp_path: Path) -> None:
    # Built from a copy: setuptools' build/ folder must neither come from nor go to
    # the checkout (a stale one would hide a missing package-data line).
    source = tmp_path / "source"
    shutil.copytree(
        ROOT,
        source,
        ignore=shutil.ignore_patterns(
            ".git", ".venv", "build", "*.egg-info", "__pycache__", ".*_cache", "pira-*", "*.db"
        ),
    )
    wheels = tmp_path / "wheels"
    run(sys.executable, "-m", "pip", "wheel", "--no-deps", "-q", "-w", wheels, source, cwd=tmp_path)
    [wheel] = wheels.glob("pira-*.whl")
    venv = tmp_path / "venv"
    run(sys.executable, "-m", "venv", venv, cwd=tmp_path)
    purelib = Path(
        run(
            venv / "bin" / "python",
            "-c",
            "import sysconfig; print(sysconfig.get_paths()['purelib'])",
            cwd=tmp_path,
        ).strip()
    )
    # The dependencies: this environment's site-packages, as a plain path (its own
    # path files — the editable install of this checkout among them — not processed).
    (purelib / "deps.pth").write_text(sysconfig.get_paths()["purelib"] + "\n")
    run(venv / "bin" / "python", "-m", "pip", "install", "--no-deps", "-q", wheel, cwd=tmp_path)

    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    env = {k: v for k, v in os.environ.items() if not k.startswith(("PIRA_", "PYTHON"))}
    env.update(PIRA_LOG_FILE=str(elsewhere / "console.log"))
    where = run(
        venv / "bin" / "python",
        "-c",
        "import bot, bot.render; print(bot.__file__); print(bot.render.TEMPLATES)",
        cwd=elsewhere,
        env=env,
    ).splitlines()
    assert where[0].startswith(str(purelib)), where  # the wheel's, not this checkout
    assert where[1] == str(purelib / "bot" / "templates")

    checked = run(venv / "bin" / "pira", "config", "check", cwd=elsewhere, env=env)
    assert "the runbook's defaults are in force" in checked
    out = run(
        venv / "bin" / "pira",
        "console",
        cwd=elsewhere,
        env=env,
        input="/incident p1 jobs failing\n/resolve fixed\n",
    )
    assert "[#incidents] 🚨 [P1] Incident: jobs failing" in out
    assert "Incident Resolved: jobs failing" in out
    assert (elsewhere / "pira.db").exists()  # migrated there, from the wheel's migrations
