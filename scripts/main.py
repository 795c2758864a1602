"""`ccidkit` — the command line.

Each subcommand lives in its own module ``scripts/cmd_<name>.py`` which defines

    def register(subparsers):   # adds its parser, sets defaults(func=run)
    def run(args) -> int:       # the exit status

and is found here by name, so adding a command touches no other file.
"""

import argparse
import importlib
import pkgutil
import sys

from ccidkit import scripts as _pkg
from ccidkit.core import VERSION


def _command_modules():
    names = sorted(m.name for m in pkgutil.iter_modules(_pkg.__path__)
                   if m.name.startswith("cmd_"))
    return [importlib.import_module("ccidkit.scripts." + n) for n in names]


def build_parser():
    parser = argparse.ArgumentParser(
        prog="ccidkit",
        description="Smart cards and CCID readers, from the host to UEFI firmware.")
    parser.add_argument("--version", action="version", version="ccidkit " + VERSION)
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    for mod in _command_modules():
        mod.register(sub)
    return parser


def main(argv=None):
    parser = build_parser()
    args = parser.parse_args(argv)
    if not getattr(args, "func", None):
        parser.print_help()
        return 2
    try:
        return int(args.func(args) or 0)
    except BrokenPipeError:
        return 0
    except KeyboardInterrupt:
        return 130


if __name__ == "__main__":
    sys.exit(main())
