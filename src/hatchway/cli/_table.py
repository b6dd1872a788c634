"""The command table behind ``hatchway``: commands declared as data, parsed with :mod:`argparse`.

Why not typer or click: ``import typer`` alone (click, rich) took 8x ``python -c pass``, and
``hatchway --help`` is meant to stay within 5x (benchmark P6); :mod:`argparse` is in the standard
library and loads in about 10 ms.

A command is a plain function with typed parameters and a docstring (its help). Its declaration
lists one :class:`Arg` per parameter, whose ``dest`` is the parameter's name, so the function is
called with keyword arguments and reads like any other. :class:`Commands` is a group of commands
and groups - the top level is one too, with the options given before any command. Parsing goes one
level at a time (a group's parser takes its options, a command name and the rest), so only the
parsers on the path given are built (building all forty took about as long as ``python -c pass``).
The rules users knew from the typer command line hold:

* a group given without a command prints its help on stderr and exits 2;
* a bad option, a missing argument or an unknown command prints a usage line and one error line
  on stderr and exits 2, never a traceback;
* an option with an ``envvar`` takes that variable's value when the option is absent (an empty
  variable counts as absent);
* the top level's options are also accepted after the command, for the commands that share them;
* Ctrl-C exits 130, and a closed pipe (``hatchway runs list | head``) exits 1 quietly.
"""

from __future__ import annotations

import argparse
import os
import re
import sys
from collections.abc import Callable, Sequence

TYPE_CHECKING = False  # `import typing` costs ~4 ms of start-up; mypy treats this name as True
if TYPE_CHECKING:
    from typing import Any

    Handler = Callable[..., None]

#: How an option takes its value: one value, a flag, --x/--no-x, or one value each time it is repeated.
VALUE, FLAG, NEGATABLE, REPEATED = "value", "flag", "negatable", "repeated"
_ACTIONS = {VALUE: "store", FLAG: "store_true", NEGATABLE: argparse.BooleanOptionalAction, REPEATED: "append"}


class Arg:
    """One positional argument (a name without dashes) or option (``--long`` and short flags)."""

    __slots__ = ("flags", "help", "dest", "kind", "type", "default", "envvar", "required", "metavar", "choices")

    def __init__(
        self,
        *flags: str,
        help: str = "",
        dest: str | None = None,
        kind: str = VALUE,
        type: Callable[[str], Any] | None = None,
        default: Any = None,
        envvar: str | None = None,
        required: bool = False,
        metavar: str | None = None,
        choices: Sequence[str] = (),
    ) -> None:
        self.flags = flags
        self.help = help
        self.dest = dest or next((f for f in flags if f.startswith("--")), flags[0]).lstrip("-").replace("-", "_")
        self.kind = kind
        self.type = type
        self.default = False if kind in (FLAG, NEGATABLE) and default is None else default
        self.envvar = envvar
        self.required = required
        self.metavar = metavar
        #: the values shell completion offers (checking them is the ``type``'s job)
        self.choices = tuple(choices)

    @property
    def is_positional(self) -> bool:
        return not self.flags[0].startswith("-")

    @property
    def option_strings(self) -> tuple[str, ...]:
        """Every spelling the option accepts, ``--no-x`` included."""
        if self.kind == NEGATABLE:
            return (*self.flags, *(f"--no-{f[2:]}" for f in self.flags if f.startswith("--")))
        return () if self.is_positional else self.flags

    def add_to(self, parser: Any, *, shared: bool = False) -> None:
        """Add to ``parser``; a ``shared`` copy (an option repeated after the command) leaves unset alone."""
        if self.is_positional:
            parser.add_argument(self.dest, help=self.help, type=self.type, metavar=self.metavar or self.dest.upper())
            return
        extra: dict[str, Any] = {"dest": self.dest, "action": _ACTIONS[self.kind], "help": self._help()}
        if self.kind in (VALUE, REPEATED):
            extra["type"] = self.type
            extra["metavar"] = self.metavar or self.dest.upper()
        if shared:
            extra["default"] = argparse.SUPPRESS
        else:
            # argparse converts a string default with `type`, so an environment value is converted like a given one
            extra["default"] = (os.environ.get(self.envvar) if self.envvar else None) or self.default
            extra["required"] = self.required
        parser.add_argument(*self.flags, **extra)

    def _help(self) -> str:
        notes = [f"env {self.envvar}"] if self.envvar else []
        if self.required:
            notes.append("required")
        elif self.default not in (None, False):  # never the environment's value: it may be a token
            notes.append(f"default {self.default}")
        elif self.kind == NEGATABLE:
            notes.append(f"default --no-{self.flags[0][2:]}")
        text = f"{self.help} [{'; '.join(notes)}]" if notes else self.help
        return text.replace("%", "%%")


class Command:
    """A function and the arguments it is called with."""

    __slots__ = ("name", "handler", "args", "help", "shares_options")

    def __init__(self, name: str, handler: Handler, args: Sequence[Arg], shares_options: bool) -> None:
        self.name = name
        self.handler = handler
        self.args = tuple(args)
        self.help = (handler.__doc__ or "").strip()
        self.shares_options = shares_options

    def usage(self, prog: str) -> str:
        positionals = " ".join(a.metavar or a.dest.upper() for a in self.args if a.is_positional)
        return f"{prog} [OPTIONS] {positionals}".rstrip()

    def parser(self, prog: str, shared: Sequence[Arg]) -> argparse.ArgumentParser:
        """This command's parser; ``shared`` are the top level's options, accepted here too."""
        parser = argparse.ArgumentParser(
            prog=prog, description=self.help, usage=self.usage(prog), allow_abbrev=False, formatter_class=_formatter
        )
        for arg in self.args:
            arg.add_to(parser)
        if self.shares_options and shared:
            group = parser.add_argument_group(f"{prog.split(' ', 1)[0]} options (also accepted before the command)")
            for option in shared:
                option.add_to(group, shared=True)
        return parser


class Commands:
    """A group of commands and groups; the top level is one, with its options and their callback."""

    def __init__(
        self,
        name: str,
        help: str,
        *,
        options: Sequence[Arg] = (),
        callback: Handler | None = None,
        version: str | None = None,
    ) -> None:
        self.name = name
        self.help = help
        self.options = tuple(options)
        self.callback = callback
        #: ``--version`` prints this, ``{version}`` replaced by ``hatchway.__version__``
        self.version = version
        self.commands: dict[str, Command] = {}
        self.groups: dict[str, Commands] = {}

    def command(self, name: str, *args: Arg, shares_options: bool = True) -> Callable[[Handler], Handler]:
        """Register the decorated function as ``name``; ``shares_options=False`` for commands that
        do not talk to a gateway (the top level's options are then accepted only before them)."""

        def register(handler: Handler) -> Handler:
            self.commands[name] = Command(name, handler, args, shares_options)
            return handler

        return register

    def group(self, name: str, help: str) -> Commands:
        return self.add_group(Commands(name, help))

    def add_group(self, group: Commands) -> Commands:
        self.groups[group.name] = group
        return group

    def walk(self, path: tuple[str, ...] = ()) -> dict[tuple[str, ...], Command | Commands]:
        """Every command and group by its path of names, this group's own path first."""
        found: dict[tuple[str, ...], Command | Commands] = {path: self}
        for name, command in self.commands.items():
            found[(*path, name)] = command
        for name, group in self.groups.items():
            found.update(group.walk((*path, name)))
        return found

    # -----------------------------------------------------------------------------------------
    # parsing

    def resolve(self, argv: Sequence[str]) -> tuple[Command, dict[str, Any], dict[str, Any]]:
        """The command ``argv`` names, its keyword arguments and the top level's option values.

        Exits as argparse does on ``--help`` (0) and on errors (2); a group given without a
        command prints its help on stderr and exits 2.
        """
        group, prog, args = self, self.name, list(argv)
        top: dict[str, Any] | None = None
        while True:
            parser = group._parser(prog)
            parsed = vars(parser.parse_args(args))
            if top is None:
                top = parsed
            name, args = parsed["command"], parsed["args"]
            if name is None:
                parser.print_help(sys.stderr)
                raise SystemExit(2)
            prog = f"{prog} {name}"
            if name in group.groups:
                group = group.groups[name]
                continue
            command = group.commands[name]
            values = vars(command.parser(prog, self.options).parse_args(args))
            shared = {option.dest: values.pop(option.dest, top[option.dest]) for option in self.options}
            return command, values, shared

    def _parser(self, prog: str) -> argparse.ArgumentParser:
        parser = _GroupParser(
            [(name, command.help) for name, command in self.commands.items()]
            + [(name, group.help) for name, group in self.groups.items()],
            prog=prog,
            description=self.help,
            usage=f"{prog} [OPTIONS] COMMAND ...",
            allow_abbrev=False,
            formatter_class=_formatter,
        )
        if self.version:
            parser.add_argument("--version", action=_Version, template=self.version, help="print the version and exit")
        for option in self.options:
            option.add_to(parser)
        names = [*self.commands, *self.groups]
        parser.add_argument("command", nargs="?", choices=names, metavar="COMMAND", help=argparse.SUPPRESS)
        parser.add_argument("args", nargs=argparse.REMAINDER, help=argparse.SUPPRESS)
        return parser

    def complete(self, words: Sequence[str]) -> list[str]:
        """What may follow ``words`` (the last one is being typed; ``""`` for a new word): the names of
        commands and groups, or the options of the command or group reached, or an option's choices."""
        *before, current = list(words) or [""]
        node: Commands | Command = self
        options: list[Arg] = list(self.options)
        expects: Arg | None = None
        positionals = 0  # given to the command reached
        for word in before:
            if expects is not None:
                expects = None
            elif word.startswith("-"):
                expects = next((a for a in options if word in a.flags and a.kind in (VALUE, REPEATED)), None)
            elif isinstance(node, Commands) and word in node.groups:
                node = node.groups[word]
            elif isinstance(node, Commands) and word in node.commands:
                node = node.commands[word]
                options = [*node.args, *(self.options if node.shares_options else ())]
            else:
                positionals += 1
        if expects is None and current.startswith("-"):
            flags = ["--help", *(flag for arg in options for flag in arg.option_strings)]
            if node is self and self.version:
                flags.append("--version")
            return [flag for flag in flags if flag.startswith(current)]
        if expects is None and isinstance(node, Commands):
            return [name for name in [*node.commands, *node.groups] if name.startswith(current)]
        if expects is None and isinstance(node, Command):
            expects = next(iter([a for a in node.args if a.is_positional][positionals:]), None)
        return [choice for choice in expects.choices if choice.startswith(current)] if expects else []

    def main(self, argv: Sequence[str] | None = None) -> None:
        """Parse ``argv`` (default ``sys.argv[1:]``), then run the top level's callback and the command.

        With ``_HATCHWAY_COMPLETE`` set (by the script ``hatchway completion`` prints), the words given
        are a command line being typed: print what may come next, one per line, and run nothing.
        """
        argv = sys.argv[1:] if argv is None else argv
        if os.environ.get("_HATCHWAY_COMPLETE"):
            sys.stdout.write("".join(f"{word}\n" for word in self.complete(argv)))
            return
        try:
            command, values, shared = self.resolve(argv)
            if self.callback is not None:
                self.callback(**shared)
            command.handler(**values)
        except KeyboardInterrupt:
            raise SystemExit(130) from None
        except BrokenPipeError:
            # the reader went away: say nothing, and keep the interpreter's last flush from failing
            os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
            raise SystemExit(1) from None


class _Version(argparse.Action):
    """``--version``: the version is looked up when asked for, not when the parser is built."""

    def __init__(self, option_strings: list[str], dest: str, template: str, help: str) -> None:
        super().__init__(option_strings, argparse.SUPPRESS, nargs=0, default=argparse.SUPPRESS, help=help)
        self.template = template

    def __call__(self, *_: Any) -> None:
        from hatchway import __version__

        sys.stdout.write(self.template.format(version=__version__) + "\n")
        raise SystemExit(0)


class _GroupParser(argparse.ArgumentParser):
    """A group's parser: its help ends with its commands, one line each, like its options above."""

    def __init__(self, commands: list[tuple[str, str]], **settings: Any) -> None:
        super().__init__(**settings)
        self.commands = commands

    def format_help(self) -> str:
        import textwrap

        column = max(len(name) for name, _ in self.commands) + 4
        width = max(_columns() - 2, column + 20)
        rows = [
            textwrap.fill(
                text.split("\n", 1)[0], width, initial_indent=f"  {name}".ljust(column), subsequent_indent=" " * column
            )
            for name, text in self.commands
        ]
        return super().format_help() + "\ncommands:\n" + "\n".join(rows) + "\n"


def _formatter(prog: str) -> argparse.HelpFormatter:
    """argparse's own help layout, at a width found without shutil (whose import argparse would
    otherwise pay for every argument added: ~5 ms of start-up)."""
    return argparse.HelpFormatter(prog, width=_columns() - 2)


def _columns() -> int:
    """The terminal's width as shutil.get_terminal_size finds it: $COLUMNS, the terminal, else 80."""
    try:
        columns = int(os.environ.get("COLUMNS", "0"))
    except ValueError:
        columns = 0
    if columns <= 0:
        try:
            columns = os.get_terminal_size(sys.__stdout__.fileno()).columns  # type: ignore[union-attr]
        except (AttributeError, ValueError, OSError):
            columns = 0
    return columns or 80


_ANSI = re.compile(r"\033\[[;?0-9]*[a-zA-Z]")


def echo(message: str = "", *, err: bool = False) -> None:
    """Print a line as click.echo did: flushed at once, terminal escapes dropped unless on a terminal."""
    stream = sys.stderr if err else sys.stdout
    if "\033" in message and not stream.isatty():
        message = _ANSI.sub("", message)
    stream.write(message + "\n")
    stream.flush()


#: Options several commands share.
JSON = Arg("--json", kind=FLAG, dest="as_json", help="print raw JSON")
STATUS = Arg("--status", help="only this status")
LIMIT = Arg("--limit", type=int, default=20, help="how many")


# ---------------------------------------------------------------------------------------------
# value types (pathlib is imported when a path is given, not at start-up)


def path(value: str) -> Any:
    """A path option's value, as a :class:`pathlib.Path`."""
    from pathlib import Path

    return Path(value)


def existing_file(value: str) -> Any:
    """A path that names a readable file (click's ``Path(exists=True, dir_okay=False)``)."""
    found = path(value)
    if not found.exists():
        raise argparse.ArgumentTypeError(f"File {value!r} does not exist.")
    if found.is_dir():
        raise argparse.ArgumentTypeError(f"File {value!r} is a directory.")
    if not os.access(found, os.R_OK):
        raise argparse.ArgumentTypeError(f"File {value!r} is not readable.")
    return found
