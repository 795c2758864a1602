"""`ccidkit serial-reader`: an emulated GemPC Twin serial reader on a pty.

    ccidkit serial-reader --card mini
    ccidkit serial-reader --card usim --card-image sim.img --trace

Prints the pseudo-terminal's path and the reader.conf entry for libccid's
serial driver, then serves until SIGINT/SIGTERM (or --exit-after). Start
pcscd after this command: libccid opens the port when pcscd reads
reader.conf. Exit status: 0 stopped, 1 the card or reader could not be made,
2 usage error.
"""

import signal
import sys
import threading

from ccidkit.core.errors import CcidkitError
from ccidkit.emu.pcscd import reader_conf, serial_reader
from ccidkit.emu.reader import EmulatedReader
from ccidkit.emu.serial_reader import SerialReaderBridge
from ccidkit.scripts.cmd_vicc import MAX_RUN_SECONDS, make_card

PROFILE = "gemalto-pctwin"


def register(sub):
    p = sub.add_parser(
        "serial-reader", help="an emulated GemPC Twin serial reader on a pty, for libccid",
        description="Serve an emulated GemPC Twin serial reader (libccid's serial driver, "
                    "libccidtwin.so) on a pseudo-terminal, with a virtual card in it.")
    p.add_argument("--card", default="mini", metavar="NAME",
                   help="card name from the registry (default mini)")
    p.add_argument("--card-image", default=None, metavar="PATH",
                   help="the card's persistent image file")
    p.add_argument("--empty", action="store_true", help="start with no card in the slot")
    p.add_argument("--trace", action="store_true",
                   help="print the CCID messages on stderr")
    p.add_argument("--exit-after", type=float, default=None, metavar="SECONDS",
                   help="stop after this long")
    p.set_defaults(func=run, serial_parser=p)


def run(args):
    if args.exit_after is not None and not 0 < args.exit_after <= MAX_RUN_SECONDS:
        parser = getattr(args, "serial_parser", None)
        if parser is not None:
            parser.print_usage(sys.stderr)
        sys.stderr.write("ccidkit serial-reader: error: --exit-after must be above 0 and "
                         "at most %g\n" % MAX_RUN_SECONDS)
        return 2
    try:
        card = make_card(args.card, args.card_image)
        reader = EmulatedReader(PROFILE, cards={} if args.empty else {0: card})
    except (ValueError, KeyError, OSError, CcidkitError) as e:
        sys.stderr.write("ccidkit serial-reader: %s\n" % e)
        return 1

    def log(line):
        sys.stderr.write(line + "\n")
        sys.stderr.flush()

    stop = threading.Event()

    def on_signal(signum, frame):
        stop.set()

    old = {s: signal.signal(s, on_signal) for s in (signal.SIGINT, signal.SIGTERM)}
    bridge = SerialReaderBridge(reader, log=log if args.trace else None)
    try:
        bridge.start()
        sys.stdout.write("%s\n\n%s" % (bridge.device, reader_conf(serial_reader(bridge.device))))
        sys.stdout.flush()
        if args.exit_after is not None:
            stop.wait(args.exit_after)
        else:
            while not stop.wait(1.0):
                pass
    finally:
        bridge.stop()
        close = getattr(card, "close", None)
        if close is not None:
            close()
        for s, handler in old.items():
            signal.signal(s, handler)
    return 0
