"""Make the multi-label snapshot ``debian_tags.jsonl.gz`` from Debian's package lists.

Run on a Debian 12 (bookworm) machine after ``apt-get update -o Acquire::Languages=en``:

    python data/make_debian_tags.py            # reads /var/lib/apt/lists, writes data/debian_tags.jsonl.gz

Documents: packages tagged ``role::program`` (applications, not libraries) that have an English long
description. Labels: their ``use::`` and ``works-with::`` debtags, collapsed to the first level
(``works-with::image:raster`` -> ``image``), kept when at least MIN_SUPPORT documents carry them.
Identical descriptions are kept once; near-copies from one project share a ``group`` (for splitting). The lists drift with every Debian point release, which is why
the course ships this snapshot rather than reading the lists at run time. See data/README.md.
"""

from __future__ import annotations

import argparse
import gzip
import json
import re
import subprocess
from collections import Counter
from pathlib import Path

LISTS = Path("/var/lib/apt/lists")
MIN_SUPPORT = 150
FACETS = ("use", "works-with")


def read_list(pattern: str) -> str:
    """The decompressed text of every apt list file matching ``pattern`` (lz4 via apt-helper)."""
    texts = []
    for path in sorted(LISTS.glob(pattern)):
        if path.suffix == ".lz4":
            texts.append(subprocess.run(["/usr/lib/apt/apt-helper", "cat-file", str(path)], check=True,
                                        capture_output=True, text=True).stdout)
        else:
            texts.append(path.read_text(encoding="utf-8"))
    if not texts:
        raise SystemExit(f"No {pattern} under {LISTS}: run `apt-get update -o Acquire::Languages=en` first.")
    return "\n\n".join(texts)


def stanzas(text: str) -> list[dict[str, str]]:
    """Parse deb822 stanzas (``Field: value`` with indented continuation lines)."""
    out = []
    for block in text.split("\n\n"):
        fields: dict[str, str] = {}
        key = None
        for line in block.splitlines():
            if line.startswith((" ", "\t")) and key:
                fields[key] += "\n" + line
            elif ":" in line:
                key, value = line.split(":", 1)
                fields[key] = value.strip()
        if fields:
            out.append(fields)
    return out


def description_text(raw: str) -> str:
    """A Debian description (synopsis + long text) as one plain paragraph."""
    lines = raw.splitlines()
    synopsis = lines[0].strip().rstrip(".")
    body = " ".join("" if line.strip() == "." else line.strip() for line in lines[1:])
    body = re.sub(r"\s+", " ", body).strip()
    return f"{synopsis[:1].upper()}{synopsis[1:]}. {body}".strip()


def document_labels(tag_field: str) -> set[str]:
    """The collapsed use/works-with labels of one package's Tag field."""
    labels = set()
    for tag in (t.strip() for t in tag_field.replace("\n", " ").split(",")):
        facet, _, value = tag.partition("::")
        if facet in FACETS and value and "TODO" not in value:
            labels.add(value.split(":")[0])
    return labels


def group_keys(docs: list[dict]) -> list[str]:
    """A group per document: documents that share a source package or their long text's opening join one group.

    Packages built from one project (``foo``, ``foo-data``, ``foo-gtk``) repeat most of their text, so the
    course splits by these groups to keep near-copies out of different splits (union-find).
    """
    parent = list(range(len(docs)))

    def find(i: int) -> int:
        while parent[i] != i:
            parent[i] = parent[parent[i]]
            i = parent[i]
        return i

    first: dict[str, int] = {}
    for i, d in enumerate(docs):
        opening = d["text"].split(". ", 1)[-1][:80].lower()
        for key in ("src:" + d["source"], "txt:" + opening):
            if key in first:
                parent[find(i)] = find(first[key])
            else:
                first[key] = i
    return [docs[find(i)]["package"] for i in range(len(docs))]


def main() -> None:
    """Write the snapshot and print its label counts."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=Path(__file__).with_name("debian_tags.jsonl.gz"))
    args = parser.parse_args()
    descriptions = {s["Package"]: s["Description-en"] for s in stanzas(read_list("*_main_i18n_Translation-en*"))
                    if "Package" in s and "Description-en" in s}
    docs, seen = [], set()
    for s in stanzas(read_list("*debian_dists_bookworm_main_binary-amd64_Packages*")):
        tags = s.get("Tag", "")
        name = s.get("Package")
        if "role::program" not in tags or name not in descriptions or len(descriptions[name].splitlines()) < 2:
            continue
        text = description_text(descriptions[name])
        if text in seen:
            continue
        seen.add(text)
        source = s.get("Source", name).split(" ")[0]
        docs.append({"package": name, "source": source, "text": text, "labels": sorted(document_labels(tags))})
    support = Counter(label for d in docs for label in d["labels"])
    kept = sorted(label for label, n in support.items() if n >= MIN_SUPPORT)
    docs = sorted(docs, key=lambda d: d["package"])
    rows = []
    for d, group in zip(docs, group_keys(docs)):
        labels = [label for label in d["labels"] if label in kept]
        if labels:
            rows.append({**d, "group": group, "labels": labels})
    with gzip.open(args.out, "wt", encoding="utf-8") as handle:
        for row in rows:
            handle.write(json.dumps(row, ensure_ascii=False) + "\n")
    print(f"{len(rows)} documents, {len(kept)} labels, "
          f"{sum(len(r['labels']) for r in rows) / len(rows):.2f} labels per document")
    for label in kept:
        print(f"  {label:12s} {sum(label in r['labels'] for r in rows)}")


if __name__ == "__main__":
    main()
