"""What argparse says badly about the command line, said in one line before it parses.

argparse reads `--participants stu-001` as an unknown option followed by the command
`stu-001` ("invalid choice"), rejects `report --now T` as "unrecognized arguments", and
accepts `--since T status`, whose --since nothing reads. The checks below name the misspelt
option with the one meant, and say where a global option belongs.
"""

from __future__ import annotations

import argparse
import difflib
from collections.abc import Iterator, Sequence

RUN = "a run"  # ingest.py with no command: the delta ingestion

# The options of a run that some commands take too (after the command or before it).
GLOBAL_OPTIONS: dict[str, tuple[str, ...]] = {
    "--participant": (RUN, "status"),
    "--since": (RUN,),
    "--until": (RUN,),
    "--now": (RUN, "status", "report", "dashboard"),
    "--dry-run": (RUN,),
}


def problem(root: argparse.ArgumentParser, argv: Sequence[str]) -> str | None:
    """One line saying what is wrong with argv that argparse would say badly; else None."""
    tokens = list(argv[: argv.index("--")] if "--" in argv else argv)
    known = set(_option_strings(root))
    options = list(_options(tokens, root))
    command = next((token for at, token in options if at is None), RUN)
    # A command may have an option of its own by a global option's name (export --since).
    own = set(_command_options(root, command))
    after_command = False
    for name, _token in options:
        if name is None:
            after_command = True
            continue
        if name not in known:
            return _misspelt(name, known)
        where = GLOBAL_OPTIONS.get(name)
        if where is not None and command not in where and not (after_command and name in own):
            return f"{name} does not apply to `{command}`: it is an option of {_either(where)}"
    return None


def _options(tokens: list[str], root: argparse.ArgumentParser
             ) -> Iterator[tuple[str | None, str]]:
    """(option name, token) for each long option, and (None, command) for the command;
    the values of the run's options are skipped, whatever they look like."""
    commands = _commands(root)
    takes_value = {s for s in _root_options(root) if _takes_value(root, s)}
    command_seen = False
    at = 0
    while at < len(tokens):
        token = tokens[at]
        if token.startswith("--"):
            name = token.split("=", 1)[0]
            yield name, token
            if name in takes_value and "=" not in token:
                at += 1
        elif token in commands and not command_seen:
            command_seen = True
            yield None, token
        at += 1


def _misspelt(name: str, known: set[str]) -> str:
    # 0.8: --participants for --participant (0.96), not --format for --frobnicate (0.6).
    close = difflib.get_close_matches(name, sorted(known), n=1, cutoff=0.8)
    hint = f" (did you mean {close[0]}?)" if close else ""
    return f"unrecognized arguments: {name}{hint}; see ingest.py --help"


def _either(where: tuple[str, ...]) -> str:
    """a run; a run or status; a run, status or report"""
    return where[0] if len(where) == 1 else ", ".join(where[:-1]) + " or " + where[-1]


def _command_options(root: argparse.ArgumentParser, command: str) -> Iterator[str]:
    for action in root._actions:
        if isinstance(action, argparse._SubParsersAction) and command in action.choices:
            yield from action.choices[command]._option_string_actions


def _commands(root: argparse.ArgumentParser) -> set[str]:
    return {name for action in root._actions if isinstance(action, argparse._SubParsersAction)
            for name in action.choices}


def _root_options(root: argparse.ArgumentParser) -> Iterator[str]:
    for action in root._actions:
        yield from action.option_strings


def _takes_value(root: argparse.ArgumentParser, option: str) -> bool:
    action = root._option_string_actions[option]
    return action.nargs != 0


def _option_strings(parser: argparse.ArgumentParser) -> Iterator[str]:
    for action in parser._actions:
        yield from action.option_strings
        if isinstance(action, argparse._SubParsersAction):
            for sub in action.choices.values():
                yield from _option_strings(sub)


def add_late_options(parser: argparse.ArgumentParser, command: str,
                     root: argparse.ArgumentParser) -> None:
    """The global options that `command` takes, accepted after it too. They land under
    `late_<dest>` (merge_late_options folds them in), so that one given before the command
    is not reset by the subparser's defaults."""
    for option, where in GLOBAL_OPTIONS.items():
        if command not in where:
            continue
        action = root._option_string_actions[option]
        kind = "append" if isinstance(action, argparse._AppendAction) else "store"
        if action.nargs == 0:
            parser.add_argument(option, action="store_true", help=action.help,
                                dest=f"late_{action.dest}", default=argparse.SUPPRESS)
            continue
        parser.add_argument(option, action=kind, type=action.type or str, metavar=action.metavar,
                            help=action.help, dest=f"late_{action.dest}",
                            default=argparse.SUPPRESS)


def merge_late_options(arguments: argparse.Namespace) -> argparse.Namespace:
    for name, value in list(vars(arguments).items()):
        if not name.startswith("late_"):
            continue
        dest = name.removeprefix("late_")
        early = getattr(arguments, dest, None)
        setattr(arguments, dest, early + value if isinstance(early, list) else value)
        delattr(arguments, name)
    return arguments
