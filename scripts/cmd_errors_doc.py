"""`ccidkit errors-doc [--check]` — docs/errors.md from the error contract.

The table lives in core/contract.py; this renders it as Markdown, one
section per layer. ``--check`` compares instead of writing (exit 1 when the
file is stale), for CI.
"""

import os

from ccidkit.core import contract

DEFAULT_PATH = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))),
                            "docs", "errors.md")


def _cell(text):
    return text.replace("|", "\\|").replace("\n", " ")


def render():
    out = ["# Error contract", "",
           "Generated from `core/contract.py` by `ccidkit errors-doc`; do not edit by hand.",
           "",
           "Every public entry point either returns a value or raises the exception of its row",
           "(all derive from `ccidkit.core.errors.CcidkitError`; `name` is the error's `.name`).",
           "`-` in the exception column: the condition is answered with a value.",
           "tests/host/test_contract.py provokes every row; the fuzz campaigns",
           "(`ccidkit fuzz`) hold decoders to it; docs/reliability.md has the figures.", ""]
    for layer, title in contract.LAYERS:
        rows = contract.rows_for(layer)
        if not rows:
            continue
        out.append("## " + title)
        out.append("")
        out.append("| entry point | condition | exception | name | state after | caller's next step |")
        out.append("|---|---|---|---|---|---|")
        for r in rows:
            out.append("| `%s` | %s | %s | %s | %s | %s |" % tuple(
                _cell(x) for x in (r[1], r[2], r[3], r[4], r[5], r[6])))
        out.append("")
    out.append("%d rows." % len(contract.ROWS))
    return "\n".join(out) + "\n"


def register(subparsers):
    p = subparsers.add_parser("errors-doc", help="write docs/errors.md from the error contract")
    p.add_argument("--check", action="store_true", help="exit 1 if the file is not up to date")
    p.add_argument("--output", default=DEFAULT_PATH, help="file to write (default docs/errors.md)")
    p.set_defaults(func=run)


def run(args):
    text = render()
    if args.check:
        try:
            with open(args.output, encoding="utf-8") as f:
                current = f.read()
        except OSError:
            current = None
        if current != text:
            print("%s is stale: run ccidkit errors-doc" % args.output)
            return 1
        print("%s is up to date (%d rows)" % (args.output, len(contract.ROWS)))
        return 0
    with open(args.output, "w", encoding="utf-8") as f:
        f.write(text)
    print("wrote %s (%d rows)" % (args.output, len(contract.ROWS)))
    return 0
