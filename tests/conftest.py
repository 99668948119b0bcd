"""Fixtures shared by the test files (the test defaults for every test are in the root conftest.py)."""

import pytest


@pytest.fixture()
def run_cache(monkeypatch, tmp_path):
    """An empty chapter run cache (``COURSE_RUNS``) for one test; its folder."""
    monkeypatch.setenv("COURSE_RUNS", str(tmp_path / "runs"))
    return tmp_path / "runs"


@pytest.fixture()
def refused(capsys):
    """Run ``python -m tutorial_utils ...`` expecting a refusal: exit code 2 and an error on stderr that names the
    fix, no traceback. Returns that error."""
    from tutorial_utils.tools import cli

    def run(argv: list[str]) -> str:
        capsys.readouterr()  # what came before is not this command's
        code = cli.main(argv)
        err = capsys.readouterr().err
        last = err.strip().splitlines()[-1] if err.strip() else ""  # data warnings may come first
        assert code == 2 and last.startswith("error: ") and "Fix:" in last and "Traceback" not in err, err
        return last

    return run
