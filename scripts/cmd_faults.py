"""`ccidkit faults [--report FILE]` — run the fault matrix (scripts/faults_matrix.py).

Prints one line per cell; with ``--report`` writes the Markdown table into
FILE between the markers ``<!-- faults-matrix -->`` and
``<!-- /faults-matrix -->`` (the rest of the file is kept; the table is
appended when the markers are missing). Exit 1 when a cell is not green.
"""

from ccidkit.scripts import faults_matrix

BEGIN = "<!-- faults-matrix -->"
END = "<!-- /faults-matrix -->"


def register(subparsers):
    p = subparsers.add_parser("faults", help="run the fault matrix on emulated readers")
    p.add_argument("--report", help="Markdown file to write the table into")
    p.set_defaults(func=run)


def splice(text, table):
    block = BEGIN + "\n" + table + END
    if BEGIN in text and END in text:
        head = text.split(BEGIN, 1)[0]
        tail = text.split(END, 1)[1]
        return head + block + tail
    return text + ("\n" if text and not text.endswith("\n") else "") + block + "\n"


def run(args):
    cells = faults_matrix.run_matrix()
    ok = sum(1 for c in cells if c["status"] == "ok")
    na = sum(1 for c in cells if c["status"] == "n/a")
    bad = [c for c in cells if c["status"] == "FAIL"]
    for c in cells:
        print("%-4s %-22s %-14s %d slot(s): %s" % (c["status"], c["fault"], c["level"],
                                                   c["slots"], c.get("outcome", "")))
    summary = "%d cells: %d green, %d n/a, %d failed" % (len(cells), ok, na, len(bad))
    print(summary)
    if args.report:
        table = faults_matrix.render(cells, summary + ".\n")
        try:
            with open(args.report, encoding="utf-8") as f:
                text = f.read()
        except OSError:
            text = ""
        with open(args.report, "w", encoding="utf-8") as f:
            f.write(splice(text, table))
    return 1 if bad else 0
