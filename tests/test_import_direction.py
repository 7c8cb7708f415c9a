"""The direction between the apps is a checked contract, not a convention: the
[tool.importlinter] contracts in pyproject.toml (tenants imports no other app; reviews'
domain never calls the orchestrator; the drive reaches review tasks only through
reviews' services and selectors; selectors import no services)."""

from __future__ import annotations

import subprocess
from pathlib import Path

import pytest

from tests.support import PROJECT_DIR, PYTHON

pytestmark = pytest.mark.embedded


def test_every_import_contract_is_kept():
    lint = Path(PYTHON).with_name("lint-imports")
    result = subprocess.run([str(lint), "--no-cache"], cwd=PROJECT_DIR, capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "0 broken" in result.stdout
