"""Fixtures shared by the test files (the test defaults for every test are in the root conftest.py)."""

import pytest


@pytest.fixture()
def run_cache(monkeypatch, tmp_path):
    """An empty chapter run cache (``COURSE_RUNS``) for one test; its folder."""
    monkeypatch.setenv("COURSE_RUNS", str(tmp_path / "runs"))
    return tmp_path / "runs"
