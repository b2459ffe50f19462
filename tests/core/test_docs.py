"""The docs stand on their own: no reference outside the repository, links that resolve, and
the shell blocks marked ``sh runnable`` run as written."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
PAGES = [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]
OUTSIDE = re.compile(r"(?<!\.)\.\./|shared/|seeds/|DECISIONS\.md|ARCHITECTURE\.md|STYLE\.md|"
                     r"research/|spec/requirements")
LINK = re.compile(r"\]\(([^)#\s]+)(?:#[^)]*)?\)")
BLOCK = re.compile(r"```sh runnable\n(.*?)```", re.S)


@pytest.mark.parametrize("page", PAGES, ids=lambda p: p.name)
def test_no_reference_outside_the_repository(page: Path) -> None:
    text = page.read_text("utf-8")
    assert OUTSIDE.findall(text) == [], page
    for target in LINK.findall(text):
        if "://" in target or target.startswith("mailto:"):
            continue
        assert (page.parent / target).exists(), f"{page.name} links to missing {target}"


def runnable_blocks() -> list[tuple[str, str]]:
    out = []
    for page in PAGES:
        for n, block in enumerate(BLOCK.findall(page.read_text("utf-8"))):
            out.append((f"{page.name}:{n}", block))
    return out


def test_there_are_runnable_blocks() -> None:
    assert len(runnable_blocks()) >= 1


@pytest.mark.parametrize(("where", "block"), runnable_blocks(), ids=lambda v: str(v)[:40])
def test_runnable_blocks_run_as_written(where: str, block: str, tmp_path: Path) -> None:
    """In a fresh folder, with this test environment standing in for the project's ``.venv``."""
    venv = tmp_path / ".venv"
    venv.mkdir()
    (venv / "bin").symlink_to(Path(sys.executable).parent)
    env = {k: v for k, v in os.environ.items() if not k.startswith("GONGLUN_")}
    result = subprocess.run(["bash", "-euo", "pipefail", "-c", block], cwd=tmp_path, env=env,
                            capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, f"{where}\n{result.stdout[-2000:]}\n{result.stderr[-3000:]}"
    assert "Traceback" not in result.stderr, result.stderr[-3000:]
