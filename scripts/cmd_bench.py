"""`ccidkit bench NAME`: the benchmarks of ccidkit.emu.bench.

    ccidkit bench slots --profile sysmooctsim --json
    ccidkit bench apdu --out docs/bench          # NAME.json, NAME.md, NAME.png there
    ccidkit bench footprint --smoke              # tiny sizes: checks it still runs

Every benchmark writes its result as JSON (``--json`` prints it on stdout,
``--json-file F`` writes it), a markdown table (``--md F``, printed when
nothing else is asked for) and a PNG plot (``--plot F.png``). ``--out DIR``
writes all three as DIR/NAME.json, DIR/NAME.md, DIR/NAME.png.

Exit status: 0 done, 1 the benchmark could not run (the reason is printed),
2 usage error.
"""

import argparse
import importlib
import json
import os
import pkgutil
import sys

from ccidkit.emu import bench as _pkg
from ccidkit.emu.bench.common import BenchError, write_json, write_text


def _benches():
    out = []
    for m in sorted(pkgutil.iter_modules(_pkg.__path__), key=lambda m: m.name):
        mod = importlib.import_module("ccidkit.emu.bench." + m.name)
        if getattr(mod, "NAME", None):
            out.append(mod)
    return out


def _common(p):
    g = p.add_argument_group("output")
    g.add_argument("--json", action="store_true", help="print the result as JSON on stdout")
    g.add_argument("--json-file", metavar="FILE", help="write the result as JSON")
    g.add_argument("--md", metavar="FILE", help="write the markdown table")
    g.add_argument("--plot", metavar="FILE.png", help="draw the result")
    g.add_argument("--out", metavar="DIR", help="write DIR/NAME.json, .md and .png")
    g.add_argument("--smoke", action="store_true",
                   help="tiny sizes and one run: checks the benchmark still runs")


def register(sub):
    p = sub.add_parser("bench", help="benchmarks: many cards at once, per-APDU cost, "
                       "the third-party stack, footprint, firmware",
                       description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    bsub = p.add_subparsers(dest="bench", metavar="NAME")
    for mod in _benches():
        bp = bsub.add_parser(mod.NAME, help=mod.HELP, description=mod.__doc__,
                             formatter_class=argparse.RawDescriptionHelpFormatter)
        mod.add_arguments(bp)
        _common(bp)
        bp.set_defaults(bench_module=mod)
    p.set_defaults(func=run, bench_parser=p)


def run(args):
    mod = getattr(args, "bench_module", None)
    if mod is None:
        args.bench_parser.print_help()
        return 2
    try:
        result = mod.run(args)
        md = mod.markdown(result)
        paths = []
        if args.out:
            base = os.path.join(args.out, mod.NAME)
            write_json(result, base + ".json")
            write_text(md, base + ".md")
            mod.plot(result, base + ".png")
            paths += [base + ".json", base + ".md", base + ".png"]
        if args.json_file:
            write_json(result, args.json_file)
            paths.append(args.json_file)
        if args.md:
            write_text(md, args.md)
            paths.append(args.md)
        if args.plot:
            mod.plot(result, args.plot)
            paths.append(args.plot)
    except BenchError as e:
        sys.stderr.write("ccidkit bench %s: %s\n" % (mod.NAME, e))
        return 1
    if args.json:
        json.dump(result, sys.stdout, indent=1)
        sys.stdout.write("\n")
    elif not paths:
        sys.stdout.write(md)
    for p in paths:
        sys.stderr.write("wrote %s\n" % p)
    return 0
