"""Readers and cards for a VM: the ``--reader`` / ``--card`` / ``--events`` options.

    ccidkit uefi run --app usb-probe --reader emulated:gemalto-pctwin --card 0:usim
    ccidkit uefi run --app usb-probe --reader qemu-ccid --card auth \\
        --events "8s remove 0; 10s insert 0:mini; 12s unplug"

``--reader`` (repeatable; each reader takes root port i+1 of the VM's xHCI
controller, i its position from 0, so the guest's device paths stay put):

    qemu-ccid         QEMU's own usb-ccid with a ccid-card-passthru card served
                      by ccidkit.emu.vscard (one slot)
    emulated:PROFILE  an emulated reader of that profile (ccidkit.emu.profiles)
                      reached through usb-redir (ccidkit.emu.usbredir)
    host:VID:PID      a real reader passed through (``-device usb-host``);
                      hexadecimal ids, e.g. host:08e6:3437

``--card [SLOT:]CARD`` (repeatable, later options win): the card in slot SLOT
(every slot without it) of every qemu-ccid and emulated reader. CARD is a
name of the registry (ccidkit.emu.cards: mini, usim, esim, auth), ``none``
for an empty slot, or ``pcsc:NAME``: the card in the host's PC/SC reader
whose name contains NAME (or reader number NAME), reached through pyscard.
Without ``--card`` every slot holds a MiniCard.

``--events`` a timeline, steps separated by ``;``: ``TIME OP [ARG] [@R]``,
TIME in seconds from the VM's start, i.e. QEMU's first connection to a
reader's server (``2``, ``2s``, ``1.5s``, ``500ms``), R the reader (default 0):

    insert [SLOT:]CARD   a card enters the slot (default slot 0)
    remove [SLOT]        the card leaves the slot
    unplug               the reader leaves the bus
    plug                 the reader comes back

Emulated readers do all four through their usbredir server; qemu-ccid
readers insert and remove through VSCard, and plug and unplug, like host
readers, through QMP (device_del / device_add), so only where the caller
hands the timeline a QMP connection.
"""

import re
import threading
import time

from ccidkit.core.errors import CcidkitError

# qemu-xhci's USB 2 root ports (full-speed devices need one of them)
MAX_READERS = 4
MAX_EVENT_TIME_S = 3600.0
# How long a timeline waits for QEMU to connect (the VM lock may be held that long).
CONNECT_WAIT_S = 1800.0
EMPTY_CARD_NAMES = ("none", "empty")


class VmReadersError(CcidkitError):
    """A reader, card or event option that cannot be met. ``name``:
    BAD_READER_SPEC, UNKNOWN_PROFILE, TOO_MANY_READERS, BAD_CARD_SPEC,
    UNKNOWN_CARD, NO_PCSC, BAD_EVENT, EVENT_FAILED, NOT_STARTED."""


# -- option parsing ----------------------------------------------------------------

class ReaderSpec:
    """One ``--reader``: ``kind`` qemu-ccid, emulated or host; ``profile``
    (emulated), ``vid`` / ``pid`` (host)."""

    def __init__(self, kind, profile=None, vid=None, pid=None):
        self.kind = kind
        self.profile = profile
        self.vid = vid
        self.pid = pid

    def __eq__(self, other):
        return isinstance(other, ReaderSpec) and vars(self) == vars(other)

    def __repr__(self):
        return "ReaderSpec(%r, profile=%r, vid=%r, pid=%r)" % (self.kind, self.profile,
                                                                self.vid, self.pid)


def parse_reader_spec(text):
    text = text.strip()
    if text == "qemu-ccid":
        return ReaderSpec("qemu-ccid")
    kind, _, rest = text.partition(":")
    if kind == "emulated":
        from ccidkit.emu.profiles import PROFILES, bank_of
        if rest not in PROFILES:
            raise VmReadersError("--reader %s: unknown profile %r (known: %s)" % (
                text, rest, ", ".join(sorted(PROFILES))), None, "UNKNOWN_PROFILE")
        if bank_of(rest) is not None:
            raise VmReadersError("--reader %s: a bank of readers; give its member %s "
                                 "instead" % (text, bank_of(rest)["member"]), None,
                                 "UNKNOWN_PROFILE")
        return ReaderSpec("emulated", profile=rest)
    if kind == "host":
        m = re.match(r"^([0-9A-Fa-f]{1,4}):([0-9A-Fa-f]{1,4})$", rest)
        if not m:
            raise VmReadersError("--reader %s: host:VID:PID with hexadecimal ids" % text,
                                 None, "BAD_READER_SPEC")
        return ReaderSpec("host", vid=int(m.group(1), 16), pid=int(m.group(2), 16))
    raise VmReadersError("--reader %r: qemu-ccid, emulated:PROFILE or host:VID:PID" % text,
                         None, "BAD_READER_SPEC")


def parse_card_spec(text):
    """``"usim"`` -> (None, "usim"); ``"2:mini"`` -> (2, "mini");
    ``"pcsc:Foo"`` -> (None, "pcsc:Foo"); ``"1:pcsc:Foo"`` -> (1, "pcsc:Foo")."""
    head, sep, rest = text.partition(":")
    slot = None
    name = text
    if sep and head.strip().isdigit():
        slot = int(head)
        name = rest
    elif sep and head != "pcsc":
        raise VmReadersError("--card %r: SLOT must be a number" % text, None, "BAD_CARD_SPEC")
    name = name.strip()
    if not name or name == "pcsc:" or name == "pcsc":
        raise VmReadersError("--card %r: no card name" % text, None, "BAD_CARD_SPEC")
    return slot, name


def make_card(name):
    """A new card for ``name`` (see the module documentation), None for none/empty."""
    if name in EMPTY_CARD_NAMES:
        return None
    if name.startswith("pcsc:"):
        return PcscCard(name[5:])
    from ccidkit.emu.cards import make_card as registry
    from ccidkit.emu.cardos.errors import CardOSError
    try:
        return registry(name)
    except CardOSError as e:
        raise VmReadersError("card %r: %s" % (name, e.message), None, "UNKNOWN_CARD")


def check_card_name(name):
    """Refuse an unknown registry name before anything starts (pcsc: is checked
    when the card is made, as it needs the host's readers)."""
    if name in EMPTY_CARD_NAMES or name.startswith("pcsc:"):
        return
    from ccidkit.emu.cards import card_names
    if name not in card_names():
        raise VmReadersError("unknown card %r (known: %s, none, pcsc:NAME)" % (
            name, ", ".join(card_names())), None, "UNKNOWN_CARD")


class Event:
    """One timeline step: at ``t`` seconds, ``op`` on reader ``reader``."""

    def __init__(self, t, op, reader=0, slot=0, card=None):
        self.t = t
        self.op = op
        self.reader = reader
        self.slot = slot
        self.card = card

    def __eq__(self, other):
        return isinstance(other, Event) and vars(self) == vars(other)

    def __repr__(self):
        return "Event(%r, %r, reader=%r, slot=%r, card=%r)" % (self.t, self.op, self.reader,
                                                               self.slot, self.card)

    def describe(self):
        if self.op == "insert":
            what = "insert %d:%s" % (self.slot, self.card)
        elif self.op == "remove":
            what = "remove %d" % self.slot
        else:
            what = self.op
        return "%gs %s @%d" % (self.t, what, self.reader)


_TIME_RE = re.compile(r"^(\d+(?:\.\d+)?)(ms|s)?$")


def _event_time(word):
    m = _TIME_RE.match(word)
    if not m:
        raise VmReadersError("event time %r: seconds (2, 2s, 1.5s) or 500ms" % word, None,
                             "BAD_EVENT")
    t = float(m.group(1)) / (1000.0 if m.group(2) == "ms" else 1.0)
    if t > MAX_EVENT_TIME_S:
        raise VmReadersError("event time %r beyond %d s" % (word, MAX_EVENT_TIME_S), None,
                             "BAD_EVENT")
    return t


def parse_events(text):
    """[Event] from ``TIME OP [ARG] [@R]`` steps separated by ``;`` or lines,
    in time order (steps of equal time keep their order)."""
    events = []
    for raw in re.split(r"[;\n]", text or ""):
        words = raw.split("#", 1)[0].split()
        if not words:
            continue
        reader = 0
        if len(words) > 2 and words[-1].startswith("@"):
            r = words.pop()[1:]
            if not r.isdigit():
                raise VmReadersError("%r: @R is a reader number" % raw.strip(), None,
                                     "BAD_EVENT")
            reader = int(r)
        if len(words) < 2:
            raise VmReadersError("%r: TIME OP [ARG] [@R]" % raw.strip(), None, "BAD_EVENT")
        t = _event_time(words[0])
        op = words[1].lower()
        args = words[2:]
        if op == "insert" and len(args) == 1:
            slot, card = parse_card_spec(args[0])
            check_card_name(card)
            events.append(Event(t, op, reader, slot or 0, card))
        elif op == "remove" and len(args) <= 1:
            if args and not args[0].isdigit():
                raise VmReadersError("%r: remove [SLOT]" % raw.strip(), None, "BAD_EVENT")
            events.append(Event(t, op, reader, int(args[0]) if args else 0))
        elif op in ("unplug", "plug") and not args:
            events.append(Event(t, op, reader))
        else:
            raise VmReadersError("cannot read event %r (insert [SLOT:]CARD, remove [SLOT], "
                                 "unplug, plug)" % raw.strip(), None, "BAD_EVENT")
    return sorted(events, key=lambda e: e.t)


# -- a card on the host's PC/SC ------------------------------------------------------

# pcsc-lite's values (winscard.h / pcsclite.h)
SCARD_LEAVE_CARD = 0
SCARD_W_UNPOWERED_CARD = 0x80100067
SCARD_W_RESET_CARD = 0x80100068
CARD_RESET_CODES = (SCARD_W_UNPOWERED_CARD, SCARD_W_RESET_CARD,
                    SCARD_W_UNPOWERED_CARD - (1 << 32), SCARD_W_RESET_CARD - (1 << 32))


class PcscCard:
    """The card in a host PC/SC reader, through pyscard: ``atr`` and
    ``process_apdu`` forward to it. ``name`` picks the reader: its number in
    pyscard's list when all digits, else the first whose name contains it.
    ``readers`` stands in for smartcard.System.readers (tests)."""

    def __init__(self, name, readers=None):
        if readers is None:
            try:
                from smartcard.System import readers
            except ImportError as e:
                raise VmReadersError("pcsc:%s needs pyscard: %s" % (name, e), None, "NO_PCSC")
        self.name = name
        found = list(self._list(readers))
        chosen = None
        if name.isdigit() and int(name) < len(found):
            chosen = found[int(name)]
        else:
            for r in found:
                if name in str(r):
                    chosen = r
                    break
        if chosen is None:
            raise VmReadersError("pcsc:%s: no such reader (have: %s)" % (
                name, "; ".join(str(r) for r in found) or "none"), None, "NO_PCSC")
        self.reader_name = str(chosen)
        self.connected = False
        self.resets = 0
        self.connection = chosen.createConnection()
        self._connect()
        self.atr = bytes(self.connection.getATR())

    @staticmethod
    def _list(readers):
        try:
            return readers()
        except _pyscard_errors() as e:
            raise VmReadersError("PC/SC readers: %s" % e, None, "NO_PCSC")

    def _connect(self):
        try:
            # shared, and leaving the card powered when we let go: the host's
            # own applications keep their sessions (PC/SC SCARD_LEAVE_CARD)
            self.connection.connect(disposition=SCARD_LEAVE_CARD)
        except _pyscard_errors() as e:
            raise VmReadersError("pcsc:%s: %s" % (self.name, e), None, "NO_PCSC")
        self.connected = True

    def process_apdu(self, apdu):
        """The host card's answer; VmReadersError NO_PCSC when it cannot be had
        (the VSCard server then answers 6F 00 for it).

        Another host application that lets go of the card with a reset or
        power-down (pyscard's default) leaves our handle answering
        SCARD_W_RESET_CARD / SCARD_W_UNPOWERED_CARD: as pcsc-lite asks, the
        handle is reconnected (without a further reset) and the command sent
        once more; ``resets`` counts it (the card's state, a verified PIN
        for one, is gone as after any reset)."""
        cmd = list(bytes(apdu))
        for attempt in range(2):
            try:
                data, sw1, sw2 = self.connection.transmit(cmd)
                return bytes(data) + bytes((sw1, sw2))
            except _pyscard_errors() as e:
                if attempt or getattr(e, "hresult", None) not in CARD_RESET_CODES:
                    raise VmReadersError("pcsc:%s: %s" % (self.name, e), None, "NO_PCSC")
                self._reconnect(e)
        raise VmReadersError("pcsc:%s: no answer" % self.name, None, "NO_PCSC")

    def _reconnect(self, why):
        self.resets += 1
        try:
            self.connection.reconnect(disposition=SCARD_LEAVE_CARD)
        except _pyscard_errors() as e:
            raise VmReadersError("pcsc:%s: reconnect after %s: %s" % (self.name, why, e),
                                 None, "NO_PCSC")

    def power_off(self):
        self.connected = False
        try:
            self.connection.disconnect()
        except _pyscard_errors():
            pass                    # already gone: nothing to undo

    def power_on(self):
        """A session again after power_off (the VSCard server calls it at insertion)."""
        if not self.connected:
            self._connect()
            self.atr = bytes(self.connection.getATR())


def _pyscard_errors():
    """The exception classes pyscard raises (its own and PC/SC's)."""
    errors = [OSError]
    try:
        from smartcard.Exceptions import SmartcardException
        errors.append(SmartcardException)
        from smartcard.pcsc.PCSCExceptions import BaseSCardException
        errors.append(BaseSCardException)
    except ImportError:
        pass
    return tuple(errors)


# -- bridges: one per reader, each with qemu_options(i) --------------------------------

class QemuCcidBridge:
    """QEMU's usb-ccid + ccid-card-passthru, the card served by VSCardServer."""

    kind = "qemu-ccid"
    slots = 1

    def __init__(self, cards, unix=True, log=None):
        from ccidkit.emu.vscard import VSCardServer
        card = cards.get(0)
        self.server = VSCardServer(card, unix=unix, inserted=card is not None, log=log)
        self.index = 0

    def start(self):
        self.server.start()

    def stop(self):
        self.server.stop()

    def qemu_options(self, index=0):
        _started(self)
        self.index = index
        return self.server.qemu_options(index)

    def wait_connected(self, timeout=30.0):
        return self.server.wait_connected(timeout)

    def insert_card(self, slot, card, qmp=None):
        _one_slot(self, slot)
        self.server.card = card
        self.server.insert_card()

    def remove_card(self, slot, qmp=None):
        _one_slot(self, slot)
        self.server.remove_card()

    def unplug(self, qmp=None):
        _need_qmp(self, qmp)("device_del", id="ccid%d" % self.index)

    def plug(self, qmp=None):
        command = _need_qmp(self, qmp)
        i = self.index
        # device_del of the reader leaves the card's chardev in place (QEMU 7.2);
        # add it again only where it went
        labels = [c.get("label") for c in command("query-chardev") or ()]
        if "ccid%d" % i not in labels:
            command("chardev-add", id="ccid%d" % i, backend=_socket_backend(self.server))
        command("device_add", driver="usb-ccid", id="ccid%d" % i, bus="xhci.0")
        command("device_add", driver="ccid-card-passthru", id="card%d" % i,
                chardev="ccid%d" % i, bus="ccid%d.0" % i)


class EmulatedBridge:
    """An emulated reader (ccidkit.emu.reader) reached through usb-redir."""

    kind = "emulated"

    def __init__(self, profile, cards, unix=True, log=None):
        from ccidkit.emu.reader import EmulatedReader
        from ccidkit.emu.usbredir import UsbredirServer
        self.reader = EmulatedReader(profile, cards=cards)
        self.slots = len(self.reader.slots)
        self.server = UsbredirServer(self.reader, unix=unix, log=log)

    def start(self):
        self.server.start()

    def stop(self):
        self.server.stop()

    def qemu_options(self, index=0):
        _started(self)
        return self.server.qemu_options(index)

    def wait_connected(self, timeout=30.0):
        return self.server.wait_connected(timeout)

    def insert_card(self, slot, card, qmp=None):
        self.server.insert_card(slot, card)

    def remove_card(self, slot, qmp=None):
        self.server.remove_card(slot)

    def unplug(self, qmp=None):
        self.server.unplug()

    def plug(self, qmp=None):
        self.server.plug()


class HostBridge:
    """A real reader passed through with ``-device usb-host`` (nothing runs here)."""

    kind = "host"
    slots = 0

    def __init__(self, vid, pid):
        self.vid = vid
        self.pid = pid
        self.index = 0

    def start(self):
        pass

    def stop(self):
        pass

    def qemu_options(self, index=0):
        self.index = index
        return {"chardevs": [],
                "devices": ["usb-host,id=host%d,bus=xhci.0,port=%d,vendorid=0x%04x,"
                            "productid=0x%04x" % (index, index + 1, self.vid, self.pid)]}

    def wait_connected(self, timeout=30.0):
        return True

    def insert_card(self, slot, card, qmp=None):
        raise VmReadersError("a real reader's card is inserted by hand", None, "EVENT_FAILED")

    remove_card = insert_card

    def unplug(self, qmp=None):
        _need_qmp(self, qmp)("device_del", id="host%d" % self.index)

    def plug(self, qmp=None):
        _need_qmp(self, qmp)("device_add", driver="usb-host", id="host%d" % self.index,
                             bus="xhci.0", port=str(self.index + 1), vendorid=self.vid,
                             productid=self.pid)


def _started(bridge):
    # the socket paths (or ports) exist once the servers listen
    if bridge.server.path is None and bridge.server.port is None:
        raise VmReadersError("start the readers before asking for their QEMU options",
                             None, "NOT_STARTED")


def _one_slot(bridge, slot):
    if slot != 0:
        raise VmReadersError("%s has one slot (slot %d asked)" % (bridge.kind, slot), None,
                             "EVENT_FAILED")


def _need_qmp(bridge, qmp):
    if qmp is None:
        raise VmReadersError("plug/unplug of a %s reader goes through QMP, not given here"
                             % bridge.kind, None, "EVENT_FAILED")
    return qmp


def _socket_backend(server):
    if server.path:
        addr = {"type": "unix", "data": {"path": server.path}}
    else:
        addr = {"type": "inet", "data": {"host": "127.0.0.1", "port": str(server.port)}}
    return {"type": "socket", "data": {"addr": addr, "server": False, "reconnect": 1}}


# -- the set of readers of one VM ---------------------------------------------------------

class VmReaders:
    """The readers of one VM from option texts; ``qemu_options()`` for the
    command line, ``start()`` / ``stop()`` the servers, ``run_events()`` the
    timeline. ``bridges[i]`` is reader i (its ``reader`` / ``server``)."""

    def __init__(self, readers=(), cards=(), events=None, unix=True, log=None):
        specs = [r if isinstance(r, ReaderSpec) else parse_reader_spec(r) for r in readers]
        if len(specs) > MAX_READERS:
            raise VmReadersError("%d readers: the VM's xHCI has %d USB 2 ports" % (
                len(specs), MAX_READERS), None, "TOO_MANY_READERS")
        parsed = [parse_card_spec(c) for c in cards]
        for _slot, name in parsed:
            check_card_name(name)
        self.events = parse_events(events) if isinstance(events, str) else list(events or ())
        for e in self.events:
            if e.reader >= len(specs):
                raise VmReadersError("event %s: no reader %d" % (e.describe(), e.reader), None,
                                     "BAD_EVENT")
        self.log = log
        self.bridges = []
        self.event_log = []
        self.event_errors = []
        self._stop = threading.Event()
        self._thread = None
        for spec in specs:
            if spec.kind == "host":
                self.bridges.append(HostBridge(spec.vid, spec.pid))
                continue
            if spec.kind == "emulated":
                from ccidkit.emu.profiles import profile
                nslots = profile(spec.profile)["ccid"]["bMaxSlotIndex"] + 1
            else:
                nslots = 1
            slot_cards = {}
            for slot in range(nslots):
                name = "mini"
                for want, n in parsed:
                    if want is None or want == slot:
                        name = n
                card = make_card(name)
                if card is not None:
                    slot_cards[slot] = card
            if spec.kind == "emulated":
                self.bridges.append(EmulatedBridge(spec.profile, slot_cards, unix, log))
            else:
                self.bridges.append(QemuCcidBridge(slot_cards, unix, log))

    def qemu_options(self):
        """{"chardevs": [...], "devices": [...]} for all readers, reader i on port i+1
        (after start(): the servers' sockets are in them)."""
        out = {"chardevs": [], "devices": []}
        for i, b in enumerate(self.bridges):
            o = b.qemu_options(i)
            out["chardevs"] += o.get("chardevs", [])
            out["devices"] += o.get("devices", [])
        return out

    def start(self):
        for b in self.bridges:
            b.start()
        return self

    def stop(self):
        self._stop.set()
        if self._thread is not None:
            self._thread.join(10)
            self._thread = None
        for b in self.bridges:
            b.stop()

    def __enter__(self):
        return self.start()

    def __exit__(self, *exc):
        self.stop()

    def apply(self, event, qmp=None):
        """Carry out one event now; VmReadersError EVENT_FAILED when it cannot be."""
        b = self.bridges[event.reader]
        try:
            if event.op == "insert":
                card = make_card(event.card)
                if card is None:
                    b.remove_card(event.slot, qmp)
                else:
                    b.insert_card(event.slot, card, qmp)
            elif event.op == "remove":
                b.remove_card(event.slot, qmp)
            elif event.op == "unplug":
                b.unplug(qmp)
            elif event.op == "plug":
                b.plug(qmp)
        except VmReadersError as e:
            if e.name == "EVENT_FAILED":
                raise
            raise VmReadersError("%s: %s" % (event.describe(), e.message), None, "EVENT_FAILED")
        except CcidkitError as e:
            raise VmReadersError("%s: %s" % (event.describe(), e.message), None, "EVENT_FAILED")

    def _first_connection(self):
        """Wait until QEMU connects to one of our servers (it does so as it
        starts); False when stopped first or no reader has a server."""
        servers = [b.server for b in self.bridges if hasattr(b, "server")]
        if not servers:
            return False
        for _ in range(int(CONNECT_WAIT_S / 0.05)):
            if any(s.connections for s in servers):
                return True
            if self._stop.wait(0.05):
                return False
        return False

    def run_events(self, qmp=None, start=None):
        """Play the timeline in a thread. Times count from ``start``
        (time.monotonic()) when given, else from QEMU's first connection to
        one of the readers' servers (so a wait for the VM lock or a build does
        not eat the timeline), else from now. Each step adds a line to
        ``event_log``; a failed step also goes to ``event_errors`` and the
        timeline goes on."""

        def play():
            t0 = start
            if t0 is None:
                self._first_connection()
                if self._stop.is_set():
                    return
                t0 = time.monotonic()
            for e in self.events:
                left = t0 + e.t - time.monotonic()
                if left > 0 and self._stop.wait(left):
                    return
                try:
                    self.apply(e, qmp)
                    line = "%s: done" % e.describe()
                except VmReadersError as err:
                    self.event_errors.append(err)
                    line = "%s: failed: %s" % (e.describe(), err.message)
                self.event_log.append(line)
                if self.log:
                    self.log("event " + line)
        self._thread = threading.Thread(target=play, name="vm-events", daemon=True)
        self._thread.start()
        return self._thread

    def wait_events(self, timeout):
        """True when the timeline has played to its end within ``timeout``."""
        if self._thread is None:
            return not self.events
        self._thread.join(timeout)
        return not self._thread.is_alive()


# -- the command line -----------------------------------------------------------------------

def add_arguments(parser, run=None):
    """--reader / --card / --events on ``parser``; with ``run`` (a command's
    function taking args and reading args.device / args.chardev), the command
    then starts the readers around it."""
    parser.add_argument("--reader", action="append", default=[], metavar="SPEC",
                        help="a reader in the VM: qemu-ccid, emulated:PROFILE or host:VID:PID "
                             "(repeatable; reader i on xHCI port i+1)")
    parser.add_argument("--card", action="append", default=[], metavar="[SLOT:]CARD",
                        help="card in slot SLOT (every slot without it) of the qemu-ccid and "
                             "emulated readers: mini, usim, esim, auth, none or pcsc:NAME "
                             "(default mini)")
    parser.add_argument("--events", default=None, metavar="TIMELINE",
                        help="e.g. \"2s remove 0; 4s insert 0:auth; 6s unplug @0\" (seconds "
                             "from the VM's start)")
    if run is not None:
        parser.set_defaults(func=with_readers(run))


def with_readers(run):
    """``run`` wrapped: readers started before it, their options added to
    args.chardev / args.device, the timeline played, everything stopped after."""
    import functools
    import sys

    @functools.wraps(run)
    def wrapped(args):
        readers = getattr(args, "reader", [])
        cards = getattr(args, "card", [])
        events = getattr(args, "events", None)
        if not readers:
            if cards or events:
                sys.stderr.write("--card and --events need a --reader\n")
                return 2
            return run(args)
        try:
            rig = VmReaders(readers, cards, events)
        except VmReadersError as e:
            sys.stderr.write("%s\n" % e.message)
            return 2
        rig.start()
        try:
            opts = rig.qemu_options()
            args.chardev = list(getattr(args, "chardev", None) or []) + opts["chardevs"]
            args.device = list(getattr(args, "device", None) or []) + opts["devices"]
            rig.run_events()
            return run(args)
        finally:
            rig.stop()
            for line in rig.event_log:
                sys.stderr.write("event %s\n" % line)
    return wrapped
