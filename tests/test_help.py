"""`--help` of every command: each option says its default (a flag's is "off"), and `wikipedia download --help`
is the download's own help, not the dump reader's."""

from __future__ import annotations

import argparse

import pytest

from corpusforge import cli


def _commands(parser: argparse.ArgumentParser, name: str = "corpusforge"):
    yield name, parser
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            for sub_name, sub in action.choices.items():
                yield from _commands(sub, f"{name} {sub_name}")


def test_every_option_says_its_default():
    missing = []
    for name, parser in _commands(cli.build_parser()):
        for action in parser._actions:
            if (not action.option_strings or action.required or action.default is argparse.SUPPRESS
                    or isinstance(action, (argparse._HelpAction, argparse._VersionAction, argparse._AppendAction))):
                continue  # positionals, required options, --help, --version, repeatable --set
            entry = " ".join(parser._get_formatter()._format_action(action).split())  # the option's help lines
            if "default" not in entry:
                missing.append(f"{name} {action.option_strings[-1]}: {entry}")
    assert not missing, missing


def test_wikipedia_download_has_its_own_help(capsys):
    with pytest.raises(SystemExit) as exit_:
        cli.main(["wikipedia", "download", "--help"])
    assert exit_.value.code == 0
    out = capsys.readouterr().out
    assert out.startswith("usage: corpusforge wikipedia download") and "NAME" in out and "--base-url" in out
    assert "--namespaces" not in out and "--min-chars" not in out  # the dump reader's options are not the download's
