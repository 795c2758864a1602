"""`ccidkit vicc`: serve a virtual card to pcscd through vsmartcard's vpcd.

    ccidkit vicc --card mini                   # connect to vpcd on localhost:35963
    ccidkit vicc --card usim --card-image sim.img --port 35964
    ccidkit vicc --card mini --listen 40000    # for DEVICENAME 127.0.0.1:40000
    nsenter --net=/proc/PID/ns/net ccidkit vicc --card mini   # a private pcscd's vpcd

The card is inserted while the command runs and removed when it ends
(SIGINT/SIGTERM). With --trace every APDU is printed pcscd-style on stderr.
Exit status: 0 stopped by a signal or --exit-after, 1 the card could not be
made, 2 usage error.
"""

import signal
import sys
import threading

from ccidkit.core.errors import CcidkitError
from ccidkit.emu.vicc import VPCD_PORT, Vicc

# The longest a run can be asked to last with --exit-after (a day).
MAX_RUN_SECONDS = 86400.0


def make_card(name, image=None):
    """A card from the registry (ccidkit.emu.cards.make_card); "mini" also
    works without it."""
    try:
        from ccidkit.emu.cards import make_card as registry
    except ImportError:
        registry = None
    if registry is not None:
        return registry(name, image=image)
    if name == "mini":
        if image is not None:
            raise ValueError("the mini card keeps no image")
        from ccidkit.emu.card.minicard import MiniCard
        return MiniCard()
    raise ValueError("unknown card %r (known here: mini)" % name)


def register(sub):
    p = sub.add_parser(
        "vicc", help="serve a virtual card to pcscd through vpcd",
        description="Serve a virtual card to pcscd through vsmartcard's vpcd driver: "
                    "connect to a listening vpcd (reader.conf DEVICENAME /dev/null:PORT), or "
                    "--listen for a vpcd configured to connect out (DEVICENAME HOST:PORT).")
    p.add_argument("--card", default="mini", metavar="NAME",
                   help="card name from the registry (mini, usim, auth, esim; default mini)")
    p.add_argument("--card-image", default=None, metavar="PATH",
                   help="the card's persistent image file")
    p.add_argument("--host", default="127.0.0.1", help="vpcd's address (default 127.0.0.1)")
    p.add_argument("--port", type=int, default=VPCD_PORT,
                   help="vpcd's port (default %d; slot n is %d+n)" % (VPCD_PORT, VPCD_PORT))
    p.add_argument("--listen", type=int, default=None, metavar="PORT",
                   help="listen on 127.0.0.1:PORT instead of connecting")
    p.add_argument("--trace", action="store_true", help="print APDUs and events on stderr")
    p.add_argument("--exit-after", type=float, default=None, metavar="SECONDS",
                   help="remove the card and exit after this long")
    p.set_defaults(func=run, vicc_parser=p)


def _usage_error(args, message):
    parser = getattr(args, "vicc_parser", None)
    if parser is not None:
        parser.print_usage(sys.stderr)
    sys.stderr.write("ccidkit vicc: error: %s\n" % message)
    return 2


def run(args):
    for port in (args.port, args.listen):
        if port is not None and not 0 <= port <= 65535:
            return _usage_error(args, "ports are 0..65535")
    if args.exit_after is not None and not 0 < args.exit_after <= MAX_RUN_SECONDS:
        return _usage_error(args, "--exit-after must be above 0 and at most %g"
                            % MAX_RUN_SECONDS)
    try:
        card = make_card(args.card, args.card_image)
    except (ValueError, KeyError, OSError, CcidkitError) as e:
        sys.stderr.write("ccidkit vicc: cannot make card %r: %s\n" % (args.card, e))
        return 1

    def log(line):
        sys.stderr.write(line + "\n")
        sys.stderr.flush()

    stop = threading.Event()

    def on_signal(signum, frame):
        stop.set()

    old = {s: signal.signal(s, on_signal) for s in (signal.SIGINT, signal.SIGTERM)}
    vicc = Vicc(card, host=args.host, port=args.port, listen=args.listen,
                log=log if args.trace else None)
    try:
        vicc.start()
        if args.listen is not None:
            log("vicc: %s listening on 127.0.0.1:%d" % (args.card, vicc.port))
        else:
            log("vicc: %s connecting to %s:%d" % (args.card, args.host, args.port))
        if args.exit_after is not None:
            stop.wait(args.exit_after)
        else:
            while not stop.wait(1.0):
                pass
    finally:
        vicc.stop()
        close = getattr(card, "close", None)
        if close is not None:
            close()
        for s, handler in old.items():
            signal.signal(s, handler)
    return 0
