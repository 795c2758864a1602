"""`ccidkit monitor`: reader and card events as they happen (pcsc_scan-like).

    ccidkit monitor                                    # real readers, until Ctrl-C
    ccidkit monitor --emulated gemalto-pctwin --card none \\
        --script "insert 0:0 usim; wait 100; remove 0:0; unplug 0; plug 0"
    ccidkit monitor --emulated sysmooctsim --timeline events.txt --count 10

Events, one line each, in the order they are seen::

    reader added: NAME
    card inserted: NAME ATR: 3B ...
    card removed: NAME
    reader removed: NAME

The state found at start is reported the same way (readers added, cards
inserted). With emulated readers a timeline drives the events; its steps,
one a line or separated by ``;`` (``#`` starts a comment)::

    insert R[:S] [CARD]   a card (registry name, default mini) into slot S (default 0)
                          of emulated reader R (its position, from 0, in the order
                          the --emulated profiles created the readers)
    remove R[:S]          the card leaves the slot
    unplug R              the reader leaves the bus
    plug R                the reader comes back (a new enumeration: a new number)
    add PROFILE           a new emulated reader is plugged (it becomes the next R)
    wait MS               a pause in the host's time

After every step the events it caused are printed before the next step runs.
The command ends after --count events, after --timeout seconds, at Ctrl-C,
or, with a timeline and neither option, when the timeline is done.

Exit status: 0, 1 a timeline step failed or no reader can be watched,
2 usage error (bad timeline, unknown profile or card).
"""

import json
import sys
import time

from ccidkit.core import pcsc
from ccidkit.core.errors import CcidkitError
from ccidkit.core.hexutil import to_hex
from ccidkit.core.host import reader_options as ro

POLL_S = 0.1
MAX_SETTLE_ROUNDS = 16      # looks after a timeline step until nothing more changes
STEPS = ("insert", "remove", "unplug", "plug", "add", "wait")


class TimelineError(CcidkitError):
    """A timeline that cannot be read (BAD_STEP) or a step that failed (STEP_FAILED)."""


def register(sub):
    p = sub.add_parser("monitor", help="print reader and card events as they happen",
                       description="Watch readers and cards (pcsc_scan-like); with emulated "
                                   "readers a timeline of insertions, removals and unplugs "
                                   "can drive the events.")
    ro.add_reader_arguments(p)
    src = p.add_mutually_exclusive_group()
    src.add_argument("--timeline", metavar="FILE", help="timeline file (emulated readers)")
    src.add_argument("--script", metavar="STEPS", help="timeline steps, ';'-separated")
    p.add_argument("--count", type=int, default=None, metavar="N",
                   help="stop after N events")
    p.add_argument("--timeout", type=float, default=None, metavar="S",
                   help="stop after S seconds")
    p.add_argument("--json", action="store_true", help="one JSON object per event")
    p.set_defaults(func=run)


# ---------------------------------------------------------------- the timeline

def _target(text, with_slot):
    parts = text.split(":")
    if len(parts) > (2 if with_slot else 1):
        raise TimelineError("%r: expected R%s" % (text, "[:S]" if with_slot else ""), None,
                            "BAD_STEP")
    try:
        nums = [int(x) for x in parts]
    except ValueError:
        raise TimelineError("%r: reader and slot are numbers" % text, None, "BAD_STEP")
    if min(nums) < 0:
        raise TimelineError("%r: negative number" % text, None, "BAD_STEP")
    return nums[0], (nums[1] if len(nums) > 1 else 0)


def parse_timeline(text):
    """[(step, args)] from timeline text; TimelineError (BAD_STEP) when unreadable."""
    steps = []
    for raw_line in text.splitlines():
        line = raw_line.split("#", 1)[0]
        for item in line.split(";"):
            words = item.split()
            if not words:
                continue
            op = words[0].lower()
            rest = words[1:]
            if op == "insert" and 1 <= len(rest) <= 2:
                r, s = _target(rest[0], True)
                steps.append((op, (r, s, rest[1] if len(rest) > 1 else "mini")))
            elif op == "remove" and len(rest) == 1:
                steps.append((op, _target(rest[0], True)))
            elif op in ("unplug", "plug") and len(rest) == 1:
                steps.append((op, (_target(rest[0], False)[0],)))
            elif op == "add" and len(rest) == 1:
                steps.append((op, (rest[0],)))
            elif op == "wait" and len(rest) == 1:
                try:
                    ms = int(rest[0])
                except ValueError:
                    ms = -1
                if not 0 <= ms <= 3600000:
                    raise TimelineError("wait %r: milliseconds, 0..3600000" % rest[0], None,
                                        "BAD_STEP")
                steps.append((op, (ms,)))
            else:
                raise TimelineError("cannot read step %r (steps: %s)" % (item.strip(),
                                                                          ", ".join(STEPS)),
                                    None, "BAD_STEP")
    return steps


def apply_step(mgr, step):
    """Carry out one timeline step on the emulated readers of ``mgr``."""
    from ccidkit.emu.reader import EmulatedReader
    op, a = step
    readers = mgr.emulated
    if op == "wait":
        time.sleep(a[0] / 1000.0)
        return
    if op == "add":
        if a[0] not in ro.profile_ids():
            raise TimelineError("add %s: unknown reader profile" % a[0], None, "STEP_FAILED")
        try:
            r = EmulatedReader(a[0])
        except CcidkitError as e:
            raise TimelineError("add %s: %s" % (a[0], e.message), None, "STEP_FAILED")
        used = [x.port_path for x in readers]
        port = len(readers) + 1
        while (port,) in used:
            port += 1
        r.port_path = (port,)
        readers.append(r)
        mgr.backend.add(r)
        return
    if a[0] >= len(readers):
        raise TimelineError("%s: no emulated reader %d (0..%d)" % (op, a[0], len(readers) - 1),
                            None, "STEP_FAILED")
    r = readers[a[0]]
    try:
        if op == "insert":
            card = ro.make_card(a[2])
            if card is None:
                raise TimelineError("insert: %r is no card" % a[2], None, "STEP_FAILED")
            r.insert_card(a[1], card)
        elif op == "remove":
            r.remove_card(a[1])
        elif op == "unplug":
            if r in mgr.backend.readers:
                mgr.backend.remove(r)
        elif op == "plug":
            if r not in mgr.backend.readers:
                mgr.backend.add(r)
    except ro.ReaderOptionsError as e:
        raise TimelineError("%s: %s" % (op, e.message), None, "STEP_FAILED")
    except CcidkitError as e:
        if isinstance(e, TimelineError):
            raise
        raise TimelineError("%s %s: %s" % (op, ":".join([str(x) for x in a[:2]]), e.message),
                            None, "STEP_FAILED")


# ---------------------------------------------------------------- the watcher

class Watcher:
    """Turns SCardGetStatusChange answers into reader and card events."""

    def __init__(self, mgr):
        self.mgr = mgr
        self.ctx = pcsc.SCardEstablishContext(pcsc.SCARD_SCOPE_USER, mgr)
        self.pnp = 0
        self.known = {}          # name -> dwEventState (without CHANGED)
        self.order = []          # names in the order they appeared

    def close(self):
        pcsc.SCardReleaseContext(self.ctx)

    def _names(self):
        try:
            return pcsc.SCardListReaders(self.ctx)
        except pcsc.PCSCError as e:
            if e.code == pcsc.SCARD_E_NO_READERS_AVAILABLE:
                return []
            raise

    def look(self):
        """The events since the last look: [(kind, name, atr or None)]."""
        events = []
        names = self._names()
        for n in [x for x in self.order if x not in names]:
            events.append(("reader removed", n, None))
            self.order.remove(n)
            del self.known[n]
        for n in names:
            if n not in self.known:
                events.append(("reader added", n, None))
                self.order.append(n)
                self.known[n] = pcsc.SCARD_STATE_UNAWARE
        if not self.order:
            return events
        rs = [(pcsc.PNP_NOTIFICATION, self.pnp)] + [(n, self.known[n]) for n in self.order]
        try:
            out = pcsc.SCardGetStatusChange(self.ctx, 0, rs)
        except pcsc.PCSCError as e:
            if e.code == pcsc.SCARD_E_TIMEOUT:
                return events
            raise
        for name, ev, atr in out:
            ev &= ~pcsc.SCARD_STATE_CHANGED
            if name == pcsc.PNP_NOTIFICATION:
                self.pnp = ev
                continue
            prev = self.known.get(name)
            if prev is None:
                continue
            self.known[name] = ev
            events.extend(self._card_events(name, prev, ev, atr))
        return events

    def _card_events(self, name, prev, ev, atr):
        if ev & (pcsc.SCARD_STATE_UNKNOWN | pcsc.SCARD_STATE_UNAVAILABLE):
            return []
        was = bool(prev & pcsc.SCARD_STATE_PRESENT)
        now = bool(ev & pcsc.SCARD_STATE_PRESENT)
        count = ((ev >> 16) - (prev >> 16)) & 0xFFFF
        out = []
        if prev == pcsc.SCARD_STATE_UNAWARE:
            if now:
                out.append(("card inserted", name, bytes(atr) or None))
            return out
        if was and (not now or count >= 2):
            out.append(("card removed", name, None))
            count -= 1
        if now and (not was or count >= 1):
            out.append(("card inserted", name, bytes(atr) or None))
        elif not now and not was and count >= 2:
            out.append(("card inserted", name, None))
            out.append(("card removed", name, None))
        return out


def format_event(event, as_json=False):
    kind, name, atr = event
    if as_json:
        return json.dumps({"event": kind, "reader": name,
                           "atr": to_hex(atr) if atr else None})
    if kind == "card inserted":
        return "%s: %s ATR: %s" % (kind, name, to_hex(atr) if atr else "(mute)")
    return "%s: %s" % (kind, name)


class _Run:
    def __init__(self, args):
        self.args = args
        self.printed = 0
        self.start = time.monotonic()

    def done(self):
        a = self.args
        if a.count is not None and self.printed >= a.count:
            return True
        return a.timeout is not None and time.monotonic() - self.start >= a.timeout

    def emit(self, events):
        for e in events:
            if self.done():
                return
            print(format_event(e, self.args.json))
            sys.stdout.flush()
            self.printed += 1


def _timeline_text(args):
    if args.script is not None:
        return args.script
    if args.timeline is not None:
        with open(args.timeline, encoding="utf-8") as f:
            return f.read()
    return None


def run(args):
    try:
        text = _timeline_text(args)
    except OSError as e:
        sys.stderr.write("ccidkit monitor: cannot read the timeline: %s\n" % e)
        return 2
    steps = []
    try:
        if text is not None:
            if not args.emulated:
                raise TimelineError("a timeline drives emulated readers: add --emulated PROFILE",
                                    None, "BAD_STEP")
            steps = parse_timeline(text)
        mgr = ro.open_manager(args)
    except (TimelineError, ro.ReaderOptionsError) as e:
        sys.stderr.write("ccidkit monitor: %s\n" % e.message)
        return 2
    if not args.emulated and not ro.reader_names(mgr):
        sys.stderr.write("ccidkit monitor: %s; waiting for one\n" % ro.no_readers_error(mgr).message)
    w = Watcher(mgr)
    r = _Run(args)
    try:
        r.emit(w.look())
        for step in steps:
            if r.done():
                return 0
            try:
                apply_step(mgr, step)
            except TimelineError as e:
                sys.stderr.write("ccidkit monitor: %s\n" % e.message)
                return 1
            for _ in range(MAX_SETTLE_ROUNDS):
                events = w.look()
                if not events:
                    break
                r.emit(events)
        if text is not None and args.count is None and args.timeout is None:
            return 0
        while not r.done():
            events = w.look()
            r.emit(events)
            if not events:
                time.sleep(POLL_S)
    except pcsc.PCSCError as e:
        sys.stderr.write("ccidkit monitor: %s (%s)\n" % (e.message, e.name))
        return 1
    finally:
        w.close()
    return 0
