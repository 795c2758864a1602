"""`ccidkit serve-reader` (alias `serial-reader`): an emulated Gemalto serial
reader on a pty, for libccid's serial driver.

    ccidkit serve-reader --card mini
    ccidkit serve-reader --as GemPCPinPad --card auth --pin-pad 123456
    ccidkit serve-reader --as GemCoreSIMPro --pty /tmp/simpro --card 0:usim --card 1:esim
    ccidkit serial-reader --card usim --card-image sim.img --trace

``--as`` is the name libccid's serial driver knows the reader by (the part
after the colon of reader.conf's DEVICENAME): GemPCTwin (default),
GemPCPinPad or GemCoreSIMPro (two slots). ``--pty PATH`` also makes PATH a
symbolic link to the pseudo-terminal (libccid cuts DEVICENAME at the first
colon, so PATH has none). ``--card [SLOT:]NAME`` puts a card in slot SLOT
(every slot without SLOT); ``--card-image`` is the image of the card in slot
0. ``--pin-pad PIN`` scripts what the PIN pad's user types (repeatable; "cancel"
and "timeout" too).

Prints the device path and the reader.conf entry for libccid's serial
driver, then serves until SIGINT/SIGTERM (or --exit-after). Start pcscd
after this command: libccid opens the port when pcscd reads reader.conf.
Exit status: 0 stopped, 1 the card or reader could not be made, 2 usage
error.
"""

import os
import signal
import sys
import threading

from ccidkit.core.errors import CcidkitError
from ccidkit.emu.pcscd import reader_conf, serial_reader
from ccidkit.emu.serial_reader import PERSONALITIES, SerialReaderBridge, make_serial_reader
from ccidkit.scripts.cmd_vicc import MAX_RUN_SECONDS, make_card


def register(sub):
    p = sub.add_parser(
        "serve-reader", aliases=["serial-reader"],
        help="an emulated Gemalto serial reader on a pty, for libccid",
        description="Serve an emulated serial reader (libccid's serial driver, "
                    "libccidtwin.so) on a pseudo-terminal, with virtual cards in it.")
    p.add_argument("--as", dest="personality", default="GemPCTwin",
                   metavar="|".join(PERSONALITIES),
                   help="the reader libccid is told it drives (default GemPCTwin)")
    p.add_argument("--pty", default=None, metavar="PATH",
                   help="make PATH a symbolic link to the pseudo-terminal")
    p.add_argument("--card", action="append", default=None, metavar="[SLOT:]NAME",
                   help="card from the registry in slot SLOT, or in every slot "
                        "(repeatable; default mini in slot 0)")
    p.add_argument("--card-image", default=None, metavar="PATH",
                   help="the persistent image of the card in slot 0")
    p.add_argument("--empty", action="store_true", help="start with no card in any slot")
    p.add_argument("--pin-pad", action="append", default=[], metavar="PIN",
                   help="what the PIN pad's user types, in order (PIN digits, cancel, timeout)")
    p.add_argument("--trace", action="store_true",
                   help="print the CCID messages on stderr")
    p.add_argument("--exit-after", type=float, default=None, metavar="SECONDS",
                   help="stop after this long")
    p.set_defaults(func=run, serial_parser=p)


def _usage(args, text):
    parser = getattr(args, "serial_parser", None)
    if parser is not None:
        parser.print_usage(sys.stderr)
    sys.stderr.write("ccidkit serve-reader: error: %s\n" % text)
    return 2


def parse_cards(specs, slots):
    """{slot: name} from ``[SLOT:]NAME`` specs (later ones win); ValueError when bad."""
    out = {}
    for spec in specs:
        slot = None
        name = spec
        if ":" in spec:
            head, name = spec.split(":", 1)
            slot = int(head, 0)
            if not 0 <= slot < slots:
                raise ValueError("--card %r: this reader has slots 0..%d" % (spec, slots - 1))
        if not name:
            raise ValueError("--card %r: no card name" % spec)
        for s in range(slots):
            if slot is None or slot == s:
                out[s] = name
    return out


def run(args):
    if args.exit_after is not None and not 0 < args.exit_after <= MAX_RUN_SECONDS:
        return _usage(args, "--exit-after must be above 0 and at most %g" % MAX_RUN_SECONDS)
    known = dict((n.lower(), n) for n in PERSONALITIES)
    if args.personality.lower() not in known:
        return _usage(args, "--as %s: one of %s" % (args.personality, ", ".join(PERSONALITIES)))
    name = known[args.personality.lower()]
    if args.pty is not None and (":" in args.pty or os.path.lexists(args.pty)):
        return _usage(args, "--pty %s: must not exist yet nor hold a colon" % args.pty)
    cards = {}
    try:
        reader, echo = make_serial_reader(name)
        try:
            wanted = parse_cards(args.card or ["0:mini"], len(reader.slots))
        except ValueError as e:
            return _usage(args, str(e))
        if not args.empty:
            for slot in sorted(wanted):
                cards[slot] = make_card(wanted[slot], args.card_image if slot == 0 else None)
                reader.insert_card(slot, cards[slot], notify=False)
        for entry in args.pin_pad:
            reader.keypad(0, entry)
    except (ValueError, KeyError, OSError, CcidkitError) as e:
        sys.stderr.write("ccidkit serve-reader: %s\n" % e)
        for card in cards.values():
            close = getattr(card, "close", None)
            if close is not None:
                close()
        return 1

    def log(line):
        sys.stderr.write(line + "\n")
        sys.stderr.flush()

    stop = threading.Event()

    def on_signal(signum, frame):
        stop.set()

    old = {s: signal.signal(s, on_signal) for s in (signal.SIGINT, signal.SIGTERM)}
    bridge = SerialReaderBridge(reader, log=log if args.trace else None, echo=echo)
    linked = False
    try:
        bridge.start()
        device = bridge.device
        if args.pty is not None:
            os.symlink(bridge.device, args.pty)
            linked = True
            device = args.pty
        entry = serial_reader(device, model=name, name="%s serial" % name)
        sys.stdout.write("%s\n\n%s" % (device, reader_conf(entry)))
        sys.stdout.flush()
        if args.exit_after is not None:
            stop.wait(args.exit_after)
        else:
            while not stop.wait(1.0):
                pass
    except OSError as e:
        sys.stderr.write("ccidkit serve-reader: %s\n" % e)
        return 1
    finally:
        bridge.stop()
        if linked:
            try:
                os.unlink(args.pty)
            except OSError:
                pass
        for card in cards.values():
            close = getattr(card, "close", None)
            if close is not None:
                close()
        for s, handler in old.items():
            signal.signal(s, handler)
    return 0
