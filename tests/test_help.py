"""Every program's help, and every subcommand's, renders; commands the tools suggest parse."""

from __future__ import annotations

import argparse
import pytest

import console.cli
import epoch_builder.cli
import remote.cli

PROGRAMS = {"epoch-builder": epoch_builder.cli.build_parser, "epoch-cluster": remote.cli.build_parser,
            "epoch-console": console.cli.build_parser}


def every_parser(parser: argparse.ArgumentParser, path: tuple[str, ...] = ()):
    """(command path, parser) for the parser and each subcommand below it, aliases once."""
    yield path, parser
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            seen: set[int] = set()
            for name, sub in action.choices.items():
                if id(sub) not in seen:
                    seen.add(id(sub))
                    yield from every_parser(sub, (*path, name))


@pytest.mark.parametrize("program", sorted(PROGRAMS))
def test_every_subcommand_help_renders(program: str) -> None:
    rendered = 0
    for path, parser in every_parser(PROGRAMS[program]()):
        text = parser.format_help()  # argparse %-formats help strings: a bare % raises here
        assert text.startswith("usage:"), (program, path)
        rendered += 1
    assert rendered >= (10 if program != "epoch-console" else 1)


def test_the_create_epoch_help_names_the_fee_in_percent(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as done:
        epoch_builder.cli.main(["create-epoch", "--help"])
    assert done.value.code == 0
    assert "exchange fee in % per side" in capsys.readouterr().out


@pytest.mark.parametrize("argv", [["-m", "epoch_builder"], ["-m", "remote.cli"], ["-m", "console.cli"]])
def test_every_program_has_a_version_and_python_m_epoch_builder_works(argv: list[str]) -> None:
    import subprocess
    import sys

    done = subprocess.run([sys.executable, *argv, "--version"], capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip().endswith(__import__("epoch_builder").__version__)


def test_verify_epoch_exit_status_tells_a_bad_file_from_a_bad_call(tmp_path, capsys) -> None:
    missing = tmp_path / "_NONE.zip"
    assert epoch_builder.cli.main(["verify-epoch", str(missing)]) == 2
    assert "file not found" in capsys.readouterr().err
    broken = tmp_path / "_BROKEN.zip"
    broken.write_bytes(b"PK\x03\x04 cut short")
    assert epoch_builder.cli.main(["verify-epoch", str(broken)]) == 3
    assert "not a valid zip file" in capsys.readouterr().err
