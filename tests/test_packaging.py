"""`pip install .` works: the project builds as a wheel holding its four Django packages
with their migrations, templates and static files, and the LICENSE it declares."""

from __future__ import annotations

import shutil
import subprocess
import zipfile
from pathlib import Path

from tests.support import PROJECT_DIR, PYTHON

# Building runs setuptools in pip's isolated build environment: a guard, not a speed limit.
BUILD_BOUND = 300


def test_the_project_builds_a_wheel_with_everything_it_needs(tmp_path: Path):
    source = tmp_path / "source"
    # A copy, so the build's scratch files (build/, *.egg-info) never land in the work tree.
    shutil.copytree(PROJECT_DIR, source, ignore=shutil.ignore_patterns(
        ".git", ".venv", "var", "build", "*.egg-info", "__pycache__", ".pytest_cache", "*.sqlite3"))
    completed = subprocess.run([PYTHON, "-m", "pip", "wheel", "--no-deps", "--quiet", "-w", str(tmp_path), str(source)],
                               capture_output=True, text=True, timeout=BUILD_BOUND)
    assert completed.returncode == 0, completed.stderr[-3000:]
    [wheel] = tmp_path.glob("hitl_review-*.whl")
    names = set(zipfile.ZipFile(wheel).namelist())
    for required in ("config/settings.py", "config/asgi.py", "contracts/graph/nodes.py",
                     "reviews/migrations/0001_initial.py", "tenants/management/commands/seed_demo.py",
                     "reviews/templates/admin/reviews/reviewtask/decide.html",
                     "reviews/static/reviews/queue.js"):
        assert required in names, required
    assert not any(name.startswith(("tests/", "bench/")) for name in names)
    metadata = next(name for name in names if name.endswith(".dist-info/METADATA"))
    text = zipfile.ZipFile(wheel).read(metadata).decode()
    assert "License-Expression: Apache-2.0" in text
    assert any(name.endswith("licenses/LICENSE") for name in names)
