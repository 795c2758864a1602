"""An emulated USB CCID reader: the device model any transport can drive.

    from ccidkit.emu.reader import EmulatedReader
    r = EmulatedReader("gemalto-pctwin", cards={0: MiniCard()})
    r.bulk_out(ccid_message_bytes)          # one CCID message (or pieces of it)
    answer = r.bulk_in(65536, timeout_ms=5000)
    r.interrupt_in(8, 100)                  # NotifySlotChange / ReaderTimeout
    r.control(0xA1, 0x03, 0, 0, 256)        # GET_DATA_RATES

The model is split as a CCID firmware is: ``_cmd_*`` methods answer the
PC_to_RDR messages of CCID rev 1.1 §6.1 (each cites its clause), the
``Slot`` objects hold the card-side state (power, ATR, the parameters the
card really uses, the T=0 / T=1 card engines), ``emu.timing`` gives every
answer its completion time in emulated time, and ``emu.faults`` may spoil
things on purpose. Profiles (``emu.profiles``) hold every per-reader fact.

Concurrency: each slot runs one command at a time; up to bMaxCCIDBusySlots
slots run at once; answers come out of bulk-IN in the order their
commands complete in emulated time. A command for a busy slot, or beyond
bMaxCCIDBusySlots, is answered at once with CMD_SLOT_BUSY (§5.2.2 / §6.2.6).
"""

import collections
import functools
import heapq
import struct
import threading

from ..core import ccid as C
from ..core import ccid_descriptor as CD
from ..core import iso7816
from ..core.apdu import APDUError, CommandAPDU
from ..core.atr import ATRError, parse_atr
from ..core.errors import CcidkitError
from ..core.t1 import put_edc, edc_size
from .card.link import FaultLink
from .card.t0 import T0Card
from .card.t1 import T1Card
from . import profiles as P
from . import timing as T
from .faults import ReaderFaults


class EmulatedReaderError(CcidkitError):
    """Misuse of the emulated reader (unknown profile, bad slot, ...)."""


class ReaderTimeout(EmulatedReaderError):
    """Nothing on the endpoint within the timeout (libusb: LIBUSB_ERROR_TIMEOUT)."""

    def __init__(self, message):
        EmulatedReaderError.__init__(self, message, -7, "LIBUSB_ERROR_TIMEOUT")


class ReaderStall(EmulatedReaderError):
    """The endpoint answered STALL (libusb: LIBUSB_ERROR_PIPE, errno EPIPE)."""

    def __init__(self, message):
        EmulatedReaderError.__init__(self, message, -9, "LIBUSB_ERROR_PIPE")


class ReaderGone(EmulatedReaderError):
    """The reader was unplugged (libusb: LIBUSB_ERROR_NO_DEVICE, errno ENODEV)."""

    def __init__(self, message="reader unplugged"):
        EmulatedReaderError.__init__(self, message, -4, "LIBUSB_ERROR_NO_DEVICE")


# Endpoint addresses (chosen; QEMU's usb-ccid uses 81/82/03).
EP_BULK_OUT = 0x01
EP_BULK_IN = 0x82
EP_INTERRUPT_IN = 0x83

# Longest an endpoint wait may last when the caller asks for "no timeout".
MAX_WAIT_MS = 3600 * 1000
# Time the scripted keypad user takes to type one PIN (chosen).
KEYPAD_ENTRY_US = 1500000
# ISO/IEC 7816-3 §6.2.2: the ATR starts within 40 000 clock cycles.
ATR_DELAY_CYCLES = 40000

_SERIALS = [0]


def _locked(method):
    """Serialise the public entry points: a transport thread (a usbredir
    server) and a test thread (insert/remove, faults) may share a reader."""
    @functools.wraps(method)
    def wrapper(self, *args, **kwargs):
        with self._lock:
            return method(self, *args, **kwargs)
    return wrapper


def _next_serial():
    _SERIALS[0] += 1
    return "%08X" % _SERIALS[0]


# ---------------------------------------------------------------------------
# The card end of PPS (ISO/IEC 7816-3 §9)

def card_pps_response(atr, request):
    """What a card answers to a PPS request, and the parameters then in force.

    Returns (response bytes, (protocol, Fi, Di)) or (None, None) when the
    card stays silent (bad PCK, malformed request, protocol not offered).
    §9.3: the card echoes PPS0's protocol; it echoes PPS1 when it accepts
    F and D (F no greater than Fi, D no greater than Di of its ATR) and
    leaves PPS1 out otherwise, meaning Fd / Dd; PPS2 is echoed or left out,
    PPS3 is left out (not supported here).
    """
    req = bytes(request)
    if len(req) < 3 or req[0] != 0xFF:
        return None, None
    pps0 = req[1]
    need = 3 + bin(pps0 & 0x70).count("1")
    if len(req) != need or pps0 & 0x80:
        return None, None
    x = 0
    for b in req:
        x ^= b
    if x:
        return None, None
    protocol = pps0 & 0x0F
    if protocol not in atr.protocols:
        return None, None
    pos = 2
    pps1 = pps2 = None
    if pps0 & 0x10:
        pps1 = req[pos]
        pos += 1
    if pps0 & 0x20:
        pps2 = req[pos]
        pos += 1
    fi, di = iso7816.FD, iso7816.DD
    out0 = protocol
    body = []
    if pps1 is not None:
        f = iso7816.FI_TABLE[pps1 >> 4]
        d = iso7816.DI_TABLE[pps1 & 0x0F]
        card_fi = atr.fi or iso7816.FD
        card_di = atr.di or iso7816.DD
        if f is not None and d is not None and f <= card_fi and d <= card_di:
            out0 |= 0x10
            body.append(pps1)
            fi, di = f, d
    if pps2 is not None:
        out0 |= 0x20
        body.append(pps2)
    resp = bytearray((0xFF, out0))
    resp.extend(body)
    pck = 0
    for b in resp:
        pck ^= b
    resp.append(pck)
    return bytes(resp), (protocol, fi, di)


def pseudo_atr(historical):
    """PC/SC part 3 §3.1.3.2.3 pseudo-ATR of an ISO/IEC 14443-4 PICC:
    3B 8n 80 01 <n historical bytes> TCK (TCK = XOR of T0 .. last byte)."""
    hist = bytes(historical)[:15]
    atr = bytearray((0x3B, 0x80 | len(hist), 0x80, 0x01))
    atr.extend(hist)
    tck = 0
    for b in atr[1:]:
        tck ^= b
    atr.append(tck)
    return bytes(atr)


def _line_of(params):
    """(protocol, Fi, Di) of a T0Parameters / T1Parameters."""
    return (params.bProtocolNum, iso7816.FI_TABLE[params.Findex] or iso7816.FD,
            iso7816.DI_TABLE[params.Dindex] or iso7816.DD)


# ---------------------------------------------------------------------------

class Slot:
    """One card interface of the reader (the 'hardware' side)."""

    def __init__(self, index):
        self.index = index
        self.card = None
        self.powered = False
        self.atr = b""
        self.atr_info = None
        self.params = None          # T0Parameters / T1Parameters set by the host
        self.card_line = None       # (protocol, Fi, Di) the card really uses
        self.pps_allowed = False    # the next exchange is the first after the ATR
        self.t0 = None
        self.t1 = None
        self.clock_hz = None
        self.data_rate = None       # set by SetDataRateAndClockFrequency
        self.clock_stopped = False
        self.voltage = 0
        self.busy_until = -1
        self.chain_in = None        # extended APDU level: command being gathered
        self.chain_out = None       # extended APDU level: response left to send
        self.out_sent = 0           # bytes of that response already sent
        self.abort_seq = None       # ABORT control request seen (bSeq)
        self.abort_bulk = None      # PC_to_RDR_Abort waiting for its control request
        self.keypad = []            # scripted PIN entries
        self.last_cmd = None        # (bMessageType, bSeq) of the last command taken

    @property
    def present(self):
        return self.card is not None

    def icc_status(self):
        if self.card is None:
            return C.ICC_STATUS_NOT_PRESENT
        return C.ICC_STATUS_PRESENT_ACTIVE if self.powered else C.ICC_STATUS_PRESENT_INACTIVE


class _Failed(Exception):
    """Internal: a command fails with this bError (and maybe a late answer)."""

    def __init__(self, bError, delay_us=0):
        Exception.__init__(self, bError)
        self.bError = bError
        self.delay_us = delay_us


class EmulatedReader:
    """One emulated CCID reader (see the module documentation and the contract
    in the project's driver notes). ``cards`` maps slot -> card object."""

    def __init__(self, profile_id, cards=None, clock=None, time_scale=0.0, serial=None,
                 bus=None, port_path=(1,)):
        if isinstance(profile_id, dict):
            # a profile made by the caller (the serial personalities of
            # emu/serial_reader.py): the fields of profiles.profile()'s answer
            custom = profile_id
            profile_id = custom.get("id", "custom")
            self.profile = dict(custom)
            quirks = dict(P.DEFAULT_QUIRKS)
            quirks.update(custom.get("quirks", {}))
            self.profile["quirks"] = quirks
            self.profile["id"] = profile_id
        else:
            try:
                self.profile = P.profile(profile_id)
            except KeyError:
                raise EmulatedReaderError("unknown reader profile %r" % (profile_id,), None,
                                          "UNKNOWN_PROFILE")
        if profile_id in P.PROFILES and P.bank_of(profile_id) is not None:
            raise EmulatedReaderError("%s is a bank of readers: use create_readers()"
                                      % profile_id, None, "BANK_PROFILE")
        self.profile_id = profile_id
        self.usb = self.profile["usb"]
        self.ccid = dict(self.profile["ccid"])
        self.quirks = self.profile["quirks"]
        self.timing = self.profile["timing"]
        self.class_descriptor = P.class_descriptor_bytes(self.ccid)
        self.descriptor = CD.parse_ccid_descriptor(self.class_descriptor)
        if self.descriptor.character_level or self.descriptor.exchange_level == "invalid":
            raise EmulatedReaderError("character level exchanges are not emulated", None,
                                      "UNSUPPORTED_LEVEL")
        self.clock = clock if clock is not None else T.VirtualClock(time_scale)
        self.bus = bus if bus is not None else T.Bus(profile_id)
        self.serial = serial if serial is not None else _next_serial()
        self.port_path = tuple(port_path)
        self.faults = ReaderFaults()
        # False: every command takes the general path (tests compare the two)
        self.fast_paths = True
        self._lock = threading.RLock()
        self.slots = [Slot(i) for i in range(self.descriptor.slots)]
        self.max_data = self.descriptor.max_data_length
        self.gone = False
        self.configuration = 0
        self._rx = bytearray()
        self._queue = []            # heap of (t_ready, order, bytes, slot index)
        self._order = 0
        self._current = None        # bytes of a response being read in pieces
        self._current_pos = 0
        self._last_answer = None
        self._interrupts = []       # (t_us, bytes)
        # recent traffic, bounded: (t_us, "->"/"<-", bMessageType, bSlot, bSeq)
        self.log = collections.deque(maxlen=4096)
        self.device_descriptor = self._device_descriptor()
        self.config_descriptor = self._config_descriptor()
        for s in self.slots:
            s.clock_hz = self.descriptor.dwDefaultClock * 1000
        cards = cards or {}
        for slot in cards:
            self._check_slot(slot)
            self.slots[slot].card = cards[slot]

    # -- descriptors -----------------------------------------------------------
    def _device_descriptor(self):
        u = self.usb
        # USB 2.0 §9.6.1; class/subclass/protocol 0 (defined by the interface)
        return struct.pack("<BBHBBBBHHHBBBB", 18, 1, u["bcdUSB"], 0, 0, 0, 64,
                           u["idVendor"], u["idProduct"], u["bcdDevice"], 1, 2, 3, 1)

    def _config_descriptor(self):
        u = self.usb
        mps = u["wMaxPacketSize"]
        eps = [struct.pack("<BBBBHB", 7, 5, EP_BULK_OUT, 2, mps, 0),
               struct.pack("<BBBBHB", 7, 5, EP_BULK_IN, 2, mps, 0)]
        if u["interrupt"]:
            # bInterval 16 ms and 8-byte packets chosen; NotifySlotChange of
            # 8 slots takes 3 bytes.
            eps.append(struct.pack("<BBBBHB", 7, 5, EP_INTERRUPT_IN, 3, 8, 16))
        n = u["interface_number"]
        # USB 2.0 §9.6.3: interfaces are numbered 0 .. bNumInterfaces-1. A reader
        # whose CCID interface is not the first (the Cherry keyboard-reader has
        # its HID keyboard at 0) gets the interfaces before it as vendor-specific
        # ones without endpoints: numbered right for firmware and host stacks,
        # and nothing there for a class driver to bind to.
        body = b"".join(struct.pack("<BBBBBBBBB", 9, 4, i, 0, 0, 0xFF, 0, 0, 0)
                        for i in range(n))
        iface = struct.pack("<BBBBBBBBB", 9, 4, n, 0, len(eps),
                            u["interface_class"], 0, u["interface_protocol"], 0)
        body += iface + self.class_descriptor + b"".join(eps)
        total = 9 + len(body)
        cfg = struct.pack("<BBHBBBBB", 9, 2, total, n + 1, 1, 0, 0x80, u["bMaxPower"])
        return cfg + body

    def string(self, index, langid=0x0409):
        """String descriptor ``index`` as text (None when there is none)."""
        table = {1: self.usb["manufacturer"], 2: self.usb["product"], 3: self.serial}
        return table.get(index)

    def _string_descriptor(self, index, langid):
        if index == 0:
            return bytes((4, 3, 0x09, 0x04))
        s = self.string(index, langid)
        if s is None:
            raise ReaderStall("no string descriptor %d" % index)
        raw = s.encode("utf-16-le")
        return bytes((2 + len(raw), 3)) + raw

    @property
    def interface_number(self):
        return self.usb["interface_number"]

    @property
    def has_interrupt(self):
        return bool(self.usb["interrupt"])

    # -- plumbing --------------------------------------------------------------
    def _check_slot(self, slot):
        if not 0 <= slot < len(self.slots):
            raise EmulatedReaderError("no slot %d (%d slots)" % (slot, len(self.slots)), None,
                                      "BAD_SLOT")

    def _alive(self):
        if self.gone:
            raise ReaderGone()

    def now(self):
        return self.clock.now_us()

    def _push(self, t_ready, data, slot):
        self._order += 1
        heapq.heappush(self._queue, (int(t_ready), self._order, data, slot))

    def _notify(self, changed_slot):
        if not self.has_interrupt or not self.quirks["notify_slot_change"]:
            return
        present = [s.present for s in self.slots]
        changed = [s.index == changed_slot for s in self.slots]
        if self.faults.take_notify_lost():
            return
        # A change not yet fetched is merged into the pending message, as
        # firmware keeps one "changed" bit per slot until it is reported.
        for i in range(len(self._interrupts)):
            t, old = self._interrupts[i]
            if old[0] == C.RDR_to_PC_NotifySlotChange:
                prev = C.NotifySlotChange(old[1:], len(self.slots))
                for j in range(len(self.slots)):
                    changed[j] = changed[j] or prev.changed(j)
                msg = C.NotifySlotChange.from_states(present, changed).to_bytes()
                self._interrupts[i] = (t, msg)
                return
        msg = C.NotifySlotChange.from_states(present, changed).to_bytes()
        self._interrupts.append((self.now(), msg))

    # -- card events -------------------------------------------------------------
    @_locked
    def insert_card(self, slot, card, notify=True):
        """Put a card in a slot; ``notify=False`` for the initial state (no
        NotifySlotChange, as for a card already there at plug time)."""
        self._check_slot(slot)
        s = self.slots[slot]
        if s.card is not None:
            raise EmulatedReaderError("slot %d already holds a card" % slot, None, "SLOT_FULL")
        s.card = card
        s.powered = False
        if notify:
            self._notify(slot)      # CCID §6.3.1

    @_locked
    def clear_interrupts(self):
        """Forget the interrupt-IN messages not fetched yet."""
        self._interrupts = []

    @_locked
    def remove_card(self, slot):
        self._check_slot(slot)
        if self.quirks["card_always_present"]:
            raise EmulatedReaderError("the chip of %s cannot be removed" % self.profile_id,
                                      None, "CARD_FIXED")
        self._drop_card(slot)

    def _drop_card(self, slot):
        s = self.slots[slot]
        if s.card is None:
            return
        s.card = None
        s.powered = False
        s.t0 = s.t1 = None
        s.chain_in = s.chain_out = None
        self._notify(slot)

    @_locked
    def unplug(self):
        """The reader leaves the bus: every transfer now raises ReaderGone."""
        self.gone = True
        self._queue = []
        self._current = None
        self._interrupts = []

    @_locked
    def plug(self):
        """Back on the bus (as after a fresh enumeration): cards unpowered, queues empty."""
        self.gone = False
        self._rx = bytearray()
        for s in self.slots:
            s.powered = False
            s.busy_until = -1
            s.abort_seq = s.abort_bulk = None
            s.chain_in = s.chain_out = None

    @_locked
    def keypad(self, slot, *entries):
        """Script what the user types on the PIN pad: each entry a PIN string,
        "cancel" (the cancel key) or "timeout" (nothing typed)."""
        self._check_slot(slot)
        for e in entries:
            self.slots[slot].keypad.append(str(e))

    # -- control endpoint ----------------------------------------------------------
    @_locked
    def control(self, bmRequestType, bRequest, wValue, wIndex, data_or_length=0):
        """A control transfer; returns the data stage (bytes; b"" for OUT requests)."""
        self._alive()
        if self.faults.take_stall("control"):
            raise ReaderStall("control request stalled")
        length = data_or_length if isinstance(data_or_length, int) else 0
        self.clock.advance(T.FRAME_US)   # setup, data and status stages in a frame
        rtype = bmRequestType & 0x60
        if rtype == 0x00:
            return self._standard_request(bmRequestType, bRequest, wValue, wIndex, length)
        if rtype == 0x20 and (bmRequestType & 0x1F) == 0x01:
            if (wIndex & 0xFF) != self.interface_number:
                raise ReaderStall("class request for interface %d" % (wIndex & 0xFF))
            return self._class_request(bmRequestType, bRequest, wValue, length)
        raise ReaderStall("request %02X %02X not supported" % (bmRequestType, bRequest))

    def _standard_request(self, bmRequestType, bRequest, wValue, wIndex, length):
        # USB 2.0 §9.4
        if bRequest == 6 and bmRequestType == 0x80:           # GET_DESCRIPTOR
            dtype = wValue >> 8
            index = wValue & 0xFF
            if dtype == 1:
                data = self.device_descriptor
            elif dtype == 2 and index == 0:
                data = self.config_descriptor
            elif dtype == 3:
                data = self._string_descriptor(index, wIndex)
            else:
                raise ReaderStall("no descriptor %04X" % wValue)
            return data[:length]
        if bRequest == 0 and bmRequestType & 0x80:             # GET_STATUS
            return b"\x00\x00"[:length]
        if bRequest == 8 and bmRequestType == 0x80:            # GET_CONFIGURATION
            return bytes((self.configuration,))[:length]
        if bRequest == 9 and bmRequestType == 0x00:            # SET_CONFIGURATION
            if wValue not in (0, 1):
                raise ReaderStall("no configuration %d" % wValue)
            self.configuration = wValue
            return b""
        if bRequest == 10 and bmRequestType == 0x81:           # GET_INTERFACE
            return b"\x00"[:length]
        if bRequest == 11 and bmRequestType == 0x01:           # SET_INTERFACE
            if wValue != 0:
                raise ReaderStall("no alternate setting %d" % wValue)
            return b""
        if bRequest == 1 and bmRequestType == 0x02:            # CLEAR_FEATURE(ENDPOINT_HALT)
            ep = wIndex & 0xFF
            name = {EP_BULK_IN: "bulk_in", EP_BULK_OUT: "bulk_out",
                    EP_INTERRUPT_IN: "interrupt_in"}.get(ep)
            if name is not None:
                self.faults.clear_stall(name)
            return b""
        raise ReaderStall("standard request %02X %02X" % (bmRequestType, bRequest))

    def _class_request(self, bmRequestType, bRequest, wValue, length):
        if bRequest == C.REQUEST_ABORT and bmRequestType == 0x21:
            slot, seq = C.parse_abort_request(wValue)
            if slot >= len(self.slots):
                raise ReaderStall("ABORT for slot %d" % slot)
            self._abort_control(slot, seq)
            return b""
        if bmRequestType == 0xA1 and bRequest in (C.REQUEST_GET_CLOCK_FREQUENCIES,
                                                  C.REQUEST_GET_DATA_RATES):
            values = self.profile["clocks_khz"] if bRequest == 2 else self.profile["data_rates"]
            if values is None:
                if self.quirks["class_requests"] == "timeout":
                    self.clock.advance(5000 * 1000)
                    raise ReaderTimeout("class request %d not answered" % bRequest)
                raise ReaderStall("class request %d not supported" % bRequest)
            data = b"".join(struct.pack("<I", v) for v in values)
            return data[:length]
        raise ReaderStall("class request %02X %02X" % (bmRequestType, bRequest))

    # -- bulk-OUT ----------------------------------------------------------------------
    def bulk_out(self, data, timeout_ms=None):
        """One CCID message, or a piece of one: pieces are gathered by dwLength."""
        with self._lock:        # as @_locked, one call less on the hot path
            self._bulk_out(data)

    def _bulk_out(self, data):
        if self.gone:
            raise ReaderGone()
        if self.faults.stalls and self.faults.take_stall("bulk_out"):
            raise ReaderStall("bulk-OUT stalled")
        data = bytes(data)
        n = len(data)
        end = self.bus.transfer(self.clock.now_us(), T.usb_bulk_us(n, self.usb["wMaxPacketSize"]))
        self.clock.advance_to(end)
        if not self._rx and n >= C.CCID_HEADER_LENGTH:
            # the usual case: one whole message in one transfer, taken as it
            # came (what the gathering below would cut out of _rx)
            dw = data[1] | (data[2] << 8) | (data[3] << 16) | (data[4] << 24)
            if n == C.CCID_HEADER_LENGTH + dw and dw <= self.max_data:
                self._command(data)
                if self.gone:
                    raise ReaderGone()
                return
        self._rx.extend(data)
        for _ in range(len(self._rx) // C.CCID_HEADER_LENGTH + 1):
            if len(self._rx) < C.CCID_HEADER_LENGTH:
                return
            t, dw, bslot, bseq = struct.unpack_from("<BIBB", self._rx, 0)
            if dw > self.max_data:
                # §6.2.6: bError = 1, the offset of dwLength; drop what came.
                self._rx = bytearray()
                self._immediate(t, bslot, bseq, C.COMMAND_STATUS_FAILED, 1)
                return
            if len(self._rx) < C.CCID_HEADER_LENGTH + dw:
                return
            msg = bytes(self._rx[:C.CCID_HEADER_LENGTH + dw])
            del self._rx[:C.CCID_HEADER_LENGTH + dw]
            self._command(msg)
            if self.gone:
                raise ReaderGone()

    def _immediate(self, bMessageType, bSlot, bSeq, cmd_status, bError):
        rtype = C.RESPONSE_TYPE.get(bMessageType, C.RDR_to_PC_SlotStatus)
        icc = self.slots[bSlot].icc_status() if bSlot < len(self.slots) else \
            C.ICC_STATUS_NOT_PRESENT
        out = struct.pack("<BIBBBBB", rtype, 0, bSlot, bSeq, C.make_status(icc, cmd_status),
                          bError, 0)
        self._push(self.now() + self.timing["firmware_us"], out, bSlot)

    def _command(self, raw):
        t, dw, bslot, bseq = struct.unpack_from("<BIBB", raw, 0)
        faults = self.faults
        self.log.append((self.clock.now_us(), "->", t, bslot, bseq))
        if faults.unplug_countdown is not None and faults.take_unplug():
            self.unplug()
            return
        if t not in C.RESPONSE_TYPE:
            # §6.2.6: an unknown command fails with CMD_NOT_SUPPORTED
            self._immediate(t, bslot, bseq, C.COMMAND_STATUS_FAILED, C.CMD_NOT_SUPPORTED)
            return
        if bslot >= len(self.slots):
            self._immediate(t, bslot, bseq, C.COMMAND_STATUS_FAILED, 5)   # offset of bSlot
            return
        s = self.slots[bslot]
        now = self.clock.now_us()
        if t == C.PC_to_RDR_Abort:
            self._abort_bulk(s, bseq)
            return
        # §5.2.2: one command per slot; at most bMaxCCIDBusySlots slots busy.
        busy = 0
        for x in self.slots:
            if x.busy_until > now:
                busy += 1
        if s.busy_until > now or busy >= max(1, self.descriptor.bMaxCCIDBusySlots):
            self._immediate(t, bslot, bseq, C.COMMAND_STATUS_FAILED, C.CMD_SLOT_BUSY)
            return
        if s.abort_seq is not None:
            # §5.3.1: between the ABORT request and PC_to_RDR_Abort, commands fail
            self._immediate(t, bslot, bseq, C.COMMAND_STATUS_FAILED, C.CMD_ABORTED)
            return
        s.last_cmd = (t, bseq)
        if t == C.PC_to_RDR_XfrBlock and self.fast_paths:
            line = self._t1_fast_ok(s, raw)
            if line is not None:
                self._xfr_t1_fast(s, raw, bslot, bseq, now, line)
                return
        try:
            msg = C.decode_bulk_out(raw, C.CCID_HEADER_LENGTH + self.max_data)
        except C.CCIDError as e:
            code = e.code if isinstance(e.code, int) and 0 < e.code < 0x80 else 1
            self._immediate(t, bslot, bseq, C.COMMAND_STATUS_FAILED, code)
            return
        handler = _HANDLERS[t]
        start = now + self.timing["firmware_us"]
        wtx = faults.take_wtx(bslot) if faults.wtx else 0
        try:
            result = handler(self, s, msg)
            cmd_status = C.COMMAND_STATUS_NO_ERROR
            bError = 0
            b9, data, card_us = result
        except _Failed as f:
            cmd_status = C.COMMAND_STATUS_FAILED
            bError = f.bError
            b9, data, card_us = 0, b"", f.delay_us
        rtype = C.RESPONSE_TYPE[t]
        done = start + int(card_us)
        # CCID §6.2.6 / §6.2.1: time extension answers while the card works
        interval = self.timing["wtx_interval_us"]
        k = 1
        while k * interval < card_us and k < 10000:
            self._push(start + k * interval, self._wtx_answer(rtype, s, bseq), bslot)
            k += 1
        for i in range(wtx):
            self._push(start + (i + 1) * T.FRAME_US, self._wtx_answer(rtype, s, bseq), bslot)
        if wtx:
            done += (wtx + 1) * T.FRAME_US
        s.busy_until = done
        out = struct.pack("<BIBBBBB", rtype, len(data), bslot, bseq,
                          C.make_status(s.icc_status(), cmd_status), bError, b9) + data
        self._push(T.next_frame(done), out, bslot)

    def _t1_fast_ok(self, s, raw):
        """The line (protocol, Fi, Di) when the XfrBlock ``raw`` is a plain T=1
        block at TPDU level with nothing armed that could change its fate: the
        case _xfr_t1_fast answers exactly as the general path (decode,
        _cmd_xfr_block, _xfr_tpdu) would; else None. No side effects."""
        faults = self.faults
        if faults.wtx or faults.remove_next or faults.t1_faults or faults.muted:
            return None
        if s.card is None or not s.powered or s.clock_stopped or s.t1 is None:
            return None
        if self.descriptor.exchange_bits != CD.EXCHANGE_TPDU or \
                self.quirks["max_working_rate_bps"] is not None:
            return None
        if s.pps_allowed and raw[10:11] == b"\xFF":
            return None
        line = _line_of(s.params)
        if line[0] == 1 and line == s.card_line:
            return line
        return None

    def _xfr_t1_fast(self, s, raw, bslot, bseq, now, line):
        """PC_to_RDR_XfrBlock (§6.1.4) carrying one T=1 block, when _t1_fast_ok
        said so: the same card call, timing and answer as the general path."""
        data = bytes(raw[C.CCID_HEADER_LENGTH:])
        s.pps_allowed = False
        start = now + self.timing["firmware_us"]
        protocol, fi, di = line
        n = s.atr_info.n
        resp = s.t1.receive_block(data)
        us = T.block_t1_us(len(data), fi, di, s.clock_hz, n)
        if resp is None:
            cmd_status = C.COMMAND_STATUS_FAILED
            bError = C.ICC_MUTE
            resp = b""
            card_us = int(us) + self._wait_us(s, raw[7])
        else:
            resp = bytes(resp)
            if len(data) > 1 and not data[1] & 0x80 and not data[1] & 0x20:
                us += self._card_us(s)           # a whole command reached the card
            us += T.block_t1_us(len(resp), fi, di, s.clock_hz, n)
            cmd_status = C.COMMAND_STATUS_NO_ERROR
            bError = 0
            card_us = int(us)
        done = start + card_us
        interval = self.timing["wtx_interval_us"]
        k = 1
        while k * interval < card_us and k < 10000:
            self._push(start + k * interval,
                       self._wtx_answer(C.RDR_to_PC_DataBlock, s, bseq), bslot)
            k += 1
        s.busy_until = done
        out = struct.pack("<BIBBBBB", C.RDR_to_PC_DataBlock, len(resp), bslot, bseq,
                          C.make_status(s.icc_status(), cmd_status), bError, 0) + resp
        self._push(T.next_frame(done), out, bslot)

    def _wtx_answer(self, rtype, s, bseq):
        return struct.pack("<BIBBBBB", rtype, 0, s.index, bseq,
                           C.make_status(s.icc_status(), C.COMMAND_STATUS_TIME_EXTENSION), 1, 0)

    # -- bulk-IN / interrupt-IN -----------------------------------------------------------
    def bulk_in(self, max_len, timeout_ms=None):
        """The next answer (or the next ``max_len`` bytes of it)."""
        with self._lock:        # as @_locked, one call less on the hot path
            return self._bulk_in(max_len, timeout_ms)

    def _bulk_in(self, max_len, timeout_ms):
        if self.gone:
            raise ReaderGone()
        if self.faults.stalls and self.faults.take_stall("bulk_in"):
            raise ReaderStall("bulk-IN stalled")
        if self._current is None:
            wait = timeout_ms if timeout_ms else MAX_WAIT_MS
            deadline = self.clock.now_us() + int(wait) * 1000
            if not self._queue or self._queue[0][0] > deadline:
                self.clock.advance_to(deadline)
                raise ReaderTimeout("no answer within %d ms" % wait)
            t_ready = self._queue[0][0]
            self.clock.advance_to(t_ready)
            stale = self.faults.take_stale() if self.faults.stale > 0 else None
            if stale == "duplicate" and self._last_answer is not None:
                answer = self._last_answer
            else:
                answer = heapq.heappop(self._queue)[2]
                if stale == "replace":
                    old = self._last_answer[6] if self._last_answer else (answer[6] - 1) & 0xFF
                    answer = answer[:6] + bytes((old,)) + answer[7:]
                else:
                    self._last_answer = answer
            end = self.bus.transfer(self.now(), T.usb_bulk_us(len(answer),
                                                              self.usb["wMaxPacketSize"]))
            self.clock.advance_to(end)
            self.log.append((self.now(), "<-", answer[0], answer[5], answer[6]))
            self._current = answer
            self._current_pos = 0
        cur = self._current
        n = int(max_len)
        if n < 1:
            n = 1
        pos = self._current_pos
        if pos == 0 and n >= len(cur) and type(cur) is bytes:
            # the whole answer in one read (the usual case)
            self._current = None
            return cur
        chunk = cur[pos:pos + n]
        self._current_pos = pos + len(chunk)
        if self._current_pos >= len(cur):
            self._current = None
        return chunk

    @_locked
    def interrupt_in(self, max_len, timeout_ms=None):
        """The next NotifySlotChange / HardwareError message."""
        self._alive()
        if not self.has_interrupt:
            raise ReaderStall("%s has no interrupt endpoint" % self.profile_id)
        if self.faults.take_stall("interrupt_in"):
            raise ReaderStall("interrupt-IN stalled")
        if not self._interrupts:
            wait = timeout_ms if timeout_ms else MAX_WAIT_MS
            self.clock.advance(int(wait) * 1000)
            raise ReaderTimeout("no interrupt message within %d ms" % wait)
        t, msg = self._interrupts.pop(0)
        self.clock.advance_to(T.next_frame(max(t, self.now())))
        return msg[:max(1, int(max_len))]

    def interrupt_pending(self):
        """False only when an interrupt-IN read now would find nothing and change
        nothing but the emulated clock: plugged in, an interrupt endpoint, no
        stall armed on it and no message queued. Hosts use it to skip a read
        that would only time out; True means "read to find out"."""
        return bool(self._interrupts) or self.gone or not self.usb["interrupt"] or \
            self.faults.stalls.get("interrupt_in", 0) > 0

    def pending_answers(self):
        return len(self._queue) + (1 if self._current is not None else 0)

    # -- Abort (CCID §5.3.1 and §6.1.13) ---------------------------------------------
    def _abort_control(self, slot, seq):
        s = self.slots[slot]
        s.abort_seq = seq
        now = self.now()
        if s.busy_until > now:
            # the command in flight ends now with CMD_ABORTED
            kept = []
            for entry in self._queue:
                if entry[3] == slot and entry[0] > now:
                    continue
                kept.append(entry)
            heapq.heapify(kept)
            self._queue = kept
            s.busy_until = now
            # the command in flight is the last one the slot took
            last = s.last_cmd
            if last is not None:
                t_cmd, bseq = last
                out = struct.pack("<BIBBBBB", C.RESPONSE_TYPE.get(t_cmd, 0x81), 0, slot, bseq,
                                  C.make_status(s.icc_status(), C.COMMAND_STATUS_FAILED),
                                  C.CMD_ABORTED, 0)
                self._push(T.next_frame(now), out, slot)
        if s.abort_bulk is not None and s.abort_bulk == seq:
            self._finish_abort(s, seq)

    def _abort_bulk(self, s, seq):
        if s.abort_seq is not None and s.abort_seq == seq:
            self._finish_abort(s, seq)
        else:
            # §5.3.1: wait for the matching ABORT request
            s.abort_bulk = seq

    def _finish_abort(self, s, seq):
        s.abort_seq = None
        s.abort_bulk = None
        s.chain_in = s.chain_out = None
        out = struct.pack("<BIBBBBB", C.RDR_to_PC_SlotStatus, 0, s.index, seq,
                          C.make_status(s.icc_status(), C.COMMAND_STATUS_NO_ERROR), 0, 0)
        self._push(T.next_frame(self.now() + self.timing["firmware_us"]), out, s.index)

    # -- helpers for the handlers ---------------------------------------------------
    def _need_card(self, s, active=True):
        if s.card is None:
            raise _Failed(C.ICC_MUTE)
        if active and not s.powered:
            raise _Failed(C.ICC_MUTE)

    def _line(self, s):
        """(protocol, Fi, Di) the reader drives the line with."""
        return _line_of(s.params)

    def _rate(self, s):
        if s.data_rate is not None:
            return s.data_rate
        protocol, fi, di = self._line(s)
        return T.data_rate_bps(fi, di, s.clock_hz)

    def _wait_us(self, s, bBWI=0):
        """How long the reader waits for a mute card: WT (T=0) or BWT (T=1)."""
        protocol, fi, di = self._line(s)
        if protocol == 1:
            bwi = s.params.BWI
            mult = bBWI if bBWI else 1
            return int(iso7816.bwt_us(bwi, fi, di, s.clock_hz)) * mult
        wi = s.params.bWaitingIntegerT0 or 10
        return int(iso7816.wt_us(wi, fi, s.clock_hz))

    def _card_us(self, s):
        return int(getattr(s.card, "processing_us", self.timing["card_processing_us"]))

    def _check_exchange(self, s, bBWI=0):
        """Common checks before bytes go to the card; raises _Failed."""
        self._need_card(s)
        if self.faults.remove_next and self.faults.take_remove(s.index):
            self._drop_card(s.index)
            raise _Failed(C.ICC_MUTE, self._wait_us(s, bBWI) // 2)
        if s.index in self.faults.muted:
            raise _Failed(C.ICC_MUTE, self._wait_us(s, bBWI))
        if s.clock_stopped:
            raise _Failed(C.ICC_MUTE, self._wait_us(s, bBWI))
        cap = self.quirks["max_working_rate_bps"]
        if cap is not None and self._rate(s) > cap:
            # the AU9560 defect: exchanges above ~200 kbit/s fail, and the
            # reader deactivates the card (libccid's trace shows bStatus 41 FB)
            s.powered = False
            raise _Failed(C.HW_ERROR, self._wait_us(s, bBWI))

    def _char_us(self, s):
        protocol, fi, di = self._line(s)
        return T.char_time_us(fi, di, s.clock_hz, protocol, s.atr_info.n if s.atr_info else 0)

    # -- PC_to_RDR_IccPowerOn (§6.1.1) ------------------------------------------------------
    def _cmd_power_on(self, s, msg):
        self._need_card(s, active=False)
        sel = msg.bPowerSelect
        vs = self.descriptor.bVoltageSupport
        classes = self._card_classes(s)
        if sel == 0:
            if not self.descriptor.auto_voltage:
                raise _Failed(7)      # bPowerSelect not supported
            # ISO/IEC 7816-3 §6.2.4: start with the lowest class both support
            chosen = 0
            for v, cls in ((3, "C"), (2, "B"), (1, "A")):
                if vs & (1 << (v - 1)) and cls in classes:
                    chosen = v
                    break
            if not chosen:
                raise _Failed(C.ICC_CLASS_NOT_SUPPORTED)
            sel = chosen
        elif sel > 3 or not vs & (1 << (sel - 1)):
            raise _Failed(7)
        s.clock_hz = self.descriptor.dwDefaultClock * 1000
        activation_us = int(ATR_DELAY_CYCLES * 1000000 / s.clock_hz)
        if self.faults.take_overcurrent(s.index):
            # §6.3.2: the reader reports the overcurrent on the interrupt pipe
            s.powered = False
            if self.has_interrupt:
                err = C.HardwareError(s.index, msg.bSeq, C.HARDWARE_ERROR_OVERCURRENT)
                self._interrupts.append((self.now(), err.to_bytes()))
            raise _Failed(C.HW_ERROR, activation_us)
        if "ABC"[sel - 1] not in classes or s.index in self.faults.muted:
            s.powered = False
            raise _Failed(C.ICC_MUTE, activation_us + 20000)
        card = s.card
        if s.powered and hasattr(card, "power_off"):
            card.power_off()
        if hasattr(card, "power_on"):
            card.power_on()
        atr = bytes(card.atr)
        try:
            if self.quirks["contactless"]:
                atr = pseudo_atr(parse_atr(atr).historical)
            info = parse_atr(atr)
        except ATRError as e:
            # CCID §6.2.6: no ATR at all reads as a mute card; a TS neither 3B nor
            # 3F as BAD_ATR_TS (ISO/IEC 7816-3 §8.1); the card stays unpowered
            s.powered = False
            raise _Failed(C.ICC_MUTE if e.name == "ATR_EMPTY" else C.BAD_ATR_TS,
                          activation_us + 20000)
        if info.tck_ok is False:
            # ISO/IEC 7816-3 §8.2.5: TCK makes the XOR of T0..TCK zero
            s.powered = False
            raise _Failed(C.BAD_ATR_TCK, activation_us)
        s.atr = atr
        s.atr_info = info
        s.powered = True
        s.voltage = sel
        s.clock_stopped = False
        s.data_rate = None
        s.chain_in = s.chain_out = None
        self._default_params(s)
        s.pps_allowed = True
        s.t0 = T0Card(card)
        # a card with several logical cards behind its T=1 NADs (the eSIM's
        # ``ports``: NAD -> card) is reached through them (ISO/IEC 7816-3 §11.3.2.1)
        ports = getattr(card, "ports", None)
        t1_target = ports if isinstance(ports, dict) and ports else card
        s.t1 = T1Card(t1_target, ifsc=info.ifsc or 32, edc=info.edc or "LRC") \
            if 1 in info.protocols else None
        line = T.etu_us(iso7816.FD, iso7816.DD, s.clock_hz) * 12 * len(atr)
        return 0, atr, activation_us + int(line)

    def _card_classes(self, s):
        cls = getattr(s.card, "classes", None)
        if cls is None:
            try:
                cls = parse_atr(bytes(s.card.atr)).classes
            except ATRError:
                cls = None          # power-on answers the bError (_cmd_power_on)
        if not cls:
            cls = ("A", "B", "C")
        return tuple(cls)

    def _default_params(self, s):
        """Parameters right after the ATR: Fd / Dd, the first protocol offered
        that the reader has (or the TA2 specific mode), ATR values for the
        rest (§6.1.7)."""
        info = s.atr_info
        offered = [p for p in info.protocols if self.descriptor.dwProtocols & (1 << p)]
        protocol = (offered or info.protocols or [0])[0]
        fi_di = 0x11
        card_fi, card_di = iso7816.FD, iso7816.DD
        if info.specific_mode is not None:
            protocol = info.specific_mode["protocol"]
            if not info.specific_mode["implicit"] and info.fi and info.di:
                fi_di = (info.fi_code << 4) | info.di_code
                card_fi, card_di = info.fi, info.di
        if protocol not in (0, 1):
            protocol = 0
        if protocol == 1:
            s.params = C.T1Parameters(bmFindexDindex=fi_di,
                                      bmTCCKST1=0x10 | (1 if info.edc == "CRC" else 0),
                                      bGuardTimeT1=info.n,
                                      bmWaitingIntegersT1=((info.bwi or 4) << 4) | (info.cwi or 13),
                                      bIFSC=info.ifsc or 32)
        else:
            s.params = C.T0Parameters(bmFindexDindex=fi_di, bGuardTimeT0=info.n,
                                      bWaitingIntegerT0=info.wi or 10)
        s.card_line = (protocol, card_fi, card_di)

    # -- PC_to_RDR_IccPowerOff (§6.1.2) / GetSlotStatus (§6.1.3) ----------------------------
    def _cmd_power_off(self, s, msg):
        if s.card is not None and s.powered and hasattr(s.card, "power_off"):
            s.card.power_off()
        s.powered = False
        s.t0 = s.t1 = None
        return self._clock_status(s), b"", 0

    def _clock_status(self, s):
        return 1 if (s.powered and s.clock_stopped) else 0

    def _cmd_slot_status(self, s, msg):
        return self._clock_status(s), b"", 0

    # -- PC_to_RDR_XfrBlock (§6.1.4) -------------------------------------------------------------
    def _cmd_xfr_block(self, s, msg):
        level = self.descriptor.exchange_bits
        if level == CD.EXCHANGE_EXTENDED_APDU:
            return self._xfr_extended(s, msg)
        self._check_exchange(s, msg.bBWI)
        data = msg.abData
        if level == CD.EXCHANGE_TPDU:
            return self._xfr_tpdu(s, msg, data)
        resp, us = self._apdu_to_card(s, data, short_only=True)
        return 0, resp, us

    def _xfr_tpdu(self, s, msg, data):
        if s.pps_allowed and data[:1] == b"\xFF":
            # ISO/IEC 7816-3 §9: PPS right after the ATR, passed through to the card
            s.pps_allowed = False
            resp, line = card_pps_response(s.atr_info, data)
            chars = (len(data) + (len(resp) if resp else 0)) * self._char_us(s)
            if resp is None:
                raise _Failed(C.ICC_MUTE, self._wait_us(s, msg.bBWI) + int(chars))
            s.card_line = line
            self._card_pps_event(s, line)
            return 0, resp, int(chars)
        s.pps_allowed = False
        line = _line_of(s.params)
        if line != s.card_line:
            # reader and card disagree on protocol or speed: the card hears noise
            raise _Failed(C.ICC_MUTE, self._wait_us(s, msg.bBWI))
        protocol, fi, di = line
        n = s.atr_info.n
        if protocol == 0:
            resp = s.t0.process_tpdu(data)
            if resp is None:
                raise _Failed(C.ICC_MUTE, self._wait_us(s))
            us = T.tpdu_t0_us(len(data), len(resp), fi, di, s.clock_hz, n) + self._card_us(s)
            return 0, resp, int(us)
        if s.t1 is None:
            raise _Failed(C.ICC_MUTE, self._wait_us(s, msg.bBWI))
        armed = self.faults.t1_for(s.index)
        if armed:
            link = FaultLink(s.t1, armed)
            resp = link(data, self._wait_us(s, msg.bBWI))
            for _, kind, to in link.fired:
                self.faults.fired.append(("t1_" + kind, (s.index, to)))
        else:
            # no T=1 fault armed: what FaultLink does then, without building one
            resp = s.t1.receive_block(bytes(data))
            if resp is not None:
                resp = bytes(resp)
        us = T.block_t1_us(len(data), fi, di, s.clock_hz, n)
        if resp is None:
            raise _Failed(C.ICC_MUTE, int(us) + self._wait_us(s, msg.bBWI))
        if len(data) > 1 and not data[1] & 0x80 and not data[1] & 0x20:
            us += self._card_us(s)           # a whole command reached the card
        us += T.block_t1_us(len(resp), fi, di, s.clock_hz, n)
        return 0, resp, int(us)

    def _apdu_to_card(self, s, apdu, short_only):
        """APDU level: the reader runs the card protocol itself (§6.1.4)."""
        try:
            cmd = CommandAPDU.parse(apdu)
        except APDUError:
            raise _Failed(C.CCID_HEADER_LENGTH)      # abData is not an APDU
        if short_only and cmd.extended:
            raise _Failed(C.CCID_HEADER_LENGTH)
        s.pps_allowed = False
        # an auto-PPS reader keeps its line in step with the card itself
        if not self.descriptor.auto_pps and self._line(s) != s.card_line:
            raise _Failed(C.ICC_MUTE, self._wait_us(s))
        if self.quirks["contactless"] and cmd.cla == 0xFF and cmd.ins == 0xCA:
            return self._get_data_picc(s, cmd), self.timing["firmware_us"]
        resp = bytes(s.card.process_apdu(bytes(apdu)))
        protocol, fi, di = self._line(s)
        us = T.apdu_line_us(len(apdu), len(resp), protocol, fi, di, s.clock_hz,
                            s.atr_info.ifsc or 32, s.atr_info.n) + self._card_us(s)
        return resp, int(us)

    def _get_data_picc(self, s, cmd):
        """PC/SC part 3 §3.2.2.1.3 GET DATA (FF CA), answered by the reader:
        P1 00 the PICC's UID (``card.uid``; a 7-byte one is chosen when the card
        has none), P1 01 the historical bytes of its ATS. Le shorter than the
        data: 6C XX; longer (Le 00 aside): the data and 62 82; P2 other than 00
        or another P1: 6A 81."""
        if cmd.p2 != 0 or cmd.p1 not in (0, 1):
            return b"\x6A\x81"
        if cmd.p1 == 0:
            data = bytes(getattr(s.card, "uid", b"\x04\x63\x63\x69\x64\x6B\x74"))
        else:
            data = s.atr_info.historical if s.atr_info is not None else b""
        if cmd.ne is not None and cmd.ne != 256:
            if cmd.ne < len(data):
                return bytes((0x6C, len(data)))
            if cmd.ne > len(data):
                return data + b"\x62\x82"
        return data + b"\x90\x00"

    def _xfr_extended(self, s, msg):
        # §6.1.4: wLevelParameter 0 whole APDU, 1 begins, 3 continues, 2 ends a
        # command; 10h asks for the next part of a response. §6.2.1:
        # bChainParameter 0 whole, 1 begins, 3 continues, 2 ends, 10h "send more".
        lp = msg.wLevelParameter
        data = bytes(msg.abData)
        if lp == C.CHAIN_EMPTY_CONTINUE:
            if s.chain_out is None:
                raise _Failed(8)          # offset of wLevelParameter
            return self._send_part(s, 0)
        if lp in (C.CHAIN_BEGIN, C.CHAIN_CONTINUE, C.CHAIN_END):
            if lp == C.CHAIN_BEGIN:
                s.chain_in = bytearray()
            elif s.chain_in is None:
                raise _Failed(8)
            s.chain_in.extend(data)
            if len(s.chain_in) > 65544:
                s.chain_in = None
                raise _Failed(C.CCID_HEADER_LENGTH)
            if lp != C.CHAIN_END:
                self._need_card(s)
                us = len(data) * 2       # the reader only buffers
                return C.CHAIN_EMPTY_CONTINUE, b"", us
            data = bytes(s.chain_in)
            s.chain_in = None
        elif lp != 0:
            raise _Failed(8)
        self._check_exchange(s, msg.bBWI)
        s.chain_out = None
        s.out_sent = 0
        resp, us = self._apdu_to_card(s, data, short_only=False)
        if len(resp) <= self.max_data:
            return 0, resp, us
        s.chain_out = resp
        return self._send_part(s, us)

    def _send_part(self, s, us):
        part = s.chain_out[:self.max_data]
        left = s.chain_out[self.max_data:]
        first = s.out_sent == 0
        if left:
            s.chain_out = left
            s.out_sent += len(part)
            b9 = C.CHAIN_BEGIN if first else C.CHAIN_CONTINUE
        else:
            s.chain_out = None
            s.out_sent = 0
            b9 = 0 if first else C.CHAIN_END
        return b9, part, us

    # -- Parameters (§6.1.5 - §6.1.7) ---------------------------------------------------------
    def _cmd_get_parameters(self, s, msg):
        self._need_card(s, active=False)
        if s.params is None:
            raise _Failed(C.ICC_MUTE)
        return s.params.bProtocolNum, s.params.to_bytes(), 0

    def _cmd_reset_parameters(self, s, msg):
        self._need_card(s)
        card_line = s.card_line
        self._default_params(s)
        s.card_line = card_line          # the card keeps what was negotiated
        if self.descriptor.auto_pps:
            s.card_line = _line_of(s.params)
        return s.params.bProtocolNum, s.params.to_bytes(), 0

    def _cmd_set_parameters(self, s, msg):
        self._need_card(s)
        info = s.atr_info
        proto = msg.bProtocolNum
        if proto not in (0, 1) or not self.descriptor.dwProtocols & (1 << proto) \
                or proto not in info.protocols:
            raise _Failed(7)               # bProtocolNum
        p = msg.abProtocolDataStructure
        if p is None:
            raise _Failed(1)
        base = C.CCID_HEADER_LENGTH
        fi = iso7816.FI_TABLE[p.Findex]
        di = iso7816.DI_TABLE[p.Dindex]
        card_fi = info.fi or iso7816.FD
        card_di = info.di or iso7816.DD
        if fi is None or di is None or fi > card_fi or di > card_di:
            raise _Failed(base)            # bmFindexDindex beyond the card
        rate = T.data_rate_bps(fi, di, s.clock_hz)
        if rate > self.descriptor.dwMaxDataRate * 1.02:
            raise _Failed(base)            # beyond the reader
        if proto == 0:
            if p.bmTCCKST0 not in (0x00, 0x02):
                raise _Failed(base + 1)
            if p.bClockStop > 3:
                raise _Failed(base + 4)
        else:
            if p.bmTCCKST1 not in (0x10, 0x11, 0x12, 0x13):
                raise _Failed(base + 1)
            if p.BWI > 9:
                raise _Failed(base + 3)
            if p.bClockStop > 3:
                raise _Failed(base + 4)
            if not 1 <= p.bIFSC <= 254:
                raise _Failed(base + 5)
            if p.bNadValue and not self.descriptor.nad_other_than_0:
                raise _Failed(base + 6)
        s.params = p
        us = 0
        if self.descriptor.auto_pps and (proto, fi, di) != s.card_line:
            # dwFeatures 80h/40h: the reader makes the PPS itself (ISO/IEC 7816-3 §9)
            req = bytearray((0xFF, 0x10 | proto, (p.Findex << 4) | p.Dindex))
            req.append(req[0] ^ req[1] ^ req[2])
            resp, line = card_pps_response(info, req)
            us = int(8 * self._char_us(s))
            if resp is None or line != (proto, fi, di):
                raise _Failed(base, us)
            s.card_line = line
            s.pps_allowed = False
            self._card_pps_event(s, line)
        return proto, p.to_bytes(), us

    @staticmethod
    def _card_pps_event(s, line):
        """Tell the card model about a PPS it answered (its session log)."""
        event = getattr(s.card, "event", None)
        if event is not None:
            protocol, fi, di = line
            event("pps", protocol=protocol, fi=fi, di=di)

    # -- Escape (§6.1.8), IccClock (§6.1.9), T0APDU (§6.1.10), Mechanical (§6.1.12) -------
    def _cmd_escape(self, s, msg):
        answer = self.profile.get("escape", {}).get(bytes(msg.abData))
        if answer is None:
            raise _Failed(C.CMD_NOT_SUPPORTED)
        return 0, answer, 0

    def _cmd_icc_clock(self, s, msg):
        if not self.descriptor.clock_stop:
            raise _Failed(C.CMD_NOT_SUPPORTED)
        self._need_card(s)
        if msg.bClockCommand == 0:
            s.clock_stopped = False
        elif msg.bClockCommand == 1:
            s.clock_stopped = True
        else:
            raise _Failed(7)
        return self._clock_status(s), b"", 0

    def _cmd_t0apdu(self, s, msg):
        if not self.descriptor.apdu_level:
            raise _Failed(C.CMD_NOT_SUPPORTED)
        if msg.bmChanges & 0x01:
            self.ccid["bClassGetResponse"] = msg.bClassGetResponse
        if msg.bmChanges & 0x02:
            self.ccid["bClassEnvelope"] = msg.bClassEnvelope
        return self._clock_status(s), b"", 0

    def _cmd_mechanical(self, s, msg):
        if not self.descriptor.dwMechanical:
            raise _Failed(C.CMD_NOT_SUPPORTED)
        if msg.bFunction not in (1, 2, 3, 4, 5):
            raise _Failed(7)
        return self._clock_status(s), b"", 0

    def _cmd_abort(self, s, msg):
        # never reached: _command pairs PC_to_RDR_Abort with the ABORT request
        raise _Failed(C.CMD_NOT_SUPPORTED)

    # -- SetDataRateAndClockFrequency (§6.1.14) -------------------------------------------------
    def _cmd_set_rate(self, s, msg):
        self._need_card(s, active=False)
        clock = msg.dwClockFrequency
        rate = msg.dwDataRate
        if clock is None:
            raise _Failed(1)
        clocks = self.profile["clocks_khz"] or [self.descriptor.dwDefaultClock]
        if clock not in clocks:
            raise _Failed(C.CCID_HEADER_LENGTH)
        rates = self.profile["data_rates"]
        if rate > self.descriptor.dwMaxDataRate or (rates is not None and rate not in rates):
            raise _Failed(C.CCID_HEADER_LENGTH + 4)
        s.clock_hz = clock * 1000
        s.data_rate = rate
        return 0, struct.pack("<II", clock, rate), 0

    # -- Secure (§6.1.11): PIN verification and modification on the keypad ---------------------
    def _cmd_secure(self, s, msg):
        if not self.descriptor.bPINSupport or not self.quirks["keypad"]:
            raise _Failed(C.CMD_NOT_SUPPORTED)
        self._need_card(s)
        op = msg.bPINOperation
        st = msg.abPINDataStructure
        if op == C.PIN_VERIFICATION and not self.descriptor.pin_verification:
            raise _Failed(C.CMD_NOT_SUPPORTED)
        if op == C.PIN_MODIFICATION and not self.descriptor.pin_modification:
            raise _Failed(C.CMD_NOT_SUPPORTED)
        if op not in (C.PIN_VERIFICATION, C.PIN_MODIFICATION) or st is None:
            raise _Failed(C.CMD_NOT_SUPPORTED)
        timeout_us = (st.bTimeOut or 30) * 1000000
        header, template = self._pin_apdu_parts(st.abPINApdu)
        typing = 0
        if op == C.PIN_VERIFICATION:
            pin, typing = self._take_pin(s, st, timeout_us)
            data = self._format_pin(template, st, pin, 0)
        else:
            entries = []
            wanted = (1 if st.bConfirmPIN & 0x02 else 0) + 1 + (1 if st.bConfirmPIN & 0x01 else 0)
            for _ in range(wanted):
                pin, used = self._take_pin(s, st, timeout_us)
                typing += used
                entries.append(pin)
            if st.bConfirmPIN & 0x01 and entries[-1] != entries[-2]:
                raise _Failed(C.PIN_CANCELLED, typing)
            data = bytearray(template)
            if st.bConfirmPIN & 0x02:
                data = self._format_pin(data, st, entries[0], st.bInsertionOffsetOld)
                new = entries[1]
            else:
                new = entries[0]
            data = self._format_pin(data, st, new, st.bInsertionOffsetNew)
        apdu = bytes(header) + bytes((len(data),)) + bytes(data)
        # the PIN block is not kept beyond this command; the typed entries are
        # str and the APDU bytes are immutable: those the runtime frees alone
        data[:] = bytes(len(data))
        resp, us = self._pin_to_card(s, st, apdu)
        return 0, resp, typing + us

    @staticmethod
    def _pin_apdu_parts(ab):
        if len(ab) < 4:
            raise _Failed(C.CCID_HEADER_LENGTH + 1)
        header = ab[:4]
        template = bytearray(ab[5:]) if len(ab) > 4 else bytearray()
        return header, template

    def _take_pin(self, s, st, timeout_us):
        if not s.keypad:
            raise _Failed(C.PIN_TIMEOUT, timeout_us)
        entry = s.keypad.pop(0)
        if entry == "cancel":
            raise _Failed(C.PIN_CANCELLED, KEYPAD_ENTRY_US)
        if entry == "timeout":
            raise _Failed(C.PIN_TIMEOUT, timeout_us)
        if not entry.isdigit() or not st.min_pin_size <= len(entry) <= (st.max_pin_size or 16):
            # the keypad refuses the entry; the user gives up
            raise _Failed(C.PIN_TIMEOUT, timeout_us)
        return entry, KEYPAD_ENTRY_US

    def _format_pin(self, template, st, pin, insert_offset):
        """Insert ``pin`` into the APDU data as §6.1.11.4 describes.

        bmFormatString: b7 units of the position (0 bits, 1 bytes), b6-b3 PIN
        position, b2 justification (1 right), b1-b0 format (0 binary -
        one byte per digit, chosen reading -, 1 BCD, 2 ASCII).
        bmPINBlockString: b7-b4 bits of the PIN length field, b3-b0 PIN block
        size in bytes. bmPINLengthFormat: b4 units, b3-b0 position of the length.
        """
        fmt = st.bmFormatString
        unit = 8 if fmt & 0x80 else 1
        pos_bits = ((fmt >> 3) & 0x0F) * unit + insert_offset * 8
        fmt_kind = fmt & 0x03
        block = st.bmPINBlockString & 0x0F
        len_bits = st.bmPINBlockString >> 4
        if fmt_kind == 1:
            bits = [(int(c) >> (3 - i)) & 1 for c in pin for i in range(4)]
        elif fmt_kind == 2:
            bits = [(ord(c) >> (7 - i)) & 1 for c in pin for i in range(8)]
        else:
            bits = [(int(c) >> (7 - i)) & 1 for c in pin for i in range(8)]
        data = bytearray(template)
        need = max(block + insert_offset, (pos_bits + len(bits) + 7) // 8)
        if len(data) < need:
            data.extend(b"\xFF" * (need - len(data)))
        if fmt & 0x04 and block:
            pos_bits = (insert_offset + block) * 8 - len(bits)
        self._put_bits(data, pos_bits, bits)
        if len_bits:
            lunit = 8 if st.bmPINLengthFormat & 0x10 else 1
            lpos = (st.bmPINLengthFormat & 0x0F) * lunit + insert_offset * 8
            n = len(pin)
            self._put_bits(data, lpos, [(n >> (len_bits - 1 - i)) & 1 for i in range(len_bits)])
        return data

    @staticmethod
    def _put_bits(data, pos, bits):
        for i, b in enumerate(bits):
            p = pos + i
            byte, bit = p // 8, 7 - p % 8
            if byte >= len(data):
                raise _Failed(C.CCID_HEADER_LENGTH + 2)
            if b:
                data[byte] |= 1 << bit
            else:
                data[byte] &= ~(1 << bit) & 0xFF

    def _pin_to_card(self, s, st, apdu):
        level = self.descriptor.exchange_bits
        if level != CD.EXCHANGE_TPDU:
            return self._apdu_to_card(s, apdu, short_only=level == CD.EXCHANGE_SHORT_APDU)
        protocol, fi, di = self._line(s)
        if (protocol, fi, di) != s.card_line:
            raise _Failed(C.ICC_MUTE, self._wait_us(s))
        s.pps_allowed = False
        if protocol == 0:
            resp = s.t0.process_tpdu(apdu)
            if resp is None:
                raise _Failed(C.ICC_MUTE, self._wait_us(s))
            return resp, int(T.tpdu_t0_us(len(apdu), len(resp), fi, di, s.clock_hz)
                             + self._card_us(s))
        # §6.1.11: at TPDU level with T=1 the reader wraps the APDU in an I-block
        # whose NAD and PCB come from bTeoPrologue; LEN is the reader's.
        edc = s.t1.edc if s.t1 is not None else "LRC"
        pro = st.bTeoPrologue
        block = bytearray(3 + len(apdu) + edc_size(edc))
        block[0] = pro[0]
        block[1] = pro[1]
        block[2] = len(apdu)
        block[3:3 + len(apdu)] = apdu
        put_edc(block, 3 + len(apdu), edc)
        if s.t1 is None:
            raise _Failed(C.ICC_MUTE, self._wait_us(s))
        resp = s.t1.receive_block(bytes(block))
        if resp is None:
            raise _Failed(C.ICC_MUTE, self._wait_us(s))
        us = T.block_t1_us(len(block), fi, di, s.clock_hz) + \
            T.block_t1_us(len(resp), fi, di, s.clock_hz) + self._card_us(s)
        return resp, int(us)


_HANDLERS = {
    C.PC_to_RDR_IccPowerOn: EmulatedReader._cmd_power_on,
    C.PC_to_RDR_IccPowerOff: EmulatedReader._cmd_power_off,
    C.PC_to_RDR_GetSlotStatus: EmulatedReader._cmd_slot_status,
    C.PC_to_RDR_XfrBlock: EmulatedReader._cmd_xfr_block,
    C.PC_to_RDR_GetParameters: EmulatedReader._cmd_get_parameters,
    C.PC_to_RDR_ResetParameters: EmulatedReader._cmd_reset_parameters,
    C.PC_to_RDR_SetParameters: EmulatedReader._cmd_set_parameters,
    C.PC_to_RDR_Escape: EmulatedReader._cmd_escape,
    C.PC_to_RDR_IccClock: EmulatedReader._cmd_icc_clock,
    C.PC_to_RDR_T0APDU: EmulatedReader._cmd_t0apdu,
    C.PC_to_RDR_Secure: EmulatedReader._cmd_secure,
    C.PC_to_RDR_Mechanical: EmulatedReader._cmd_mechanical,
    C.PC_to_RDR_Abort: EmulatedReader._cmd_abort,
    C.PC_to_RDR_SetDataRateAndClockFrequency: EmulatedReader._cmd_set_rate,
}


def create_readers(profile_id, cards=None, clock=None, time_scale=0.0, bus=None,
                   serial_prefix=None):
    """The readers of a profile: one for a reader profile, ``count`` for a bank
    (e.g. sysmosimbank-96: 12 sysmoOCTSIM behind hubs, one bus and clock).

    ``cards`` maps (reader index, slot) -> card, or slot -> card for one reader.
    """
    bank = P.bank_of(profile_id)
    clock = clock if clock is not None else T.VirtualClock(time_scale)
    bus = bus if bus is not None else T.Bus(profile_id)
    cards = cards or {}
    if bank is None:
        return [EmulatedReader(profile_id, cards=cards, clock=clock, bus=bus)]
    out = []
    per = bank["ports_per_hub"]
    for i in range(bank["count"]):
        mine = {}
        for key in cards:
            if isinstance(key, tuple) and key[0] == i:
                mine[key[1]] = cards[key]
        serial = "%s%02d" % (serial_prefix or "SIMBANK-", i)
        path = (1, 1 + i // per, 1 + i % per)
        out.append(EmulatedReader(bank["member"], cards=mine, clock=clock, bus=bus,
                                  serial=serial, port_path=path))
    return out
