"""Colab's own stack, rehearsed on this machine: ``make colab-check`` (book/setup.md).

A Python 3.13 virtual environment gets the versions Colab's GPU runtime preinstalls (its published
``pip freeze``, kept in ``benchmarks/colab/``) of every package the course uses. Then the chapters'
install cell runs as a student runs it, in IPython, with ``google.colab`` present and the repository
cloned from this checkout instead of GitHub: once in a fresh runtime, and once after the packages that
Colab users typically have loaded (pandas, pyarrow, datasets) were imported. The check records what pip
changed and whether the cell asked for a restart, then runs every chapter on the ``tiny`` profile
under nbval with that stack, and writes ``benchmarks/results/colab-check.md``. Not in CI: it downloads
PyPI's CUDA build of torch 2.11 (about 3 GB with its libraries; Colab's own is built for CUDA 12.8, a
difference no CPU run can see). No GPU is needed or used.
"""

from __future__ import annotations

import argparse
import importlib.metadata as metadata
import json
import os
import re
import shutil
import subprocess
import sys
import time
from pathlib import Path

from ..setup.colab import CLONE_TO, install_cell_source, repository
from ..setup.config import ROOT

__all__ = ["REPORT", "freeze", "changes", "restore", "run_chapters", "report", "main"]

_FREEZE = ROOT / "benchmarks" / "colab" / "pip-freeze.gpu.txt"
REPORT = ROOT / "benchmarks" / "results" / "colab-check.md"
_KERNEL = ("ipykernel", "ipython", "jupyter-client", "jupyter-core", "pytest", "nbformat", "nbclient")  # to run notebooks
# preinstalled on Colab and used by the course's libraries when present (transformers 5.15 needs torchvision to
# pickle some of its objects: without it, torch.save of chapter 07's int8 student fails)
_OPTIONAL = ("torchvision",)
# PyPI's torch 2.11 is a CUDA 13 build whose libraries Colab's cu128 build names otherwise: they stay
_TORCH_OWN = ("nvidia-", "cuda-", "triton")
_ANSI = re.compile(r"\x1b\[[0-9;]*m")  # IPython's colours in a traceback
_PRELOADED = ("pandas", "pyarrow", "datasets")  # imported before the install cell in the second try


def _canonical(name: str) -> str:
    """A distribution name as pip compares them (PEP 503)."""
    return re.sub(r"[-_.]+", "-", name).lower()


def _colab_versions(text: str) -> dict[str, str]:
    """``name -> version`` from a ``pip freeze`` (local build tags such as ``+cu128`` dropped: PyPI has none)."""
    pins = {}
    for line in text.splitlines():
        if "==" in line and not line.startswith("#"):
            name, version = line.split("==", 1)
            pins[_canonical(name)] = version.split("+")[0].strip()
    return pins


def _runtime_closure(root: str = "tutorial_utils") -> set[str]:
    """Every distribution the package needs at run time, from the installed metadata, recursively."""
    seen, todo = set(), [root]
    while todo:
        name = _canonical(todo.pop())
        if name in seen:
            continue
        seen.add(name)
        try:
            requires = metadata.requires(name) or []
        except metadata.PackageNotFoundError:
            continue
        todo += [re.split(r"[ ;<>=!~\[(]", r, maxsplit=1)[0] for r in requires if "extra ==" not in r]
    return seen - {_canonical(root)}


def _colab_pins() -> list[str]:
    """Colab's version of each package the course uses that Colab preinstalls (and of the notebook kernel)."""
    versions = _colab_versions(_FREEZE.read_text())
    wanted = _runtime_closure() | {_canonical(k) for k in (*_KERNEL, *_OPTIONAL)}
    return sorted(f"{name}=={versions[name]}" for name in wanted if name in versions)


def _python313() -> str:
    """A Python 3.13 interpreter (Colab's), or a clear error naming how to get one."""
    for candidate in (*sorted(Path.home().glob(".pyenv/versions/3.13*/bin/python3.13")), shutil.which("python3.13")):
        if candidate and subprocess.run([str(candidate), "--version"], capture_output=True).returncode == 0:
            return str(candidate)  # (a pyenv shim on PATH fails unless 3.13 is the active version)
    raise SystemExit("No Python 3.13 found (Colab runs 3.13). Fix: install one (pyenv install 3.13, or your OS's "
                     "python3.13 package) so that `python3.13` is on PATH.")


def freeze(python: Path) -> dict[str, str]:
    """``name -> version`` installed in an environment."""
    out = subprocess.run([str(python), "-m", "pip", "freeze", "--all"], capture_output=True, text=True, check=True)
    return {_canonical(line.split("==")[0]): line.split("==")[1] for line in out.stdout.splitlines() if "==" in line}


def changes(before: dict[str, str], after: dict[str, str]) -> list[str]:
    """What an install changed, one line per package: added, upgraded, downgraded or removed."""
    lines = []
    for name in sorted(before.keys() | after.keys()):
        old, new = before.get(name), after.get(name)
        if old != new:
            lines.append(f"{name}: {old or '(absent)'} -> {new or '(removed)'}")
    return lines


def _cell_script(clone_to: Path, preload: tuple[str, ...]) -> str:
    """A Python script that runs the install cell in IPython as on Colab (``google.colab`` present)."""
    url, _ = repository()
    cell = install_cell_source().replace(url, str(ROOT)).replace(CLONE_TO, str(clone_to))
    return "\n".join([
        "import sys, types",
        "sys.modules['google.colab'] = types.ModuleType('google.colab')  # what makes the cell act as on Colab",
        *[f"import {m}" for m in preload],
        "from IPython.core.interactiveshell import InteractiveShell",
        "shell = InteractiveShell.instance()",
        f"result = shell.run_cell({cell!r})",
        "print('CELL-ERROR: ' + repr(result.error_in_exec) if result.error_in_exec else 'CELL-OK')",
    ])


def _run_cell(python: Path, clone_to: Path, preload: tuple[str, ...], log) -> dict:
    """Run the install cell once; returns pip's changes, the cell's last lines and whether it asked for a restart."""
    before = freeze(python)
    start = time.perf_counter()
    done = subprocess.run([str(python), "-c", _cell_script(clone_to, preload)], capture_output=True, text=True,
                          cwd=clone_to.parent)
    text = done.stdout + done.stderr
    log.write(text)
    return {"preloaded": list(preload), "seconds": round(time.perf_counter() - start),
            "changed": changes(before, freeze(python)), "ok": "CELL-OK" in done.stdout,
            "restart": "Restart session" in text, "last_lines": [x for x in text.splitlines() if x.strip()][-4:]}


def restore(python: Path, base: dict[str, str], log) -> None:
    """Put an environment back to ``base``: remove what was added, reinstall what changed."""
    subprocess.run([str(python), "-m", "pip", "uninstall", "--yes", "tutorial_utils"], stdout=log, stderr=log)
    now = freeze(python)
    added = [name for name in now if name not in base]
    if added:
        subprocess.run([str(python), "-m", "pip", "uninstall", "--yes", *added], check=True, stdout=log, stderr=log)
    changed = [f"{name}=={version}" for name, version in base.items() if now.get(name) != version]
    if changed:
        subprocess.run([str(python), "-m", "pip", "install", "--quiet", "--no-deps", *changed], check=True,
                       stdout=log, stderr=log)


def run_chapters(python: Path, work: Path, log) -> dict:
    """Every chapter of the clone on ``tiny`` under nbval, with an empty course cache (as a new runtime has)."""
    subprocess.run([str(python), "-m", "pip", "install", "--quiet", "nbval"], check=True, stdout=log, stderr=log)
    env = {**os.environ, "COURSE_PROFILE": "tiny", "HF_HUB_OFFLINE": "1", "COURSE_HIDE_PROGRESS": "1",
           "COURSE_CACHE": str(work / "cache")}
    start = time.perf_counter()
    done = subprocess.run([str(python), "-m", "pytest", "-q", "chapters"], cwd=work / "course", env=env,
                          capture_output=True, text=True)
    log.write(done.stdout + done.stderr)
    tail = [x for x in done.stdout.splitlines() if x.strip()]
    return {"summary": tail[-1].strip("= ") if tail else "no output", "seconds": round(time.perf_counter() - start),
            "failures": [x for x in done.stdout.splitlines() if x.startswith("FAILED")]}


def report(pins: list[str], tries: list[dict], chapters: dict, python_version: str) -> str:
    """The markdown report of one check."""
    lines = ["# Colab-stack check (`make colab-check`)", "",
             f"Run {time.strftime('%Y-%m-%d')} with {python_version}; Colab's versions from "
             "`benchmarks/colab/pip-freeze.gpu.txt` (its first line names the snapshot). "
             f"{len(pins)} packages pinned to Colab's versions before the install cell ran.", ""]
    for i, t in enumerate(tries, 1):
        where = "a fresh runtime" if not t["preloaded"] else f"a runtime that had imported {', '.join(t['preloaded'])}"
        lines += [f"### Install cell, run {i}: {where}", "",
                  f"- finished: {'yes' if t['ok'] else 'no, it stopped'} ({t['seconds']} s); asked for a restart: "
                  f"{'yes' if t['restart'] else 'no'}",
                  f"- what pip changed ({len(t['changed'])} packages):", ""]
        lines += [f"  - {c}" for c in t["changed"]] or ["  - nothing"]
        shown = [_ANSI.sub("", x) for x in t["last_lines"] if not x.startswith("CELL-")]
        lines += ["", "- the cell's last lines:", "", "```text", *shown, "```", ""]
    lines += ["### Every chapter on `tiny` with this stack", "",
              f"`pytest --nbval-lax chapters/`: {chapters['summary']} ({chapters['seconds']} s)", "",
              *[f"- {f}" for f in chapters.get("failures", [])]]
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    """Build the Colab-like environment, run the install cell twice and every chapter on tiny; write the report."""
    parser = argparse.ArgumentParser(prog="python -m tutorial_utils.tools.colab_stack", description=main.__doc__)
    parser.add_argument("--work", default=str(ROOT / ".colab-check"), help="its folder: venv, clones, cache, log")
    parser.add_argument("--only", choices=("install", "chapters"), help="one phase (chapters: in the installed clone)")
    args = parser.parse_args(argv)
    work = Path(args.work)
    work.mkdir(parents=True, exist_ok=True)
    python, state_file = work / "venv" / "bin" / "python", work / "state.json"
    state = json.loads(state_file.read_text()) if state_file.exists() else {}
    with open(work / "log.txt", "a") as log:
        print(f"log: {work / 'log.txt'}", flush=True)
        if args.only != "chapters":
            if not python.exists():
                subprocess.run([_python313(), "-m", "venv", str(work / "venv")], check=True)
            state["pins"] = _colab_pins()
            print(f"installing Colab's versions of {len(state['pins'])} packages (a CUDA torch: GBs on first use) ...",
                  flush=True)
            for attempt in range(3):  # a multi-GB download can break off; pip's cache keeps what arrived whole
                done = subprocess.run([str(python), "-m", "pip", "install", "--quiet", "--retries", "10",
                                       *state["pins"]], stdout=log, stderr=log)
                if done.returncode == 0:
                    break
            done.check_returncode()
            colab = _colab_versions(_FREEZE.read_text())
            strangers = [name for name in freeze(python) if name not in colab and name not in ("pip", "wheel")
                         and not name.startswith(_TORCH_OWN)]
            if strangers:  # left by an earlier check (trl, nbval, ...): Colab's runtime has none of them
                subprocess.run([str(python), "-m", "pip", "uninstall", "--yes", *strangers], check=True, stdout=log,
                               stderr=log)
            base = freeze(python)
            state["tries"] = []
            for preload, folder in ((_PRELOADED, "course-after-imports"), ((), "course")):  # the last stays installed
                shutil.rmtree(work / folder, ignore_errors=True)
                restore(python, base, log)
                state["tries"].append(_run_cell(python, work / folder, preload, log))
                print(json.dumps(state["tries"][-1], indent=1), flush=True)
            state["tries"].reverse()  # the fresh runtime first
        if args.only != "install":
            state["chapters"] = run_chapters(python, work, log)
            print(state["chapters"], flush=True)
    state["python"] = subprocess.run([str(python), "--version"], capture_output=True, text=True).stdout.strip()
    state_file.write_text(json.dumps(state, indent=1))
    chapters = state.get("chapters", {"summary": "not run yet", "seconds": 0})
    REPORT.write_text(report(state["pins"], state["tries"], chapters, state["python"]))
    print(f"report: {REPORT.relative_to(ROOT)}")
    return 0 if state["tries"][0]["ok"] and " failed" not in chapters["summary"] else 1


if __name__ == "__main__":
    sys.exit(main())
