"""`ccidkit subset`: check the portable files against the restricted subset."""

from . import subset


def register(sub):
    p = sub.add_parser("subset", help="check portable code against the restricted subset")
    p.add_argument("--no-compile", action="store_true", help="skip the mpy-cross compile")
    p.set_defaults(func=run)


def run(args):
    files = subset.portable_files()
    violations = subset.check_all(compile_=not args.no_compile)
    for v in violations:
        print(v)
    print("%d portable files, %d violations" % (len(files), len(violations)))
    return 1 if violations else 0
