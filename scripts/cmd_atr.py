"""`ccidkit atr`: explain an Answer-to-Reset (ISO/IEC 7816-3 §8, 7816-4 §8.1.1).

    ccidkit atr 3B DC 96 FF 81 11 FE 80 31 C8 54 43 56 35 07 73 FF A1 C0 3C
    ccidkit atr --json 3BDC96FF8111FE8031C8544356350773FFA1C03C
    ccidkit atr - < atrs.txt          # one ATR a line in, one JSON object a line out

Exit status: 0 every ATR parsed (possibly with warnings), 1 an ATR could not
be parsed, 2 usage error.
"""

import json
import sys

from ccidkit.core.atr import ATRError, parse_atr
from ccidkit.core.hexutil import HexError, from_hex

DEFAULT_CLOCK_MHZ = 4.0
MAX_CLOCK_MHZ = 100.0


def register(sub):
    p = sub.add_parser(
        "atr", help="explain an ATR (bytes, protocols, Fi/Di, historical bytes)",
        description="Explain an ATR given in hex (one or many arguments), or read one ATR "
                    "a line from stdin with '-' and print one JSON object a line.")
    p.add_argument("hex", nargs="*", metavar="HEX",
                   help="the ATR in hex (spaces and colons allowed), or - for stdin")
    p.add_argument("--json", action="store_true", help="print the ATR's fields as JSON")
    p.add_argument("--clock", type=float, default=DEFAULT_CLOCK_MHZ, metavar="MHZ",
                   help="card clock for the baud rate (default %g MHz)" % DEFAULT_CLOCK_MHZ)
    p.set_defaults(func=run, atr_parser=p)


def _usage_error(args, message):
    parser = getattr(args, "atr_parser", None)
    if parser is not None:
        parser.print_usage(sys.stderr)
    sys.stderr.write("ccidkit atr: error: %s\n" % message)
    return 2


def _parse(text):
    try:
        data = from_hex(text)
    except HexError as e:
        raise ATRError("not hex: %s" % e, name="ATR_NOT_HEX")
    return parse_atr(data)


def run(args):
    mhz = args.clock
    if not (0 < mhz <= MAX_CLOCK_MHZ):
        return _usage_error(args, "--clock must be above 0 and at most %g MHz" % MAX_CLOCK_MHZ)
    clock_hz = int(round(mhz * 1000000))
    words = list(args.hex)
    if not words:
        return _usage_error(args, "give an ATR in hex, or - to read ATRs from stdin")
    if "-" in words:
        if len(words) != 1:
            return _usage_error(args, "'-' (stdin) cannot be mixed with hex arguments")
        return _run_stdin(sys.stdin, clock_hz)
    text = " ".join(words)
    try:
        atr = _parse(text)
    except ATRError as e:
        sys.stderr.write("ccidkit atr: cannot parse ATR %r: %s\n" % (text, e))
        return 1
    if args.json:
        sys.stdout.write(json.dumps(atr.as_dict(clock_hz), indent=2, sort_keys=True) + "\n")
    else:
        for line in atr.explain(clock_hz):
            sys.stdout.write(line + "\n")
    return 0


def _run_stdin(stream, clock_hz):
    status = 0
    for line in stream:
        text = line.strip()
        if not text:
            continue
        try:
            obj = _parse(text).as_dict(clock_hz)
        except ATRError as e:
            obj = {"input": text, "error": str(e)}
            status = 1
        sys.stdout.write(json.dumps(obj, sort_keys=True) + "\n")
        sys.stdout.flush()
    return status
