"""A command line split as doit splits it: incrun's own options, the selection (names of
tasks, inputs, outputs or folders, each task's own options and positional arguments after its
name) and `NAME=value` variables for the dodo.py's `get_var`."""

from __future__ import annotations

import re
from dataclasses import dataclass, field

# `EUD=True`, doit's variables; `data/x=1.inp` is a file's name, not a variable.
VARIABLE = re.compile(r"[A-Za-z_][A-Za-z0-9_]*=")


@dataclass
class Split:
    options: list[str] = field(default_factory=list)  # incrun's, for argparse
    selection: list[str] = field(default_factory=list)  # in order, as doit reads it
    variables: dict[str, str] = field(default_factory=dict)


def option_arity(token: str, takes_value: dict[str, bool]) -> int:
    """How many words an option of incrun's uses (1 or 2); 0 if it is not one of incrun's.

    `takes_value` maps each option string (`-n`, `--jobs`) to whether it takes a value. Knows
    `--jobs=4`, `-n4` and clusters of short flags (`-xq`).
    """
    if token in takes_value:
        return 2 if takes_value[token] else 1
    if token.startswith("--"):
        name, equals, _ = token.partition("=")
        return 1 if equals and takes_value.get(name) else 0
    if len(token) > 2 and token[0] == "-":
        first = token[:2]
        if takes_value.get(first):
            return 1  # -n4
        if all(takes_value.get("-" + letter) is False for letter in token[1:]):
            return 1  # -xq
    return 0


def first_word(argv: list[str], takes_value: dict[str, bool]) -> int | None:
    """The index of the first word that is neither an option nor an option's value."""
    index = 0
    while index < len(argv):
        token = argv[index]
        if token == "--":
            return None
        if token.startswith("-") and len(token) > 1:
            index += option_arity(token, takes_value) or 1
            continue
        return index
    return None


def split(argv: list[str], takes_value: dict[str, bool]) -> Split:
    """incrun's options wherever they are; an option incrun does not know, once a name has
    come, is that task's own (`incrun cleanclean:cd --EUD True`), as are the words after `--`
    (`incrun test -- -k some_test`, a task's `pos_arg`)."""
    found = Split()
    named = False  # a name has come: unknown options from here on are a task's
    after_task_option = False  # the previous word was a task's option: this may be its value
    index = 0
    while index < len(argv):
        token = argv[index]
        if token == "--":
            found.selection += (["--"] if named else []) + argv[index + 1:]
            break
        arity = option_arity(token, takes_value)
        if arity:
            found.options += argv[index:index + arity]
            index += arity
            after_task_option = False
            continue
        if token.startswith("-") and len(token) > 1:
            (found.selection if named else found.options).append(token)
            after_task_option = named and "=" not in token
        elif VARIABLE.match(token) and not after_task_option:
            name, _, value = token.partition("=")
            found.variables[name] = value
        else:
            found.selection.append(token)
            named, after_task_option = True, False
        index += 1
    return found
