"""`ccidkit fuzz TARGET --seconds N` — one fuzz campaign, one JSON line out.

TARGET is one of atr, ccid, t1, apdu, vicc, vscard, usbredir (or "all").
``--engine atheris`` runs coverage-guided libFuzzer when atheris is
installed; the default ``random`` engine mutates seeds in process. Exit 1
when an input ended with anything but a value or the documented exception.
"""

from ccidkit.scripts import fuzz


def register(subparsers):
    p = subparsers.add_parser("fuzz", help="fuzz a decoder or state machine for N seconds")
    p.add_argument("target", choices=fuzz.TARGETS + ("all",))
    p.add_argument("--seconds", type=float, default=10.0)
    p.add_argument("--engine", choices=("random", "atheris"), default="random")
    p.add_argument("--seed", type=int, default=0)
    p.set_defaults(func=run)


def run(args):
    targets = fuzz.TARGETS if args.target == "all" else (args.target,)
    bad = 0
    for t in targets:
        if args.engine == "atheris":
            if not fuzz.atheris_available():
                print('{"error": "atheris is not installed"}')
                return 2
            res = fuzz.campaign_atheris(t, int(args.seconds))
        else:
            res = fuzz.campaign_random(t, args.seconds, args.seed)
        print(fuzz.report_line(res))
        bad += res["findings"]
    return 1 if bad else 0
