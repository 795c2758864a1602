"""`ccidkit mpy bundle`: the portable core as .mpy files for MicroPython boards.

    ccidkit mpy bundle                     # every portable module of core/
    ccidkit mpy bundle --minimal           # APDU, T=1 and the CCID driver, with
                                           # exactly what they import
    ccidkit mpy bundle --minimal --out DIR --json

The folder holds ccidkit/core/*.mpy: ``MICROPYPATH=DIR micropython`` (or a
board's /lib) then imports ccidkit.core.driver from it. The minimal bundle is
the import closure of core/driver.py, core/t1.py and core/apdu.py, computed
from their import statements; the modules their imports pull in are listed.

Exit status: 0 built, 1 the bundle could not be made (the reason is printed),
2 usage error.
"""

import argparse
import json
import sys

from ccidkit.uefi import mpy_bundle


def register(sub):
    p = sub.add_parser("mpy", help="MicroPython bundles of the portable core (.mpy files)",
                       description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    msub = p.add_subparsers(dest="mpy_command", metavar="COMMAND")
    b = msub.add_parser("bundle", help="compile the core into a folder of .mpy files",
                        description=__doc__,
                        formatter_class=argparse.RawDescriptionHelpFormatter)
    b.add_argument("--minimal", action="store_true",
                   help="only APDU, T=1 and the CCID driver (and what they import)")
    b.add_argument("--out", metavar="DIR", default=None,
                   help="output folder (default build/mpy-bundle or build/mpy-bundle-minimal)")
    b.add_argument("--json", action="store_true", help="print the bundle's description as JSON")
    b.set_defaults(func=run_bundle)
    p.set_defaults(func=run, mpy_parser=p)


def run(args):
    args.mpy_parser.print_help()
    return 2


def run_bundle(args):
    try:
        info = mpy_bundle.build_bundle(out_dir=args.out, minimal=args.minimal)
    except mpy_bundle.MpyBundleError as e:
        sys.stderr.write("ccidkit mpy bundle: %s\n" % e)
        return 1
    if args.json:
        json.dump(info, sys.stdout, indent=1)
        sys.stdout.write("\n")
    else:
        for line in mpy_bundle.describe(info):
            sys.stdout.write(line + "\n")
    return 0
