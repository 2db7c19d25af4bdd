"""train-regression-batch's options are declared once (epoch_builder/regressions/options.py): every program's
parser and the console's train form carry exactly the table's options, with its ranges, choices and
defaults, and nothing declares them anywhere else. (The auto-dispatch form, a Textual screen, is checked the
same way in tests/console/test_screens.py.)"""

from __future__ import annotations

import argparse

import pytest

import console.cli
import epoch_builder.cli
import remote.cli
from epoch_builder.errors import UsageError
from epoch_builder.regressions.options import CHOICE, FLAG, INT, OPTIONS, TrainingOptions
from tests.test_help import every_parser

PROGRAMS = {"epoch-builder": epoch_builder.cli.build_parser, "epoch-cluster": remote.cli.build_parser,
            "epoch-console": console.cli.build_parser}
# Where the options belong: the command itself, and the commands that pass them on to it.
CARRIERS = {("epoch-builder", "train-regression-batch"), ("epoch-cluster", "dispatch")}
FLAGS = {option.flag for option in OPTIONS}


def _actions(parser: argparse.ArgumentParser) -> dict[str, argparse.Action]:
    return {flag: action for action in parser._actions for flag in action.option_strings}


def _parsers() -> dict[tuple[str, str], argparse.ArgumentParser]:
    return {(program, " ".join(path)): parser for program, build in PROGRAMS.items() for path, parser in every_parser(build())}


def test_every_carrier_declares_every_option_as_the_table_says() -> None:
    parsers = _parsers()
    for carrier in CARRIERS:
        actions = _actions(parsers[carrier])
        for option in OPTIONS:
            action = actions.get(option.flag)
            assert action is not None, (carrier, option.flag)
            assert action.dest == option.name and action.default == option.default, (carrier, option.flag)
            if option.kind == FLAG:
                assert isinstance(action, argparse._StoreTrueAction), (carrier, option.flag)
            elif option.kind == CHOICE:
                assert tuple(action.choices) == option.choices, (carrier, option.flag)
            else:
                assert action.type is int and action.metavar == option.metavar, (carrier, option.flag)
            assert option.help in action.help, (carrier, option.flag)
        if carrier[0] == "epoch-cluster":
            assert all(actions[flag].help.startswith("regressions: ") for flag in FLAGS)


def test_nothing_else_declares_a_training_option() -> None:
    """A command that takes one of the options (``regressions plan --max-epochs`` caps its estimate as the
    command would) takes it from the table too: the same flag, dest, type, default and help."""
    by_flag = {option.flag: option for option in OPTIONS}
    for where, parser in _parsers().items():
        if where in CARRIERS:
            continue
        for flag, action in _actions(parser).items():
            option = by_flag.get(flag)
            if option is not None:
                assert (action.dest, action.default, action.metavar) == (option.name, option.default, option.metavar), where
                assert action.help.endswith(option.help), (where, flag)


@pytest.mark.parametrize("carrier", sorted(CARRIERS))
def test_every_carrier_parses_into_one_object_and_refuses_a_value_with_the_tables_line(carrier) -> None:
    parser = _parsers()[carrier]
    needed = {("epoch-builder", "train-regression-batch"): ["--batch", "B"],
              ("epoch-cluster", "dispatch"): ["--stage", "regressions"]}[carrier]
    args = parser.parse_args([*needed, "--pack", "4", "--fast", "--search", "halving", "--eta", "3"])
    assert TrainingOptions.from_args(args) == TrainingOptions(pack=4, fast=True, search="halving", eta=3)
    assert TrainingOptions.from_args(parser.parse_args(needed)) == TrainingOptions()
    for option in (o for o in OPTIONS if o.kind == INT):
        with pytest.raises(UsageError) as refused:
            TrainingOptions.from_args(parser.parse_args([*needed, option.flag, str(option.high + 1),
                                                         *(["--search", "halving"] if option.default else [])]))
        assert str(refused.value) == f"{option.flag} {option.high + 1} out of range; allowed {option.low}..{option.high}"


def test_the_train_form_is_the_table() -> None:
    from console.actions.pipeline import train_form_fields

    fields = train_form_fields()
    assert [f.name for f in fields] == [o.name for o in OPTIONS]
    for field, option in zip(fields, OPTIONS):
        assert (field.label, field.hint, field.kind, field.low, field.high, field.choices, field.default) == (
            option.label, option.hint, option.kind, option.low, option.high, option.choices, option.default)
    # The form's values (an empty field is None) make the object the command line would.
    values = {f.name: None for f in fields} | {"pack": 2, "fast": True, "search": "halving"}
    assert TrainingOptions.from_values(values).argv() == ["--fast", "--pack", "2", "--search", "halving"]


def test_a_job_command_line_parses_back_to_the_same_options() -> None:
    parser = _parsers()[("epoch-builder", "train-regression-batch")]
    for options in (TrainingOptions(), TrainingOptions(max_epochs=7, mixed_precision=True, processes=3),
                    TrainingOptions(search="halving", eta=4, first_rung=3, pack=1)):
        assert TrainingOptions.from_args(parser.parse_args(["--batch", "B", *options.argv()])) == options
