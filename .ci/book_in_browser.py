"""The built book as a reader meets it, in headless Chromium: every page loads, shows no error, has its figures.

Run after `make book` (CI does: .ci/run). For every page of the table of contents it asks Chromium for the
page as rendered (the DOM after the page's own scripts ran) and checks that:
- the page loads, has its title, and its scripts raised no uncaught error;
- no output shows a traceback or an error cell;
- every figure of the page points at an image that exists, opens, and is not blank;
- on a chapter, the Colab links open this chapter's notebook in the repository and the download link
  serves the notebook itself.
It saves screenshots of two pages to _build/screenshots/. Exit status 1 and one line per problem if any.
"""

from __future__ import annotations

import re
import shutil
import subprocess
import sys
from pathlib import Path
from urllib.parse import unquote, urlparse

import yaml
from bs4 import BeautifulSoup
from PIL import Image, ImageStat

ROOT = Path(__file__).resolve().parents[1]
HTML = ROOT / "_build" / "html"
SHOTS = ROOT / "_build" / "screenshots"
SCREENSHOT_PAGES = ("book/intro", "chapters/02_embedding_head")
CHROMIUM = ("chromium", "chromium-browser", "google-chrome")
FLAGS = ["--headless=new", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage", "--hide-scrollbars",
         "--virtual-time-budget=4000", "--enable-logging=stderr", "--v=0"]


def toc_pages() -> list[str]:
    """Every document of _toc.yml, in reading order ("book/intro", "chapters/00_setup", ...)."""
    toc = yaml.safe_load((ROOT / "_toc.yml").read_text())
    pages = [toc["root"]]
    for part in toc["parts"]:
        pages += [entry["file"] for entry in part["chapters"]]
    return pages


def browser() -> str:
    """The Chromium binary, or exit with how to install it."""
    for name in CHROMIUM:
        if shutil.which(name):
            return name
    sys.exit("No Chromium found. Fix: apt-get install chromium (Debian), then run this again.")


def render(chromium: str, page: Path) -> tuple[str, str]:
    """The page's DOM after its scripts ran, and Chromium's console log."""
    done = subprocess.run([chromium, *FLAGS, "--dump-dom", page.as_uri()], capture_output=True, text=True, timeout=120)
    return done.stdout, done.stderr


def uncaught_errors(log: str) -> list[str]:
    """The page's own script errors from Chromium's log (Chromium's messages about itself are left out)."""
    return [line.strip() for line in log.splitlines() if "CONSOLE" in line and re.search(r"Uncaught|Error", line)]


def blank(path: Path) -> str | None:
    """Why an image file is not a real figure (missing, unreadable, empty, one flat colour), or None."""
    if not path.is_file() or path.stat().st_size == 0:
        return "missing or empty"
    if path.suffix == ".svg":
        return None if "<svg" in path.read_text(errors="replace") else "not an SVG"
    try:
        with Image.open(path) as image:
            if min(image.size) < 2:
                return f"{image.size[0]}x{image.size[1]} pixels"
            spread = ImageStat.Stat(image.convert("L")).extrema[0]
    except OSError as error:
        return f"does not open ({error})"
    return "a single flat colour" if spread[0] == spread[1] else None


def check_page(doc: str, dom: str, log: str, repo: str, branch: str) -> list[str]:
    """The problems a reader would meet on one page."""
    problems = []
    soup = BeautifulSoup(dom, "html.parser")
    content = soup.find("main") or soup.find("article")
    if content is None or content.find("h1") is None:
        return [f"{doc}: the page did not load (no main content or no title)"]
    problems += [f"{doc}: script error: {e}" for e in uncaught_errors(log)]
    text = content.get_text(" ")
    if "Traceback (most recent call last)" in text or content.select(".output.traceback, .output.error, .system-message"):
        problems.append(f"{doc}: an output shows an error or a traceback")
    page = HTML / f"{doc}.html"
    for img in content.find_all("img"):
        src = img.get("src", "")
        if urlparse(src).scheme in {"http", "https", "data"}:
            continue  # the Colab badge: served by Colab, not by the book
        why = blank((page.parent / unquote(src)).resolve())
        if why:
            problems.append(f"{doc}: figure {src} is {why}")
    if doc.startswith("chapters/"):
        notebook = f"{doc}.ipynb"
        want = f"https://colab.research.google.com/github/{repo}/blob/{branch}/{notebook}"
        colab = {a["href"] for a in soup.find_all("a", href=True) if "colab.research.google.com/github" in a["href"]}
        if not colab or colab != {want}:
            problems.append(f"{doc}: Colab links {sorted(colab) or 'missing'}; want {want}")
        downloads = [a["href"] for a in soup.find_all("a", href=True) if a["href"].endswith(".ipynb")
                     and not a["href"].startswith("http")]
        if not downloads or not all((page.parent / d).resolve() == (HTML / "_sources" / notebook).resolve()
                                    and (HTML / "_sources" / notebook).is_file() for d in downloads):
            problems.append(f"{doc}: download link {downloads or 'missing'} does not serve {notebook}")
    return problems


def main() -> int:
    chromium = browser()
    config = yaml.safe_load((ROOT / "_config.yml").read_text())["repository"]
    repo, branch = config["url"].removeprefix("https://github.com/"), config.get("branch", "main")
    problems, pages = [], toc_pages()
    for doc in pages:
        page = HTML / f"{doc}.html"
        if not page.is_file():
            problems.append(f"{doc}: not built (run `make book` first)")
            continue
        problems += check_page(doc, *render(chromium, page), repo, branch)
    SHOTS.mkdir(parents=True, exist_ok=True)
    for doc in SCREENSHOT_PAGES:
        shot = SHOTS / f"{doc.replace('/', '_')}.png"
        subprocess.run([chromium, *FLAGS, "--window-size=1280,1600", f"--screenshot={shot}", (HTML / f"{doc}.html").as_uri()],
                       capture_output=True, timeout=120)
        why = blank(shot)
        if why:
            problems.append(f"screenshot of {doc} is {why}")
    print("\n".join(problems) or f"{len(pages)} pages open in Chromium with their figures, no errors; "
                                    f"screenshots in {SHOTS.relative_to(ROOT)}/")
    return 1 if problems else 0


if __name__ == "__main__":
    sys.exit(main())
