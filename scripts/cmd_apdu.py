"""`ccidkit apdu`: send APDUs to the card in a reader, scriptor-like, with a trace.

    ccidkit apdu --reader 0 "00 A4 04 00 09 F0 63 63 69 64 6B 69 74 01" "00 C0 00 00 18"
    ccidkit apdu --emulated gemalto-pctwin --card usim "A0 A4 00 00 02 3F 00"
    echo "00 20 00 01 08 31 32 33 34 FF FF FF FF" | ccidkit apdu --reader 0 -

Every APDU is one argument (spaces allowed); ``-`` reads them from standard
input, one a line (``#`` starts a comment; ``reset`` resets the card). The
trace is pcscd's: ``-> 00 A4 ...`` for the command, ``<- ... 90 00`` for the
response. The data of PIN commands (VERIFY, CHANGE REFERENCE DATA, RESET
RETRY COUNTER, DISABLE/ENABLE VERIFICATION REQUIREMENT) is shown as ``**``
unless --show-pin.

Exit status: 0 every APDU got a response, 1 a reader or card error,
2 usage error (no such reader, text that is not hex).
"""

import sys

from ccidkit.core import pcsc
from ccidkit.core.apdu import explain_sw
from ccidkit.core.hexutil import ApduMasker, HexError, from_hex, mask_apdu, to_hex
from ccidkit.core.host import reader_options as ro

# INS codes whose command data is a PIN or PUK (ISO/IEC 7816-4 §11.5.6-§11.5.10,
# TS 51.011 §9.2.9-§9.2.12 for 26/28).

PROTOCOLS = {"T0": pcsc.SCARD_PROTOCOL_T0, "T1": pcsc.SCARD_PROTOCOL_T1,
             "any": pcsc.SCARD_PROTOCOL_T0 | pcsc.SCARD_PROTOCOL_T1}


def register(sub):
    p = sub.add_parser("apdu", help="send APDUs to a card and trace them (scriptor-like)",
                       description="Send command APDUs to the card in one reader and print a "
                                   "pcscd-style trace of commands and responses.")
    ro.add_reader_arguments(p)
    p.add_argument("--reader", "-r", default="0", metavar="N|NAME",
                   help="reader number in `ccidkit readers` order, or (part of) its name "
                        "(default 0)")
    p.add_argument("--protocol", choices=sorted(PROTOCOLS), default="any",
                   help="protocol to ask for (default any)")
    p.add_argument("--show-pin", action="store_true",
                   help="show the data of PIN commands and secret answers in the trace")
    p.add_argument("--explain", action="store_true",
                   help="explain every status word")
    p.add_argument("apdus", nargs="*", metavar="APDU",
                   help="command APDUs in hex, or - to read them from standard input")
    p.set_defaults(func=run)


def mask_command(apdu, show_pin=False):
    """The trace text of a command APDU, PIN data hidden (header and length kept)."""
    apdu = bytes(apdu)
    if show_pin:
        return to_hex(apdu)
    return mask_apdu(apdu)


def _commands(args):
    """(kind, value) items: ("apdu", bytes) or ("reset", None); HexError on bad text."""
    texts = []
    for a in args.apdus:
        if a == "-":
            for line in sys.stdin:
                line = line.split("#", 1)[0].strip()
                if line:
                    texts.append(line)
        else:
            texts.append(a)
    out = []
    for t in texts:
        if t.strip().lower() == "reset":
            out.append(("reset", None))
            continue
        data = from_hex(t)
        if len(data) < 4:
            raise HexError("an APDU has at least 4 bytes: %r" % t)
        out.append(("apdu", data))
    return out


def _protocol_name(p):
    return "T=0" if p == pcsc.SCARD_PROTOCOL_T0 else "T=1"


def run(args):
    try:
        commands = _commands(args)
    except HexError as e:
        sys.stderr.write("ccidkit apdu: not an APDU: %s\n" % e)
        return 2
    if not commands:
        sys.stderr.write("ccidkit apdu: no APDU given (arguments, or - for standard input)\n")
        return 2
    try:
        mgr = ro.open_manager(args)
        names = ro.reader_names(mgr)
        if not names:
            raise ro.no_readers_error(mgr)
        name = ro.choose_reader(names, args.reader)
    except ro.ReaderOptionsError as e:
        sys.stderr.write("ccidkit apdu: %s\n" % e.message)
        return 1 if e.name in ("NO_READERS", "NO_LIBUSB") else 2
    ctx = pcsc.SCardEstablishContext(pcsc.SCARD_SCOPE_USER, mgr)
    try:
        return _session(ctx, name, commands, args)
    finally:
        pcsc.SCardReleaseContext(ctx)


def _session(ctx, name, commands, args):
    print("Using reader: %s" % name)
    want = PROTOCOLS[args.protocol]
    try:
        h, proto = pcsc.SCardConnect(ctx, name, pcsc.SCARD_SHARE_SHARED, want)
        atr = pcsc.SCardStatus(h)[3]
    except pcsc.PCSCError as e:
        sys.stderr.write("ccidkit apdu: cannot connect to %s: %s (%s)\n" % (name, e.message,
                                                                           e.name))
        return 1
    print("Using %s protocol" % _protocol_name(proto))
    print("ATR: %s" % to_hex(atr))
    status = 0
    masker = ApduMasker()
    for kind, data in commands:
        try:
            if kind == "reset":
                proto = pcsc.SCardReconnect(h, pcsc.SCARD_SHARE_SHARED, want,
                                            pcsc.SCARD_RESET_CARD)
                print("> reset: ATR %s" % to_hex(pcsc.SCardStatus(h)[3]))
                continue
            text = masker.command(data)
            print("-> " + (to_hex(data) if args.show_pin else text))
            rsp = pcsc.SCardTransmit(h, None, data)
        except pcsc.PCSCError as e:
            sys.stderr.write("ccidkit apdu: %s (%s)\n" % (e.message, e.name))
            status = 1
            break
        text = masker.response(rsp)[0]
        print("<- " + (to_hex(rsp) if args.show_pin else text))
        if args.explain and len(rsp) >= 2:
            print("   " + explain_sw(rsp[-2], rsp[-1]))
    try:
        pcsc.SCardDisconnect(h, pcsc.SCARD_LEAVE_CARD)
    except pcsc.PCSCError as e:
        sys.stderr.write("ccidkit apdu: disconnect: %s (%s)\n" % (e.message, e.name))
    return status
