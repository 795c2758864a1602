"""The USB CCID reader driver: readers, slots, power, PPS, transmit, events.

Portable (docs/subset.md): single-threaded, no clock. The transport's
timeouts are the only waits; a ``now_ms`` function may be injected for
deadlines. One :class:`Reader` drives one CCID interface through a
:class:`~ccidkit.core.transport.Transport`::

    reader = Reader(transport)
    reader.open()                                  # descriptor, slot states
    atr = reader.power_on(0)                       # class C, then B, then A
    proto = reader.set_protocol(0, PROTOCOL_T0 | PROTOCOL_T1)   # PPS / SetParameters
    rsp = reader.transmit(0, bytes.fromhex("00A4040000"))
    out = reader.transmit_many({0: apdu0, 1: apdu1})   # slots busy at once

Every exchange is a generator that yields CCID commands (:class:`Cmd`) and
receives their answers; :meth:`Reader.run` pipelines the generators of
several slots over one bulk pipe with distinct bSeq (CCID §5.2.2: up to
bMaxCCIDBusySlots slots busy at once, each one command at a time) and matches
every answer by bSlot and bSeq. Exchange levels (dwFeatures, CCID §5.1): TPDU
(the core's T=0 and T=1 engines run here), short APDU (extended APDUs go
through ENVELOPE), extended APDU (wLevelParameter chaining, §6.1.4).

Errors are :class:`ReaderError`, named with the IFD handler codes pcsc-lite
uses (IFD_ICC_NOT_PRESENT, IFD_RESPONSE_TIMEOUT, IFD_NO_SUCH_DEVICE...).
"""

from .errors import CcidkitError
from . import ccid
from .ccid import (
    CCIDError, SeqTracker, BulkInReassembler, T0Parameters, T1Parameters,
    PC_to_RDR_IccPowerOn, PC_to_RDR_IccPowerOff, PC_to_RDR_GetSlotStatus,
    PC_to_RDR_XfrBlock, PC_to_RDR_SetParameters, PC_to_RDR_GetParameters,
    PC_to_RDR_Escape, PC_to_RDR_Secure, PC_to_RDR_Abort,
    RDR_to_PC_SlotStatus, RDR_to_PC_DataBlock,
    ICC_STATUS_NOT_PRESENT, ICC_STATUS_PRESENT_ACTIVE,
    CMD_NOT_SUPPORTED, CMD_ABORTED, ICC_MUTE, XFR_PARITY_ERROR, XFR_OVERRUN,
    PIN_TIMEOUT, PIN_CANCELLED, CMD_SLOT_BUSY,
    NotifySlotChange, HardwareError,
)
from .ccid_descriptor import (
    find_ccid_interfaces, EXCHANGE_CHARACTER, EXCHANGE_TPDU, EXCHANGE_SHORT_APDU,
    EXCHANGE_EXTENDED_APDU,
)
from .transport import TransportError, TransportTimeout, TransportStall, ReaderRemoved
from .atr import parse_atr, ATRError
from .pps import ReaderCaps, SpeedPolicy, build_pps_request, parse_pps_response, PPSError
from .t1 import T1Reader, T1Error
from .t0 import T0Reader, T0Error
from .apdu import CommandAPDU, APDUError
from . import iso7816
from .quirks import quirks_for

try:
    from micropython import const
except ImportError:
    def const(x):
        return x


# pcsc-lite ifdhandler.h return codes (the IFD handler API libccid implements).
IFD_CODES = (
    ("IFD_ERROR_PTS_FAILURE", 605),
    ("IFD_ERROR_NOT_SUPPORTED", 606),
    ("IFD_PROTOCOL_NOT_SUPPORTED", 607),
    ("IFD_ERROR_POWER_ACTION", 608),
    ("IFD_COMMUNICATION_ERROR", 612),
    ("IFD_RESPONSE_TIMEOUT", 613),
    ("IFD_NOT_SUPPORTED", 614),
    ("IFD_ICC_NOT_PRESENT", 616),
    ("IFD_NO_SUCH_DEVICE", 617),
    ("IFD_ERROR_INSUFFICIENT_BUFFER", 618),
    ("CANCELLED", None),          # the exchange was aborted on request
    ("CARD_UNPOWERED", None),     # transmit to a slot that has no active card
)

# SCARD_PROTOCOL_* bits (pcsc-lite values), used for preferred protocols.
PROTOCOL_T0 = const(1)
PROTOCOL_T1 = const(2)
PROTOCOL_RAW = const(4)

# ISO/IEC 7816-3 §6.2.4 classes and the CCID bPowerSelect that applies them (§6.1.1).
POWER_SELECT = {"A": 1, "B": 2, "C": 3}
CLASS_OF_POWER_SELECT = {1: "A", 2: "B", 3: "C"}
VOLTAGE_BIT = {"A": 0x01, "B": 0x02, "C": 0x04}   # bVoltageSupport bits
CLASS_ORDER_LOW_FIRST = "CBA"   # §6.2.4: start with the lowest class (SIM banks need it)
CLASS_ORDER_5V_FIRST = "ABC"    # libccid's order

DEFAULT_TIMEOUT_MS = 3000            # one CCID answer (libccid's default read timeout)
DEFAULT_MAX_TIME_EXTENSIONS = 600    # bmCommandStatus = 2 answers accepted for one command
MAX_READ_PIECES = 70000              # partial bulk-IN reads for one message (1 byte each at worst)
MAX_INTERRUPTS_PER_POLL = 32          # interrupt-IN messages taken in one poll
MAX_BUSY_RETRIES = 64                # CMD_SLOT_BUSY answers taken for one command
DEFAULT_MAX_WAIT_MS = 600000         # one command, time extensions included (needs now_ms)
MAX_STALE = 64                       # unmatched answers dropped within one run
MAX_UNANSWERED = 8            # answers_in_order: XfrBlocks remembered as unanswered
READ_SIZE = 65554


class ReaderError(CcidkitError):
    """A driver failure. ``name`` is an IFD_* name (or CANCELLED, CARD_UNPOWERED),
    ``code`` its ifdhandler.h value; ``ccid`` the CCIDError behind it, if any;
    ``slot`` the slot concerned."""

    def __init__(self, message, name="IFD_COMMUNICATION_ERROR", ccid_error=None, slot=None):
        code = None
        for n, c in IFD_CODES:
            if n == name:
                code = c
        CcidkitError.__init__(self, message, code, name)
        self.ccid = ccid_error
        self.slot = slot


class Cmd:
    """A CCID command an exchange generator asks for: bMessageType, header
    bytes 7-9 (b7 b8 b9), abData, and how long to wait for the answer."""

    def __init__(self, bMessageType, data=b"", b7=0, b8=0, b9=0, timeout_ms=DEFAULT_TIMEOUT_MS):
        self.bMessageType = bMessageType
        self.data = data
        self.b7 = b7
        self.b8 = b8
        self.b9 = b9
        self.timeout_ms = timeout_ms

    def encode(self, bSlot, bSeq):
        n = len(self.data)
        buf = bytearray(10 + n)
        ccid.encode_header_into(buf, self.bMessageType, n, bSlot, bSeq, self.b7, self.b8, self.b9)
        buf[10:] = self.data
        return buf


class Slot:
    """What the driver knows about one slot."""

    def __init__(self, reader, index):
        self.reader = reader
        self.index = index
        self.present = False
        self.powered = False
        self.atr = None           # raw ATR bytes
        self.parsed_atr = None    # core.atr.ATR
        self.power_select = None  # bPowerSelect that activated the card
        self.protocol = None      # 0 / 1 once set_protocol ran
        self.fi = iso7816.FD
        self.di = iso7816.DD
        self.t1 = None            # T1Reader at TPDU level
        self.t0 = None            # T0Reader at TPDU level
        self.nad = 0              # default NAD of T=1 blocks (SCARD_CTL_CODE(3600))
        self.events = 0           # card insertions and removals seen
        self.abort_requested = False
        self.pps_tries = []       # (Fi, Di, outcome) of the last negotiation
        self.candidates = []      # the (Fi, Di) list of that negotiation
        self.speed_index = 0      # which candidate runs now
        self.speed_proven = True  # False until one exchange worked at a new speed

    @property
    def card_class(self):
        return CLASS_OF_POWER_SELECT.get(self.power_select)

    def _forget_card(self):
        self.powered = False
        self.atr = None
        self.parsed_atr = None
        self.protocol = None
        self.power_select = None
        self.t1 = None
        self.t0 = None
        self.fi = iso7816.FD
        self.di = iso7816.DD

    def __repr__(self):
        return "<Slot %d %s%s>" % (self.index, "present" if self.present else "empty",
                                   " powered" if self.powered else "")


class _Job:
    # the state every job starts with (class level: set on the job when it changes)
    cmd = None
    seq = None
    done = False
    result = None
    wtx = 0
    aborting = False
    timed_out = False
    busy_retries = 0
    busy_before = 0
    started = 0

    def __init__(self, slot, gen):
        self.slot = slot
        self.gen = gen


def _drive_steps(gen, exchange):
    """Drive a sans-I/O ``steps()`` generator (core.t0) from a driver generator.

    Each TPDU the engine yields goes through ``exchange(data)`` (a generator
    moving one CCID exchange); the engine's return value is the response.
    """
    try:
        out = next(gen)
        while True:
            ans = yield from exchange(out)
            out = gen.send(ans)
    except StopIteration as e:
        return e.value


def _noop_log(line):
    pass


def base_name(transport):
    """pcsc-lite's reader name without the numbers: ``Vendor Product [Interface] (serial)``."""
    vendor = transport.manufacturer or ""
    product = transport.product or ""
    if product and vendor and product.startswith(vendor):
        name = product
    elif vendor and product:
        name = vendor + " " + product
    else:
        name = product or vendor or ("USB CCID reader %04X:%04X" % (transport.vid, transport.pid))
    iface = transport.interface_name
    if iface and iface != product and iface != name:
        name += " [" + iface + "]"
    if transport.serial:
        name += " (" + transport.serial + ")"
    return name


def slot_name(base, reader_index, slot):
    """``base XX YY``: the reader number (lowest free one, as pcsc-lite allots it) and slot."""
    return "%s %02X %02X" % (base, reader_index & 0xFF, slot & 0xFF)


def lowest_free_index(used):
    """The lowest reader number not in ``used`` (pcsc-lite numbers readers this way)."""
    i = 0
    while i in used:
        i += 1
    return i


class Reader:
    """One CCID interface: its descriptor, its slots, and every exchange with it.

    ``quirks`` (dict) adds to the built-in table (core/quirks.py);
    ``class_order`` the classes to try at power-on ("CBA" lowest first, the
    default; "ABC" as libccid); ``log(line)`` receives one-line messages;
    ``now_ms()`` (optional) gives a millisecond clock for deadlines;
    ``on_time_extension(reader, slot, count)`` is called for every time
    extension answer (it may call ``request_abort``).
    """

    def __init__(self, transport, quirks=None, log=None, now_ms=None,
                 class_order=CLASS_ORDER_LOW_FIRST, timeout_ms=DEFAULT_TIMEOUT_MS,
                 max_time_extensions=DEFAULT_MAX_TIME_EXTENSIONS, speed_policy=None):
        self.transport = transport
        self.log = log or _noop_log
        self.now_ms = now_ms
        self.class_order = class_order
        self.timeout_ms = timeout_ms
        self.max_time_extensions = max_time_extensions
        self.max_wait_ms = DEFAULT_MAX_WAIT_MS
        self.on_time_extension = None
        self.gone = False
        self.name = base_name(transport)
        self.quirks = quirks_for(transport.vid, transport.pid, quirks)
        try:
            found = find_ccid_interfaces(transport.config_descriptor)
        except CCIDError as e:
            raise ReaderError("bad configuration descriptor: %s" % e, "IFD_NOT_SUPPORTED", e)
        desc = None
        for d in found:
            if d.bInterfaceNumber == transport.interface_number:
                desc = d
        if desc is None:
            if not found:
                raise ReaderError("no CCID interface", "IFD_NOT_SUPPORTED")
            desc = found[0]
        self.descriptor = desc
        self.interface_number = desc.bInterfaceNumber or 0
        ex = self.quirks.get("exchange")
        if ex == "TPDU":
            self.exchange = EXCHANGE_TPDU
        elif ex == "short APDU":
            self.exchange = EXCHANGE_SHORT_APDU
        elif ex == "extended APDU":
            self.exchange = EXCHANGE_EXTENDED_APDU
        else:
            self.exchange = desc.exchange_bits
        self.max_message_length = self.quirks.get("max_message_length",
                                                  desc.dwMaxCCIDMessageLength)
        if self.max_message_length < 10 + 5:
            self.max_message_length = 271
        busy = self.quirks.get("max_busy_slots", desc.bMaxCCIDBusySlots) or 1
        self.max_busy = busy if busy < desc.slots else desc.slots
        self.pin_support = self.quirks.get("pin_support", desc.bPINSupport)
        self.slots = [Slot(self, i) for i in range(desc.slots)]
        self.seq = SeqTracker(max_busy=self.max_busy)
        self.rx = BulkInReassembler(None, ccid.DEFAULT_MAX_MESSAGE_LENGTH)
        self._queue = []          # whole messages read but not consumed yet
        self.stale = 0            # unmatched answers dropped (cumulative)
        # quirk answers_in_order: bSeq of XfrBlocks the reader still holds
        # unanswered (the driver gave up on them), oldest first
        self.unanswered = []
        self.notified = False     # a NotifySlotChange came since open()
        self.data_rates = None    # GET_DATA_RATES answer
        self.speed_policy = speed_policy
        self.interrupt_ok = True
        # optional Transport.interrupt_pending(): False when an interrupt-IN read
        # would surely find nothing now, so a poll without waiting can skip it
        self._int_pending = getattr(transport, "interrupt_pending", None)

    # ------------------------------------------------------------------ identity

    @property
    def vid(self):
        return self.transport.vid

    @property
    def pid(self):
        return self.transport.pid

    @property
    def tpdu_level(self):
        return self.exchange == EXCHANGE_TPDU

    @property
    def level_name(self):
        for v, n in ((EXCHANGE_CHARACTER, "character"), (EXCHANGE_TPDU, "TPDU"),
                     (EXCHANGE_SHORT_APDU, "short APDU"),
                     (EXCHANGE_EXTENDED_APDU, "extended APDU")):
            if v == self.exchange:
                return n
        return "invalid"

    def slot(self, index):
        if not isinstance(index, int) or index < 0 or index >= len(self.slots):
            raise ReaderError("no slot %r (%d slots)" % (index, len(self.slots)),
                              "IFD_COMMUNICATION_ERROR")
        return self.slots[index]

    def info(self):
        """What the reader is and how the driver runs it (plain types, for CLIs and logs)."""
        t = self.transport
        d = self.descriptor
        slots = []
        for s in self.slots:
            slots.append({"slot": s.index, "present": s.present, "powered": s.powered,
                          "atr": s.atr, "protocol": s.protocol, "class": s.card_class,
                          "Fi": s.fi, "Di": s.di, "events": s.events})
        return {"name": self.name, "vid": t.vid, "pid": t.pid, "serial": t.serial,
                "bus_path": t.bus_path, "interface": self.interface_number,
                "exchange_level": self.level_name, "slots": slots,
                "max_busy_slots": self.max_busy, "dwFeatures": d.dwFeatures,
                "dwMaxCCIDMessageLength": self.max_message_length,
                "bPINSupport": self.pin_support, "quirks": sorted(self.quirks),
                "data_rates": self.data_rates, "gone": self.gone}

    # ------------------------------------------------------------------ life cycle

    def open(self):
        """Read the data rates (when listed) and every slot's state."""
        self._check_alive()
        desc = self.descriptor
        rates = self.quirks.get("data_rates")
        if rates is None and desc.bNumDataRatesSupported:
            req = ccid.get_data_rates_request(self.interface_number, desc.bNumDataRatesSupported)
            try:
                ans = self._control(req[0], req[1], req[2], req[3], req[4])
                rates = ccid.parse_dword_array(ans, desc.bNumDataRatesSupported)
            except TransportError as e:
                self.log("%s: GET_DATA_RATES failed (%s); using dwMaxDataRate" % (self.name, e.name))
            except CCIDError as e:
                self.log("%s: GET_DATA_RATES answer unusable (%s)" % (self.name, e))
        self.data_rates = rates
        for s in self.slots:
            self.get_slot_status(s.index)
        return self

    def close(self):
        try:
            self.transport.close()
        except TransportError:
            pass

    def _gone(self, why):
        if not self.gone:
            self.gone = True
            self.log("reader %s removed (%s): all I/O stopped" % (self.name, why))
            for s in self.slots:
                if s.present:
                    s.events += 1
                s.present = False
                s._forget_card()

    def _check_alive(self):
        if self.gone:
            raise ReaderError("reader %s is gone" % self.name, "IFD_NO_SUCH_DEVICE")

    def _control(self, bmRequestType, bRequest, wValue, wIndex, data_or_length):
        try:
            return self.transport.control(bmRequestType, bRequest, wValue, wIndex,
                                          data_or_length, self.timeout_ms)
        except ReaderRemoved as e:
            self._gone(str(e))
            raise ReaderError("reader %s is gone" % self.name, "IFD_NO_SUCH_DEVICE")

    # ------------------------------------------------------------------ low-level I/O

    def _send(self, data):
        try:
            self.transport.bulk_out(data, self.timeout_ms)
        except ReaderRemoved as e:
            self._gone(str(e))
            raise ReaderError("reader %s is gone" % self.name, "IFD_NO_SUCH_DEVICE")
        except TransportError as e:
            raise ReaderError("bulk-OUT failed: %s" % e, "IFD_COMMUNICATION_ERROR")

    def _bulk_in_address(self):
        """bEndpointAddress of the bulk-IN endpoint (USB 2.0 §9.6.6), from the
        interface's endpoint descriptors; 0x82 when they do not say."""
        for e in getattr(self.descriptor, "endpoints", None) or ():
            if e[0] & 0x80 and e[1] & 0x03 == 0x02:
                return e[0]
        return 0x82

    def _clear_halt(self, address, why):
        """CLEAR_FEATURE(ENDPOINT_HALT) on ``address`` (USB 2.0 §9.4.1: bmRequestType
        02h, bRequest 01h, wValue 0 = ENDPOINT_HALT, wIndex the endpoint)."""
        self.log("%s: endpoint 0x%02X stalled (%s); clearing the halt" % (
            self.name, address, why))
        try:
            self.transport.control(0x02, 0x01, 0x0000, address, 0, self.timeout_ms)
        except ReaderRemoved as e:
            self._gone(str(e))
            raise ReaderError("reader %s is gone" % self.name, "IFD_NO_SUCH_DEVICE")
        except TransportError as e:
            raise ReaderError("endpoint 0x%02X stalled and CLEAR_FEATURE failed: %s" % (
                address, e), "IFD_COMMUNICATION_ERROR")

    def _read_message(self, timeout_ms):
        """The next whole bulk-IN message (decoded); ReaderError on timeout or garbage."""
        if self._queue:
            return self._queue.pop(0)
        cleared = False
        for _ in range(MAX_READ_PIECES):
            try:
                data = self.transport.bulk_in(READ_SIZE, timeout_ms)
            except TransportTimeout:
                self.rx.reset()
                raise ReaderError("no answer from the reader within %d ms" % timeout_ms,
                                  "IFD_RESPONSE_TIMEOUT")
            except ReaderRemoved as e:
                self._gone(str(e))
                raise ReaderError("reader %s is gone" % self.name, "IFD_NO_SUCH_DEVICE")
            except TransportStall as e:
                # USB 2.0 §9.4.5 / §5.8.5: a halted bulk endpoint stays halted until
                # the host clears it; clear it and read again, once per message
                # (libccid does the same on LIBUSB_ERROR_PIPE)
                if cleared:
                    raise ReaderError("bulk-IN stalled again after CLEAR_FEATURE: %s" % e,
                                      "IFD_COMMUNICATION_ERROR")
                self._clear_halt(self._bulk_in_address(), e)
                cleared = True
                continue
            except TransportError as e:
                raise ReaderError("bulk-IN failed: %s" % e, "IFD_COMMUNICATION_ERROR")
            try:
                msgs = self.rx.feed(data)
            except CCIDError as e:
                raise ReaderError("malformed answer from the reader: %s" % e,
                                  "IFD_COMMUNICATION_ERROR", e)
            if msgs:
                for m in msgs[1:]:
                    self._queue.append(m)
                return msgs[0]
        raise ReaderError("no whole message after %d reads" % MAX_READ_PIECES,
                          "IFD_COMMUNICATION_ERROR")

    # ------------------------------------------------------------------ the scheduler

    def run(self, jobs):
        """Run exchange generators: ``jobs`` is a list of (slot index, generator).

        Returns their results in order: the generator's return value, or the
        ReaderError it ended with. Commands of different slots are pipelined
        up to ``max_busy`` at once (distinct bSeq, answers matched by bSlot
        and bSeq); each slot's generator runs one command at a time. A reader
        that answers CMD_SLOT_BUSY although its descriptor allowed the
        command gets it again later, and fewer slots at once from then on.
        """
        self._check_alive()
        todo = []
        for slot, gen in jobs:
            j = _Job(slot, gen)
            todo.append(j)
            self._advance(j, None)
        in_flight = {}
        try:
            if len(todo) == 1:
                self._run_single(todo, in_flight)
            else:
                self._schedule(todo, in_flight)
        except ReaderError as fatal:
            for key in sorted(in_flight):
                j = in_flight[key]
                if not j.aborting:
                    self.seq.forget(j.slot, j.seq)
            for j in todo:
                if not j.done:
                    self._finish(j, ReaderError(fatal.message, fatal.name, fatal.ccid, j.slot))
        return [j.result for j in todo]

    def _schedule(self, todo, in_flight):
        stale = 0
        guard = 0
        while True:
            guard += 1
            if guard > 10000000:
                raise ReaderError("scheduler did not converge")
            if self.gone:
                raise ReaderError("reader %s is gone" % self.name, "IFD_NO_SUCH_DEVICE")
            # issue what may go now
            for j in todo:
                if j.done or j.seq is not None or j.cmd is None:
                    continue
                if len(in_flight) >= self.max_busy:
                    break
                try:
                    j.seq = self.seq.issue(j.slot, j.cmd.bMessageType)
                except CCIDError as e:
                    if e.name == "CMD_SLOT_BUSY":
                        continue
                    raise ReaderError(str(e), "IFD_COMMUNICATION_ERROR", e)
                j.wtx = 0
                j.busy_before = len(in_flight)
                j.started = self.now_ms() if self.now_ms is not None else 0
                try:
                    self._send(j.cmd.encode(j.slot, j.seq))
                except ReaderError as e:
                    self.seq.forget(j.slot, j.seq)
                    j.seq = None
                    if e.name == "IFD_NO_SUCH_DEVICE":
                        raise
                    self._finish(j, e)
                    continue
                in_flight[(j.slot, j.seq)] = j
            if not in_flight:
                return
            # aborts asked for while waiting
            keys = sorted(in_flight) if len(in_flight) > 1 else list(in_flight)
            timeout = 0
            for key in keys:
                j = in_flight[key]
                if self.slots[j.slot].abort_requested and not j.aborting:
                    self._start_abort(j)
                t = j.cmd.timeout_ms
                if t > timeout:
                    timeout = t
            try:
                msg = self._read_message(timeout)
            except ReaderError as e:
                if e.name != "IFD_RESPONSE_TIMEOUT":
                    raise
                self._silent(e, in_flight)
                continue
            if self.unanswered:
                self._pair_by_order(msg, in_flight)
            key = (msg.bSlot, msg.bSeq)
            j = in_flight.get(key)
            if j is not None and j.aborting:
                # CCID §5.3.1: the PC_to_RDR_Abort carrying the same bSeq ends it
                # with RDR_to_PC_SlotStatus; the aborted command's own answer is dropped.
                if msg.bMessageType == RDR_to_PC_SlotStatus and not msg.time_extension:
                    del in_flight[key]
                    self.slots[j.slot].abort_requested = False
                    if j.timed_out:
                        err = ReaderError("slot %d: still busy after %d time extensions"
                                          % (j.slot, j.wtx), "IFD_RESPONSE_TIMEOUT",
                                          slot=j.slot)
                    else:
                        err = ReaderError("exchange on slot %d aborted" % j.slot,
                                          "CANCELLED", slot=j.slot)
                    self._finish(j, err)
                continue
            try:
                self.seq.match_response(msg)
            except CCIDError as e:
                stale += 1
                self.stale += 1
                self.log("%s: dropped an answer (%s)" % (self.name, e))
                if stale > MAX_STALE:
                    raise ReaderError("too many unmatched answers", "IFD_COMMUNICATION_ERROR", e)
                continue
            if j is None:
                continue
            cstat = (msg.bStatus >> 6) & 3       # bmCommandStatus (the answer is bulk-IN)
            if cstat == ccid.COMMAND_STATUS_FAILED and msg.bError == CMD_SLOT_BUSY and \
                    j.busy_retries < MAX_BUSY_RETRIES:
                # §5.2.2: the reader refused to run one more slot: run fewer at once
                del in_flight[key]
                j.seq = None
                j.busy_retries += 1
                # the reader had at most busy_before others when it refused
                n = j.busy_before
                if 0 < n < self.max_busy:
                    self.log("%s: CMD_SLOT_BUSY with %d slots busy; now at most %d"
                             % (self.name, j.busy_before + 1, n))
                    self.max_busy = n
                continue
            self._note_status(self.slots[j.slot], msg)
            if cstat == ccid.COMMAND_STATUS_TIME_EXTENSION:
                j.wtx += 1
                if self.on_time_extension is not None:
                    self.on_time_extension(self, j.slot, j.wtx)
                late = self.now_ms is not None and self.max_wait_ms and \
                    self.now_ms() - j.started > self.max_wait_ms
                if j.wtx > self.max_time_extensions or late:
                    self.log("%s: slot %d: %d time extensions, aborting" % (
                        self.name, j.slot, j.wtx))
                    j.timed_out = True
                    self._start_abort(j)
                continue
            del in_flight[key]
            j.seq = None
            self._advance(j, msg)

    def _silent(self, e, in_flight):
        """The reader itself went silent: tell it to drop what it still holds
        (CCID §5.3.1), without waiting, and fail those commands."""
        self.rx.reset()
        for key in sorted(in_flight):
            j = in_flight[key]
            if not j.aborting:
                self.seq.forget(j.slot, j.seq)
                self._abort_quietly(j.slot, j.seq)
                if (self.quirks.get("answers_in_order")
                        and j.cmd.bMessageType == PC_to_RDR_XfrBlock):
                    self.unanswered.append(j.seq)
                    if len(self.unanswered) > MAX_UNANSWERED:
                        self.unanswered.pop(0)
            self._finish(j, ReaderError(e.message, e.name, e.ccid, j.slot))
        for key in list(in_flight):
            del in_flight[key]

    def _run_single(self, todo, in_flight):
        """_schedule for one job, its usual course without the bookkeeping for
        several: one command out, its own answer back. Anything else (an abort
        asked for, a time extension, CMD_SLOT_BUSY, another bSeq or slot, the
        answers_in_order pairing) goes to _schedule with the state as it is,
        the answer put back first in the queue, so both take the same course."""
        j = todo[0]
        slot = j.slot
        s = self.slots[slot]
        for _ in range(10000000):
            if j.done:
                return
            if self.gone:
                raise ReaderError("reader %s is gone" % self.name, "IFD_NO_SUCH_DEVICE")
            cmd = j.cmd
            try:
                j.seq = self.seq.issue(slot, cmd.bMessageType)
            except CCIDError:
                return self._schedule(todo, in_flight)     # it meets the same refusal
            j.wtx = 0
            j.busy_before = 0
            j.started = self.now_ms() if self.now_ms is not None else 0
            try:
                self._send(cmd.encode(slot, j.seq))
            except ReaderError as e:
                self.seq.forget(slot, j.seq)
                j.seq = None
                if e.name == "IFD_NO_SUCH_DEVICE":
                    raise
                self._finish(j, e)
                return
            key = (slot, j.seq)
            in_flight[key] = j
            if s.abort_requested:
                return self._schedule(todo, in_flight)
            try:
                msg = self._read_message(cmd.timeout_ms)
            except ReaderError as e:
                if e.name != "IFD_RESPONSE_TIMEOUT":
                    raise
                self._silent(e, in_flight)
                return
            cstat = (msg.bStatus >> 6) & 3
            if self.unanswered or msg.bSeq != j.seq or msg.bSlot != slot or \
                    cstat == ccid.COMMAND_STATUS_TIME_EXTENSION or \
                    (cstat == ccid.COMMAND_STATUS_FAILED and msg.bError == CMD_SLOT_BUSY):
                self._queue.insert(0, msg)
                return self._schedule(todo, in_flight)
            try:
                self.seq.match_response(msg)
            except CCIDError:
                self._queue.insert(0, msg)
                return self._schedule(todo, in_flight)
            self._note_status(s, msg)
            del in_flight[key]
            j.seq = None
            self._advance(j, msg)
        raise ReaderError("scheduler did not converge")

    def _abort_quietly(self, slot, seq):
        if self.quirks.get("no_abort") or self.gone:
            return
        req = ccid.abort_request(self.interface_number, slot, seq)
        try:
            self._control(req[0], req[1], req[2], req[3], 0)
            self.transport.bulk_out(Cmd(PC_to_RDR_Abort).encode(slot, seq), self.timeout_ms)
        except (TransportError, ReaderError) as e:
            self.log("%s: abort of slot %d bSeq %d failed (%s)" % (self.name, slot, seq, e))

    def _advance(self, job, msg):
        try:
            job.cmd = job.gen.send(msg)
        except StopIteration as e:
            self._finish(job, e.value)
        except ReaderError as e:
            if e.slot is None:
                e.slot = job.slot
            self._finish(job, e)
        except CCIDError as e:
            self._finish(job, ReaderError(str(e), "IFD_COMMUNICATION_ERROR", e, job.slot))
        except (T1Error, T0Error, PPSError, ATRError, APDUError) as e:
            self._finish(job, ReaderError(str(e), "IFD_COMMUNICATION_ERROR", None, job.slot))

    def _finish(self, job, result):
        job.done = True
        job.cmd = None
        job.result = result

    def _start_abort(self, job):
        """CCID §5.3.1: the ABORT class request, then PC_to_RDR_Abort with the same bSlot/bSeq."""
        job.aborting = True
        self.seq.forget(job.slot, job.seq)
        if not self.quirks.get("no_abort"):
            req = ccid.abort_request(self.interface_number, job.slot, job.seq)
            try:
                self._control(req[0], req[1], req[2], req[3], 0)
            except TransportError as e:
                self.log("%s: ABORT request failed (%s)" % (self.name, e))
        self._send(Cmd(PC_to_RDR_Abort).encode(job.slot, job.seq))
        job.cmd = Cmd(PC_to_RDR_Abort, timeout_ms=self.timeout_ms)

    def request_abort(self, slot):
        """Ask the exchange in flight on ``slot`` to stop (checked between answers)."""
        self.slot(slot).abort_requested = True

    def run_one(self, slot, gen):
        res = self.run([(slot, gen)])[0]
        if isinstance(res, ReaderError):
            raise res
        return res

    # ------------------------------------------------------------------ slot state

    def _note_status(self, s, msg):
        icc = msg.bStatus & 0x03
        if icc == ICC_STATUS_NOT_PRESENT:
            self._set_present(s, False)
        else:
            self._set_present(s, True)
            if icc != ICC_STATUS_PRESENT_ACTIVE and msg.bMessageType != RDR_to_PC_DataBlock:
                if s.powered and msg.bMessageType == RDR_to_PC_SlotStatus:
                    s._forget_card()

    def _pair_by_order(self, msg, in_flight):
        """Quirk answers_in_order (QEMU's usb-ccid): the reader answers XfrBlocks
        from a queue in the order they came, each answer carrying the bSeq at
        the head of that queue. Once an XfrBlock went unanswered (the card was
        silent and the driver gave up), every later answer carries the bSeq of
        the XfrBlock before it. With one command in flight the pairing is
        still certain: the answer that carries the oldest unanswered bSeq is
        the answer to the XfrBlock in flight, which now becomes the oldest
        one the reader holds (CCID §5.2's bSeq rule, as this reader breaks it)."""
        if msg.bMessageType != RDR_to_PC_DataBlock or msg.bSeq != self.unanswered[0]:
            return
        if len(in_flight) != 1:
            return
        for key in in_flight:
            j = in_flight[key]
        if j.aborting or j.cmd.bMessageType != PC_to_RDR_XfrBlock or j.slot != msg.bSlot:
            return
        self.unanswered.pop(0)
        self.unanswered.append(j.seq)
        self.log("%s: answer with bSeq %d paired by order with the XfrBlock of bSeq %d"
                 % (self.name, msg.bSeq, j.seq))
        msg.bSeq = j.seq

    def _set_present(self, s, present, changed=False):
        if present != s.present:
            if not present:
                # the reader drops what it held for a card that left (QEMU's
                # usb-ccid empties its answer queue at card removal)
                self.unanswered = []
            s.events += 1
            s.present = present
            if not present:
                s._forget_card()
            self.log("%s: slot %d: card %s" % (self.name, s.index,
                                                "inserted" if present else "removed"))
        elif changed and present:
            # a card swapped between two looks: removed and inserted again
            s.events += 2
            s._forget_card()

    def get_slot_status(self, slot):
        """PC_to_RDR_GetSlotStatus: (present, active) of the slot; updates its state."""
        s = self.slot(slot)

        def gen():
            msg = yield Cmd(PC_to_RDR_GetSlotStatus, timeout_ms=self.timeout_ms)
            return msg

        msg = self.run_one(slot, gen())
        icc = msg.bStatus & 0x03
        return icc != ICC_STATUS_NOT_PRESENT, icc == ICC_STATUS_PRESENT_ACTIVE

    def poll_events(self, timeout_ms=0):
        """Card events: NotifySlotChange from interrupt-IN, or GetSlotStatus polling.

        Returns the sorted list of slots whose card state changed. A reader
        that went away reports every slot that had a card.
        """
        if self.gone:
            return []
        if not timeout_ms and self.interrupt_ok and self._int_pending is not None and \
                self.transport.has_interrupt and not self._int_pending():
            # nothing queued on interrupt-IN: the read would time out at once
            return []
        before = [s.events for s in self.slots]
        data = None
        if self.interrupt_ok and self.transport.has_interrupt:
            n = self.descriptor.notify_slot_change_length
            wait = timeout_ms
            # drain what is queued (bounded): several changes may wait there
            for _ in range(MAX_INTERRUPTS_PER_POLL):
                data = None
                try:
                    data = self.transport.interrupt_in(n if n > 4 else 4, wait)
                except TransportTimeout:
                    data = None
                except ReaderRemoved as e:
                    self._gone(str(e))
                except TransportStall:
                    self.interrupt_ok = False
                    self.log("%s: interrupt-IN stalled; polling slot status" % self.name)
                except TransportError as e:
                    self.log("%s: interrupt-IN failed (%s)" % (self.name, e))
                if not data:
                    break
                self._on_interrupt(data)
                wait = 0
        else:
            for s in self.slots:
                if self.gone:
                    break
                if not self.seq.is_busy(s.index):
                    try:
                        self.get_slot_status(s.index)
                    except ReaderError as e:
                        self.log("%s: slot %d status: %s" % (self.name, s.index, e))
        return [i for i in range(len(self.slots)) if self.slots[i].events != before[i]]

    def _on_interrupt(self, data):
        try:
            m = ccid.decode_interrupt(data, len(self.slots))
        except CCIDError as e:
            self.log("%s: bad interrupt message %s" % (self.name, e))
            return
        if isinstance(m, NotifySlotChange):
            # CCID §6.3.1: "changed" is relative to the reader's previous
            # NotifySlotChange. Quirk stale_first_notify: the reader sends the
            # insertion of a card it had before the host looked at the host's
            # first interrupt poll, which may come after the card was powered;
            # that first "changed" tells of no swap.
            first = not self.notified and self.quirks.get("stale_first_notify")
            self.notified = True
            for i in range(len(self.slots)):
                self._set_present(self.slots[i], m.present(i), m.changed(i) and not first)
        elif isinstance(m, HardwareError):
            self.log("%s: slot %d: hardware error 0x%02X" % (self.name, m.bSlot,
                                                              m.bHardwareErrorCode))
            if m.bSlot < len(self.slots):
                self.slots[m.bSlot]._forget_card()

    # ------------------------------------------------------------------ power

    def _fail_from(self, msg, what, s):
        """ReaderError for a failed answer; notes a card removal."""
        e = None
        try:
            ccid.check_response(msg)
        except CCIDError as ce:
            e = ce
        if (msg.bStatus & 3) == ICC_STATUS_NOT_PRESENT:
            self._set_present(s, False)
            return ReaderError("%s: no card in slot %d" % (what, s.index),
                               "IFD_ICC_NOT_PRESENT", e, s.index)
        if msg.bError == CMD_ABORTED:
            return ReaderError("%s aborted" % what, "CANCELLED", e, s.index)
        if msg.bError == ICC_MUTE:
            return ReaderError("%s: card mute" % what, "IFD_RESPONSE_TIMEOUT", e, s.index)
        if msg.bError == CMD_NOT_SUPPORTED:
            return ReaderError("%s: not supported by the reader" % what, "IFD_NOT_SUPPORTED",
                               e, s.index)
        return ReaderError("%s: %s" % (what, e), "IFD_COMMUNICATION_ERROR", e, s.index)

    def power_selects(self):
        """bPowerSelect values to try, in order: 0 alone when the reader picks the
        voltage itself (dwFeatures auto voltage), else the supported classes in
        ``class_order`` (ISO/IEC 7816-3 §6.2.4)."""
        desc = self.descriptor
        if desc.auto_voltage:
            return [0]
        out = []
        for c in self.class_order:
            if desc.bVoltageSupport & VOLTAGE_BIT[c]:
                out.append(POWER_SELECT[c])
        return out or [0]

    def _power_on_gen(self, s, selects):
        last = None
        tried = 0
        for v in selects:
            tried += 1
            msg = yield Cmd(PC_to_RDR_IccPowerOn, b7=v, timeout_ms=self.timeout_ms)
            if msg.failed:
                if (msg.bStatus & 3) == ICC_STATUS_NOT_PRESENT:
                    raise self._fail_from(msg, "IccPowerOn", s)
                last = self._fail_from(msg, "IccPowerOn", s)
                # §6.2.4: deactivate before trying the next class
                yield Cmd(PC_to_RDR_IccPowerOff, timeout_ms=self.timeout_ms)
                continue
            raw = bytes(msg.abData)
            try:
                atr = parse_atr(raw)
            except ATRError as e:
                last = ReaderError("ATR %s: %s" % (raw, e), "IFD_ERROR_POWER_ACTION",
                                   slot=s.index)
                yield Cmd(PC_to_RDR_IccPowerOff, timeout_ms=self.timeout_ms)
                continue
            cls = CLASS_OF_POWER_SELECT.get(v)
            if cls is not None and atr.classes and cls not in atr.classes \
                    and tried < len(selects):
                # §6.2.4: the card's T=15 TA lists the classes it takes; try the next one
                self.log("%s: slot %d: card refuses class %s (supports %s)" % (
                    self.name, s.index, cls, "".join(atr.classes)))
                yield Cmd(PC_to_RDR_IccPowerOff, timeout_ms=self.timeout_ms)
                continue
            s.powered = True
            s.present = True
            s.atr = raw
            s.parsed_atr = atr
            s.power_select = v
            s.protocol = None
            s.t0 = None
            s.t1 = None
            s.fi = iso7816.FD
            s.di = iso7816.DD
            return raw
        if last is None:
            last = ReaderError("no class to try", "IFD_ERROR_POWER_ACTION", slot=s.index)
        if last.name == "IFD_COMMUNICATION_ERROR" or last.name == "IFD_RESPONSE_TIMEOUT":
            last = ReaderError("power-on failed in every class: %s" % last.message,
                               "IFD_ERROR_POWER_ACTION", last.ccid, s.index)
        raise last

    def power_on_job(self, slot, selects=None):
        """The power-on generator, for ``run`` beside other slots' exchanges."""
        return self._power_on_gen(self.slot(slot), selects or self.power_selects())

    def power_on(self, slot, selects=None):
        """Activate the card (IccPowerOn, class by class); returns the ATR."""
        s = self.slot(slot)
        return self.run_one(slot, self._power_on_gen(s, selects or self.power_selects()))

    def power_off(self, slot):
        s = self.slot(slot)

        def gen():
            msg = yield Cmd(PC_to_RDR_IccPowerOff, timeout_ms=self.timeout_ms)
            s._forget_card()
            return msg

        self.run_one(slot, gen())

    def reset(self, slot, warm=True):
        """Reset the card: CCID 1.1 has no warm-reset message, so both kinds are
        IccPowerOff then IccPowerOn at the class that worked; returns the ATR."""
        s = self.slot(slot)
        selects = [s.power_select] if s.power_select is not None else self.power_selects()

        def gen():
            yield Cmd(PC_to_RDR_IccPowerOff, timeout_ms=self.timeout_ms)
            s._forget_card()
            atr = yield from self._power_on_gen(s, selects)
            return atr

        return self.run_one(slot, gen())

    # ------------------------------------------------------------------ protocol and speed

    def reader_caps(self):
        desc = self.descriptor
        clock = (desc.dwDefaultClock or 4000) * 1000
        maxrate = desc.dwMaxDataRate or None
        return ReaderCaps(clock, maxrate, self.data_rates, desc.auto_pps, desc.dwMaximumClock)

    def policy(self):
        if self.speed_policy is not None:
            return self.speed_policy
        return SpeedPolicy(max_baud=self.quirks.get("max_baud"))

    def choose_protocol(self, atr, preferred):
        desc = self.descriptor
        offered = atr.protocols
        if atr.specific_mode is not None:
            offered = [atr.specific_mode["protocol"]]
        for p in offered:
            bit = PROTOCOL_T0 if p == 0 else (PROTOCOL_T1 if p == 1 else 0)
            if not bit or not (preferred & bit):
                continue
            if p == 0 and not desc.supports_t0:
                continue
            if p == 1 and not desc.supports_t1:
                continue
            return p
        raise ReaderError("card offers %s, asked for %s" % (
            ",".join(["T=%d" % p for p in offered]), _proto_names(preferred)),
            "IFD_PROTOCOL_NOT_SUPPORTED")

    def _parameters(self, atr, protocol, fi, di, nad=0):
        fcode = atr.fi_code if fi == atr.fi else iso7816.fi_index(fi)
        fd = ((fcode & 0x0F) << 4) | (iso7816.di_index(di) & 0x0F)
        inverse = 0x02 if atr.convention == "inverse" else 0
        if protocol == 0:
            return T0Parameters(fd, inverse, atr.n & 0xFF, (atr.wi or 10) & 0xFF, 0)
        crc = 1 if atr.edc == "CRC" else 0
        ifsc = atr.ifsc if atr.ifsc and atr.ifsc < 255 else 32
        return T1Parameters(fd, 0x10 | inverse | crc, atr.n & 0xFF,
                            ((atr.bwi or 4) << 4) | ((atr.cwi or 13) & 0x0F), 0, ifsc, nad)

    def _negotiate_gen(self, s, preferred, start=0):
        atr = s.parsed_atr
        desc = self.descriptor
        protocol = self.choose_protocol(atr, preferred)
        caps = self.reader_caps()
        if start:
            # a speed that negotiated but then failed its first exchange:
            # go on down the same list, from a fresh activation
            cands = s.candidates
            host_pps = not desc.auto_pps and self.exchange in (EXCHANGE_TPDU, EXCHANGE_CHARACTER)
            r = yield from self._try_speeds(s, protocol, cands, start, host_pps, caps)
            return r
        host_pps = not desc.auto_pps and self.exchange in (EXCHANGE_TPDU, EXCHANGE_CHARACTER)
        if desc.auto_pps_negotiation or atr.specific_mode is not None:
            # the reader negotiates on its own, or the card is in specific mode
            # (ISO/IEC 7816-3 §9.1: no PPS then): only the parameters are set
            host_pps = False
            if atr.specific_mode is not None and atr.specific_mode["implicit"]:
                cands = [(iso7816.FD, iso7816.DD)]
            else:
                cands = [(atr.fi or iso7816.FD, atr.di or iso7816.DD)]
        else:
            cands = self.policy().candidates(atr, caps)
        s.pps_tries = []
        s.candidates = cands
        r = yield from self._try_speeds(s, protocol, cands, 0, host_pps, caps)
        return r

    def _try_speeds(self, s, protocol, cands, start, host_pps, caps):
        desc = self.descriptor
        atr = s.parsed_atr
        last = None
        # the power-off below makes the slot forget its class: keep it here
        select = s.power_select
        for i in range(start, len(cands)):
            fi, di = cands[i]
            if i > 0:
                # §9.3: a failed PPS leaves the card in an unknown state: reset it
                yield Cmd(PC_to_RDR_IccPowerOff, timeout_ms=self.timeout_ms)
                yield from self._power_on_gen(
                    s, [select] if select is not None else self.power_selects())
                atr = s.parsed_atr
            ok = True
            if host_pps:
                req = None
                if (fi, di) != (iso7816.FD, iso7816.DD) or protocol != atr.protocols[0]:
                    if (fi, di) == (iso7816.FD, iso7816.DD):
                        req = build_pps_request(protocol)
                    else:
                        req = build_pps_request(protocol, fi, di)
                if req is not None:
                    msg = yield Cmd(PC_to_RDR_XfrBlock, req, timeout_ms=self.timeout_ms)
                    if msg.failed:
                        last = self._fail_from(msg, "PPS", s)
                        if last.name == "IFD_ICC_NOT_PRESENT":
                            raise last
                        ok = False
                    else:
                        try:
                            res = parse_pps_response(req, bytes(msg.abData))
                            fi, di = res.fi, res.di
                        except PPSError as e:
                            last = ReaderError("PPS refused: %s" % e, "IFD_ERROR_PTS_FAILURE",
                                               slot=s.index)
                            ok = False
            if ok:
                params = self._parameters(atr, protocol, fi, di, s.nad)
                msg = yield Cmd(PC_to_RDR_SetParameters, params.to_bytes(), b7=protocol,
                                timeout_ms=self.timeout_ms)
                if msg.failed:
                    err = self._fail_from(msg, "SetParameters", s)
                    if err.name == "IFD_ICC_NOT_PRESENT":
                        raise err
                    if msg.bError == CMD_NOT_SUPPORTED and not desc.auto_pps_active:
                        self.log("%s: SetParameters not supported; going on" % self.name)
                    else:
                        last = err
                        ok = False
            s.pps_tries.append((fi, di, "ok" if ok else last.name))
            if ok or not s.present:
                self._still_active(s)
            if ok:
                s.protocol = protocol
                s.fi = fi
                s.di = di
                s.speed_index = i
                s.speed_proven = (fi, di) == (iso7816.FD, iso7816.DD)
                self.log("%s: slot %d: T=%d at Fi %d Di %d (%d bit/s)" % (
                    self.name, s.index, protocol, fi, di,
                    iso7816.baud_rate(fi, di, caps.clock_hz)))
                yield from self._setup_engines_gen(s)
                return protocol
            self.log("%s: slot %d: Fi %d Di %d failed (%s); trying a lower speed" % (
                self.name, s.index, fi, di, last.message if last else "?"))
        raise ReaderError("no speed worked: %s" % (last.message if last else "?"),
                          "IFD_ERROR_PTS_FAILURE", last.ccid if last else None, s.index)

    def _still_active(self, s):
        """The answers may say the card went away (bmICCStatus): stop there."""
        if not s.present:
            raise ReaderError("slot %d: card removed" % s.index, "IFD_ICC_NOT_PRESENT",
                              slot=s.index)
        if not s.powered or s.parsed_atr is None:
            raise ReaderError("slot %d: card deactivated" % s.index, "CARD_UNPOWERED",
                              slot=s.index)

    def _setup_engines_gen(self, s):
        self._still_active(s)
        atr = s.parsed_atr
        desc = self.descriptor
        clock = (desc.dwDefaultClock or 4000) * 1000
        s.t0 = None
        s.t1 = None
        if self.exchange != EXCHANGE_TPDU:
            return
        if s.protocol == 1:
            ifsc = atr.ifsc if atr.ifsc and atr.ifsc < 255 else 32
            ifsd = desc.dwMaxIFSD if 0 < desc.dwMaxIFSD < 254 else 254
            s.t1 = T1Reader(ifsc=ifsc, ifsd=ifsd, edc=atr.edc or "LRC", nad=s.nad,
                            bwi=atr.bwi if atr.bwi is not None else 4,
                            cwi=atr.cwi if atr.cwi is not None else 13,
                            fi=s.fi, di=s.di, clock_hz=clock)
            if not desc.auto_ifsd:
                # ISO/IEC 7816-3 §11.6.3 rule 4: offer our IFSD as the first block
                try:
                    s.t1.start_ifsd()
                    yield from self._t1_loop(s)
                except T1Error as e:
                    self.log("%s: slot %d: IFSD negotiation failed (%s)" % (
                        self.name, s.index, e))
                    s.t1.reset()
        else:
            wt = int(iso7816.wt_us(atr.wi or 10, s.fi, clock))
            s.t0 = T0Reader(auto_get_response=False, wt_us=wt)

    def set_protocol(self, slot, preferred=PROTOCOL_T0 | PROTOCOL_T1):
        """Protocol and speed after the ATR: PPS through XfrBlock (TPDU readers
        without automatic PPS) or SetParameters, falling back to slower speeds
        when one fails; then T=1 IFSD negotiation. Returns 0 or 1."""
        s = self.slot(slot)
        if not s.powered:
            raise ReaderError("slot %d: no active card" % slot, "CARD_UNPOWERED", slot=slot)
        return self.run_one(slot, self._negotiate_gen(s, preferred))

    def connect(self, slot, preferred=PROTOCOL_T0 | PROTOCOL_T1):
        """power_on + set_protocol; returns (ATR, protocol)."""
        atr = self.power_on(slot)
        return atr, self.set_protocol(slot, preferred)

    # ------------------------------------------------------------------ transmit

    def _bwi_for(self, s):
        if s.t1 is not None and s.t1.bwt_us:
            m = s.t1.wait_time_us() // s.t1.bwt_us
            if m > 1:
                return m if m < 255 else 255
        return 0

    def _xfr_timeout(self, s, wait_us):
        ms = wait_us // 1000 + self.timeout_ms
        return ms if ms < 600000 else 600000

    def _t1_loop(self, s):
        eng = s.t1
        for _ in range(100000):
            if not eng.busy:
                return
            blk = bytes(eng.block_to_send())
            wait = eng.wait_time_us()
            # bBWI: the BWT multiplier in force (_bwi_for, with the wait at hand)
            bwi = wait // eng.bwt_us if eng.bwt_us else 0
            if bwi < 2:
                bwi = 0
            elif bwi > 255:
                bwi = 255
            msg = yield Cmd(PC_to_RDR_XfrBlock, blk, b7=bwi,
                            timeout_ms=self._xfr_timeout(s, wait))
            if (msg.bStatus >> 6) & 3 == ccid.COMMAND_STATUS_FAILED:     # msg.failed
                if (msg.bStatus & 3) == ICC_STATUS_NOT_PRESENT or msg.bError == CMD_ABORTED:
                    raise self._fail_from(msg, "XfrBlock", s)
                if msg.bError == ICC_MUTE:
                    eng.timeout()
                elif msg.bError == XFR_PARITY_ERROR or msg.bError == XFR_OVERRUN:
                    eng.receive(b"")
                else:
                    raise self._fail_from(msg, "XfrBlock", s)
            else:
                eng.receive(bytes(msg.abData))
        raise ReaderError("T=1 exchange did not end", slot=s.index)

    def _t1_gen(self, s, apdu):
        try:
            s.t1.start(apdu)
            yield from self._t1_loop(s)
            return s.t1.response()
        except T1Error as e:
            if e.name in ("T1_RESYNCH_FAILED", "T1_CARD_MUTE"):
                s.t1.reset()
                raise ReaderError("T=1: %s" % e, "IFD_RESPONSE_TIMEOUT"
                                  if e.name == "T1_CARD_MUTE" else "IFD_COMMUNICATION_ERROR",
                                  slot=s.index)
            raise ReaderError("T=1: %s" % e, "IFD_COMMUNICATION_ERROR", slot=s.index)

    def _xfr_once(self, s, data, timeout_us=0):
        """One XfrBlock; the answer's abData (None for a mute card)."""
        msg = yield Cmd(PC_to_RDR_XfrBlock, data, timeout_ms=self._xfr_timeout(s, timeout_us))
        if msg.failed:
            if msg.bError == ICC_MUTE and (msg.bStatus & 3) != ICC_STATUS_NOT_PRESENT:
                return None
            raise self._fail_from(msg, "XfrBlock", s)
        return bytes(msg.abData)

    def _t0_gen(self, s, apdu):
        eng = s.t0

        def exchange(data):
            ans = yield from self._xfr_once(s, data, eng.wt_us)
            return ans

        try:
            r = yield from _drive_steps(eng.steps(apdu), exchange)
            return r
        except T0Error as e:
            if e.name == "TIMEOUT":
                raise ReaderError("T=0: %s" % e, "IFD_RESPONSE_TIMEOUT", slot=s.index)
            raise ReaderError("T=0: %s" % e, "IFD_COMMUNICATION_ERROR", slot=s.index)

    def _short_apdu_gen(self, s, apdu):
        maxd = self.max_message_length - 10
        extended = len(apdu) > 261
        if not extended:
            try:
                extended = CommandAPDU.parse(apdu).extended
            except APDUError:
                extended = False
        if not extended and len(apdu) <= maxd:
            ans = yield from self._xfr_once(s, apdu)
            if ans is None:
                raise ReaderError("card mute", "IFD_RESPONSE_TIMEOUT", slot=s.index)
            return ans
        # ISO/IEC 7816-3 §12.2: an extended APDU through ENVELOPE, its answer by GET RESPONSE
        env = T0Reader(auto_get_response=False, envelope_cla=0x00)

        def exchange(data):
            ans = yield from self._xfr_once(s, data, env.wt_us)
            return ans

        try:
            r = yield from _drive_steps(env.steps(apdu), exchange)
            return r
        except T0Error as e:
            raise ReaderError("extended APDU on a short-APDU reader: %s" % e,
                              "IFD_COMMUNICATION_ERROR", slot=s.index)

    def _extended_apdu_gen(self, s, apdu):
        # CCID §6.1.4 wLevelParameter at extended APDU level
        maxd = self.max_message_length - 10
        n = len(apdu)
        t = self.timeout_ms
        if n <= maxd:
            msg = yield Cmd(PC_to_RDR_XfrBlock, apdu, timeout_ms=t)
        else:
            pos = 0
            msg = None
            for _ in range(n // maxd + 2):
                if pos >= n:
                    break
                chunk = apdu[pos:pos + maxd]
                first = pos == 0
                pos += len(chunk)
                last = pos >= n
                level = ccid.CHAIN_BEGIN if first else (ccid.CHAIN_END if last
                                                         else ccid.CHAIN_CONTINUE)
                msg = yield Cmd(PC_to_RDR_XfrBlock, chunk, 0, level & 0xFF, level >> 8,
                                timeout_ms=t)
                if msg.failed:
                    raise self._fail_from(msg, "XfrBlock", s)
        if msg.failed:
            raise self._fail_from(msg, "XfrBlock", s)
        out = bytearray(msg.abData)
        for _ in range(65544 // (maxd if maxd > 0 else 1) + 4):
            if msg.bChainParameter not in (ccid.CHAIN_BEGIN, ccid.CHAIN_CONTINUE):
                break
            lvl = ccid.CHAIN_EMPTY_CONTINUE
            msg = yield Cmd(PC_to_RDR_XfrBlock, b"", 0, lvl & 0xFF, lvl >> 8, timeout_ms=t)
            if msg.failed:
                raise self._fail_from(msg, "XfrBlock", s)
            out.extend(msg.abData)
        return bytes(out)

    def _transmit_gen(self, s, apdu):
        for attempt in range(16):
            try:
                r = yield from self._transmit_once_gen(s, apdu)
                s.speed_proven = True
                return r
            except ReaderError as e:
                if s.speed_proven or not s.powered or e.ccid is None or \
                        e.ccid.code not in _LINE_ERRORS or \
                        s.speed_index + 1 >= len(s.candidates):
                    raise
                # the first exchange at a new speed failed on the line (the
                # AU9560 with fast cards): renegotiate one step slower, resend
                self.log("%s: slot %d: first exchange at Fi %d Di %d failed (%s); "
                         "lowering the speed" % (self.name, s.index, s.fi, s.di, e.ccid.name))
                bit = PROTOCOL_T1 if s.protocol == 1 else PROTOCOL_T0
                s.pps_tries[-1] = (s.fi, s.di, e.ccid.name)
                yield from self._negotiate_gen(s, bit, s.speed_index + 1)
        raise ReaderError("no speed carries an exchange", "IFD_COMMUNICATION_ERROR",
                          slot=s.index)

    def _transmit_once_gen(self, s, apdu):
        if not s.present:
            raise ReaderError("slot %d: no card" % s.index, "IFD_ICC_NOT_PRESENT", slot=s.index)
        if not s.powered:
            raise ReaderError("slot %d: card not powered" % s.index, "CARD_UNPOWERED",
                              slot=s.index)
        apdu = bytes(apdu)
        if self.exchange == EXCHANGE_TPDU:
            if s.protocol == 1 and s.t1 is not None:
                r = yield from self._t1_gen(s, apdu)
            elif s.t0 is not None:
                r = yield from self._t0_gen(s, apdu)
            else:
                raise ReaderError("slot %d: no protocol set" % s.index, "CARD_UNPOWERED",
                                  slot=s.index)
        elif self.exchange == EXCHANGE_SHORT_APDU:
            r = yield from self._short_apdu_gen(s, apdu)
        elif self.exchange == EXCHANGE_EXTENDED_APDU:
            r = yield from self._extended_apdu_gen(s, apdu)
        else:
            raise ReaderError("character level readers are not supported", "IFD_NOT_SUPPORTED",
                              slot=s.index)
        mr = self.quirks.get("max_response")
        if mr is not None and len(r) > mr:
            raise ReaderError("answer of %d bytes beyond what this reader carries" % len(r),
                              "IFD_COMMUNICATION_ERROR", slot=s.index)
        return r

    def transmit(self, slot, apdu):
        """One command APDU to the card in ``slot``; returns data + SW1 SW2."""
        s = self.slot(slot)
        s.abort_requested = False
        return self.run_one(slot, self._transmit_gen(s, apdu))

    def transmit_job(self, slot, apdu):
        """The exchange generator of one APDU, for ``run`` (mix slots and operations)."""
        s = self.slot(slot)
        s.abort_requested = False
        return self._transmit_gen(s, apdu)

    def transmit_many(self, requests):
        """APDUs to several slots at once: ``{slot: apdu}`` -> ``{slot: response or
        ReaderError}``. Up to ``max_busy`` slots are busy together; the rest
        wait their turn."""
        jobs = []
        for slot in sorted(requests):
            s = self.slot(slot)
            s.abort_requested = False
            jobs.append((slot, self._transmit_gen(s, requests[slot])))
        res = self.run(jobs)
        out = {}
        for i in range(len(jobs)):
            out[jobs[i][0]] = res[i]
        return out

    # ------------------------------------------------------------------ escape, secure, NAD

    def escape(self, data, slot=0):
        """PC_to_RDR_Escape; returns the RDR_to_PC_Escape abData."""
        s = self.slot(slot)
        if self.quirks.get("no_escape"):
            raise ReaderError("escape commands not supported", "IFD_NOT_SUPPORTED", slot=slot)

        def gen():
            msg = yield Cmd(PC_to_RDR_Escape, bytes(data), timeout_ms=self.timeout_ms)
            if msg.failed:
                raise self._fail_from(msg, "Escape", s)
            return bytes(msg.abData)

        return self.run_one(slot, gen())

    def secure(self, slot, abData):
        """PC_to_RDR_Secure with ``abData`` = bPINOperation + PIN structure + APDU.

        The reader sends time extensions while the user types. PIN entry
        timeout and cancel come back as SW 64 00 and 64 01 (PC/SC part 10).
        At TPDU level with T=1 the reader sends the APDU in one I-block whose
        NAD and PCB the driver puts in bTeoPrologue (CCID §6.1.11) and answers
        with the card's block, which the T=1 engine then takes over.
        """
        s = self.slot(slot)
        if not s.powered:
            raise ReaderError("slot %d: card not powered" % slot, "CARD_UNPOWERED", slot=slot)
        s.abort_requested = False
        abData = bytes(abData)
        t1 = self.exchange == EXCHANGE_TPDU and s.protocol == 1 and s.t1 is not None
        apdu = None
        if t1:
            try:
                m = ccid.CCIDMessage(PC_to_RDR_Secure, abData=abData)
            except CCIDError as e:
                raise ReaderError("PIN structure: %s" % e, "IFD_NOT_SUPPORTED", e, slot)
            st = m.abPINDataStructure
            if st is None:
                raise ReaderError("PIN operation %r at TPDU level" % (m.bPINOperation,),
                                  "IFD_NOT_SUPPORTED", slot=slot)
            apdu = st.abPINApdu
            if not apdu or len(apdu) > s.t1.ifsc:
                raise ReaderError("PIN APDU of %d bytes does not fit one I-block (IFSC %d)"
                                  % (len(apdu), s.t1.ifsc), "IFD_NOT_SUPPORTED", slot=slot)
            # §11.3.2.2: I-block PCB = N(S) in bit 7, no chaining
            st.bTeoPrologue = bytes((s.t1.nad, 0x40 if s.t1.ns else 0x00, 0))
            abData = m.abData

        def gen():
            msg = yield Cmd(PC_to_RDR_Secure, abData, timeout_ms=self.timeout_ms * 10)
            if msg.failed:
                if msg.bError == PIN_TIMEOUT:
                    return b"\x64\x00"
                if msg.bError == PIN_CANCELLED:
                    return b"\x64\x01"
                raise self._fail_from(msg, "Secure", s)
            if not t1:
                return bytes(msg.abData)
            # the engine now owns the exchange as if it had sent that I-block
            eng = s.t1
            try:
                eng.start(apdu)
                eng.receive(bytes(msg.abData))
                if eng.busy and not (eng.block_to_send()[1] & 0x80):
                    # never send the PIN-less template again: that would be a wrong PIN
                    raise ReaderError("the card asked for the PIN block again",
                                      "IFD_COMMUNICATION_ERROR", slot=s.index)
                yield from self._t1_loop(s)
                return eng.response()
            except T1Error as e:
                raise ReaderError("T=1 after PIN entry: %s" % e, "IFD_COMMUNICATION_ERROR",
                                  slot=s.index)

        return self.run_one(slot, gen())

    def set_nad(self, slot, nad):
        s = self.slot(slot)
        nad &= 0xFF
        if nad & 0x77 != nad & 0xFF:
            raise ReaderError("NAD %02X has bits 8 or 4 set" % nad, "IFD_NOT_SUPPORTED",
                              slot=slot)
        if nad and not self.descriptor.nad_other_than_0 and not self.tpdu_level:
            raise ReaderError("the reader accepts only NAD 00", "IFD_NOT_SUPPORTED", slot=slot)
        s.nad = nad
        if s.t1 is not None:
            s.t1.nad = nad

    def get_parameters(self, slot):
        s = self.slot(slot)

        def gen():
            msg = yield Cmd(PC_to_RDR_GetParameters, timeout_ms=self.timeout_ms)
            if msg.failed:
                raise self._fail_from(msg, "GetParameters", s)
            return msg.abProtocolDataStructure

        return self.run_one(slot, gen())

    def abort(self, slot):
        """CCID §5.3.1 on an idle slot: ABORT request and PC_to_RDR_Abort with one bSeq."""
        s = self.slot(slot)
        if self.quirks.get("no_abort"):
            raise ReaderError("abort not supported", "IFD_NOT_SUPPORTED", slot=slot)
        self._check_alive()
        seq = self.seq.issue(slot, PC_to_RDR_Abort)
        req = ccid.abort_request(self.interface_number, slot, seq)
        try:
            self._control(req[0], req[1], req[2], req[3], 0)
        except TransportError as e:
            self.log("%s: ABORT request failed (%s)" % (self.name, e.name))
        self._send(Cmd(PC_to_RDR_Abort).encode(slot, seq))
        kept = []
        try:
            for _ in range(16):
                msg = self._read_message(self.timeout_ms)
                if msg.bSlot == slot and msg.bSeq == seq and \
                        msg.bMessageType == RDR_to_PC_SlotStatus and not msg.time_extension:
                    self._note_status(s, msg)
                    return msg
                kept.append(msg)
        finally:
            self.seq.forget(slot, seq)
            self._queue = kept + self._queue
        raise ReaderError("no answer to PC_to_RDR_Abort", "IFD_COMMUNICATION_ERROR", slot=slot)


# bError values that say the line to the card failed (speed, noise, no answer)
_LINE_ERRORS = (ccid.HW_ERROR, XFR_PARITY_ERROR, XFR_OVERRUN, ICC_MUTE)


def _proto_names(mask):
    out = []
    if mask & PROTOCOL_T0:
        out.append("T=0")
    if mask & PROTOCOL_T1:
        out.append("T=1")
    if mask & PROTOCOL_RAW:
        out.append("RAW")
    return ",".join(out) or "none"


def open_readers(transports, log=None, now_ms=None, **options):
    """Readers for a list of transports (one per CCID interface), opened."""
    out = []
    for t in transports:
        r = Reader(t, log=log, now_ms=now_ms, **options)
        r.open()
        out.append(r)
    return out
