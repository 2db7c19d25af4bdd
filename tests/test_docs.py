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
                 *REPO.glob("tests/**/*.py"), REPO / "README.md", *REPO.glob("docs/*.md")]:
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


DOCS = [REPO / "README.md", *sorted((REPO / "docs").glob("*.md"))]
# Paths of the repository a document may name (workspace paths like config/epoch.json are not the repo's).
REPO_PREFIXES = ("epoch_builder/", "remote/", "console/", "tests/", "bench/", "scripts/", "docs/")
REPO_FILES = ("Makefile", "pyproject.toml", "constraints.txt", "config/cluster.example.json")


def _named_paths(text: str) -> set[str]:
    names = set()
    for token in re.findall(r"`([^`\s]+)`", text) + re.findall(r"\]\(([^)#\s]+)", text):
        token = token.split("#")[0].split("::")[0].rstrip(",.:;")
        if any(c in token for c in "*<>{}$") or "://" in token:
            continue  # a pattern, a placeholder, a URL
        if token.startswith(REPO_PREFIXES) or token in REPO_FILES:
            names.add(token)
    return names


def _subcommands(program: str) -> dict[str, set[str]]:
    """The program's subcommands, each with its actions (``regressions rank``): from its own parser."""
    if program == "epoch-builder":
        from epoch_builder.cli import build_parser
    else:
        from remote.cli import build_parser
    import argparse

    found: dict[str, set[str]] = {}
    for action in build_parser()._actions:
        if isinstance(action, argparse._SubParsersAction):
            for name, sub in action.choices.items():
                found[name] = {n for a in sub._actions if isinstance(a, argparse._SubParsersAction) for n in a.choices}
    return found


def test_every_file_and_command_the_docs_name_exists() -> None:
    """A document that names a file of the repository or a subcommand names one that exists (relative links
    inside docs/ resolve from docs/)."""
    missing = []
    programs = {p: _subcommands(p) for p in ("epoch-builder", "epoch-cluster")}
    for doc in DOCS:
        text = doc.read_text()
        for name in _named_paths(text):
            if not ((REPO / name).exists() or (doc.parent / name).exists()):
                missing.append(f"{doc.relative_to(REPO)}: {name}")
        for link in re.findall(r"\]\(([a-z][a-z0-9_-]*\.(?:md|png|svg))(?:#[^)]*)?\)", text):
            if not (doc.parent / link).exists():
                missing.append(f"{doc.relative_to(REPO)}: link {link}")
        for program, command, action in re.findall(r"\b(epoch-builder|epoch-cluster) ([a-z][a-z-]+)(?: ([a-z][a-z-]+))?", text):
            known = programs[program]
            if command not in known:
                missing.append(f"{doc.relative_to(REPO)}: {program} {command}")
            elif known[command] and action and action not in known[command] and not action.startswith("-"):
                missing.append(f"{doc.relative_to(REPO)}: {program} {command} {action}")
    assert not missing, "\n".join(sorted(set(missing)))
