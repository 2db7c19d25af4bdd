"""The project stands on its own: every "SEMANTICS §n" the code cites is a section of docs/SEMANTICS.md."""

from __future__ import annotations

import re
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]


def test_every_cited_semantics_section_exists() -> None:
    doc = (REPO / "docs" / "SEMANTICS.md").read_text()
    sections = {int(n) for n in re.findall(r"^## §(\d+)\b", doc, flags=re.M)}
    cited: dict[str, set[str]] = {}
    for path in [*REPO.glob("epoch_builder/**/*.py"), *REPO.glob("remote/**/*.py"), *REPO.glob("console/**/*.py"),
                 *REPO.glob("tests/**/*.py"), REPO / "README.md"]:
        for number in re.findall(r"SEMANTICS §(\d+(?:\.\d+)?)", path.read_text()):
            cited.setdefault(number, set()).add(str(path.relative_to(REPO)))
    assert cited, "the code cites the semantics"
    missing = {n: files for n, files in cited.items() if int(n.split(".")[0]) not in sections}
    assert not missing, missing
    for number in cited:  # "§7.5" is item 5 of §7
        if "." in number:
            major, item = number.split(".")
            body = doc.split(f"## §{major} ", 1)[1].split("\n## ", 1)[0]
            assert re.search(rf"^{item}\. ", body, flags=re.M), number
