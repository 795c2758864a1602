"""`ccidkit ccid`: CCID class descriptors and messages in human form (CCID rev 1.1).

    ccidkit ccid descriptor 36 21 10 01 00 07 01 00 00 00 ...   # §5.1 class descriptor
    ccidkit ccid descriptor --json 0902 5D00 0101 0080 32 0904 ...  # whole configuration
    ccidkit ccid decode 6F 05000000 00 01 00 0000 00A4040000      # one §6 message
    ccidkit ccid decode --slots 8 50 01 E0                        # NotifySlotChange
    echo 80 02000000 00 01 00 00 00 9000 | ccidkit ccid decode -

Exit status: 0 decoded, 1 the bytes are not a valid descriptor/message,
2 usage error (no input, not hex).
"""

import json
import sys

from ccidkit.core import ccid
from ccidkit.core.ccid import CCIDError
from ccidkit.core.ccid_descriptor import find_ccid_descriptor, find_ccid_interfaces
from ccidkit.core.hexutil import HexError, from_hex, to_hex


def register(sub):
    p = sub.add_parser("ccid", help="explain CCID class descriptors and messages",
                       description="Decode USB CCID (rev 1.1) class descriptors and "
                                   "messages given in hex.")
    csub = p.add_subparsers(dest="ccid_command", metavar="WHAT")
    d = csub.add_parser("descriptor", help="dump a CCID class descriptor (or a whole "
                                           "configuration descriptor holding one)")
    d.add_argument("hex", nargs="*", metavar="HEX", help="descriptor bytes in hex, or - for stdin")
    d.add_argument("--json", action="store_true", help="machine-readable output")
    d.add_argument("--all", action="store_true",
                   help="every CCID interface of a configuration (JSON: a list)")
    d.set_defaults(func=run_descriptor, ccid_parser=d)
    m = csub.add_parser("decode", help="decode one CCID message (bulk-OUT, bulk-IN or "
                                       "interrupt-IN)")
    m.add_argument("hex", nargs="*", metavar="HEX", help="message bytes in hex, or - for stdin")
    m.add_argument("--json", action="store_true", help="machine-readable output")
    m.add_argument("--slots", type=int, default=None, metavar="N",
                   help="slot count for RDR_to_PC_NotifySlotChange (bMaxSlotIndex + 1)")
    m.add_argument("--max-length", type=int, default=ccid.DEFAULT_MAX_MESSAGE_LENGTH,
                   metavar="BYTES", help="largest message accepted, header included "
                                         "(default %(default)s)")
    m.add_argument("--show-pin", action="store_true",
                   help="do not hide the data of VERIFY / CHANGE REFERENCE DATA APDUs")
    m.set_defaults(func=run_decode, ccid_parser=m)
    p.set_defaults(func=_no_command, ccid_parser=p)


def _no_command(args):
    args.ccid_parser.print_help(sys.stderr)
    return 2


def _usage_error(args, message):
    args.ccid_parser.print_usage(sys.stderr)
    sys.stderr.write("ccidkit ccid: error: %s\n" % message)
    return 2


def _read_input(args):
    words = list(args.hex)
    if words == ["-"]:
        words = [sys.stdin.read()]
    elif "-" in words:
        raise ValueError("'-' (stdin) cannot be mixed with hex arguments")
    if not words or not "".join(words).strip():
        raise ValueError("give the bytes in hex, or - to read them from stdin")
    try:
        return from_hex(" ".join(words))
    except HexError as e:
        raise ValueError("not hex: %s" % e)


def run_descriptor(args):
    try:
        data = _read_input(args)
    except ValueError as e:
        return _usage_error(args, str(e))
    try:
        if args.all and len(data) >= 2 and data[1] == 0x02:
            found = find_ccid_interfaces(data)
            if not found:
                raise CCIDError("no CCID interface in this configuration", None,
                                "NO_CCID_INTERFACE")
        else:
            found = [find_ccid_descriptor(data)]
    except CCIDError as e:
        sys.stderr.write("ccidkit ccid: %s\n" % e)
        return 1
    if args.json:
        if args.all:
            print(json.dumps([d.as_dict() for d in found], indent=2))
        else:
            print(json.dumps(found[0].as_dict(), indent=2))
        return 0
    for i, d in enumerate(found):
        if i:
            print("")
        for line in d.describe():
            print(line)
    return 0


def _jsonable(value):
    if isinstance(value, (bytes, bytearray)):
        return to_hex(value, "")
    if isinstance(value, int) or value is None:
        return value
    return dict((name, _jsonable(v)) for name, v in value.fields())


def message_dict(msg, show_pin=False):
    """The --json view of a decoded message."""
    out = {"name": msg.name}
    for name, value in msg.fields():
        out[name] = _jsonable(value)
    if isinstance(msg, ccid.CCIDMessage):
        if not show_pin and ccid.carries_pin(msg):
            out["abData"] = "<%d bytes hidden: PIN command>" % len(msg.abData)
        if msg.bMessageType >= 0x80:
            out["bmICCStatus"] = msg.icc_status
            out["bmCommandStatus"] = msg.command_status
            out["status"] = ccid.status_text(msg.bStatus, msg.bError)
            if msg.failed:
                out["error"] = ccid.error_name(msg.bError)
    elif isinstance(msg, ccid.NotifySlotChange):
        out["slots"] = [{"slot": i, "present": p, "changed": c}
                        for i, (p, c) in enumerate(msg.states())]
    return out


def run_decode(args):
    try:
        data = _read_input(args)
    except ValueError as e:
        return _usage_error(args, str(e))
    if args.slots is not None and not (1 <= args.slots <= ccid.MAX_SLOTS):
        return _usage_error(args, "--slots must be 1..%d" % ccid.MAX_SLOTS)
    if args.max_length < ccid.CCID_HEADER_LENGTH:
        return _usage_error(args, "--max-length must be at least 10")
    try:
        msg = ccid.decode_message(data, args.max_length, args.slots)
    except CCIDError as e:
        sys.stderr.write("ccidkit ccid: %s\n" % e)
        return 1
    if args.json:
        print(json.dumps(message_dict(msg, args.show_pin), indent=2))
        return 0
    for line in msg.describe(redact=not args.show_pin):
        print(line)
    return 0
