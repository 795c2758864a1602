"""An emulated GemPC Twin *serial* reader on a pseudo-terminal, for libccid.

libccid's serial driver (``libccidtwin.so``; reader.conf ``DEVICENAME
<tty>:GemPCTwin``) speaks CCID messages over RS-232, each wrapped as

    03 06 <CCID message> LRC        SYNC, ACK, the message, XOR of all before
    03 15 16                        NAK: "your frame was damaged, send again"
    50 02 / 50 03                   card movement (absent / present)
    80..FF                          a time request byte (the card still works)

The GemPC Twin echoes every host frame before its answer, so libccid reads
the echo first and then the reader's frame. On opening the port libccid
sends two Escape commands: ``02`` (firmware version; the reader must answer)
and ``01 01 01`` (card movement notified synchronously, after the host
command and before the answer). The serial GemPC Twin is a TPDU-level
reader (dwFeatures 00010230, dwMaxCCIDMessageLength 271, libccid's own
values for it): libccid runs T=0 / T=1 itself.

libccid knows a serial reader by the name after the colon in reader.conf
(compared without case; any other name means GemPCTwin) and takes its
descriptor from that name, not from the device. ``PERSONALITIES`` serves the
three this module emulates, with what libccid expects of each:

    GemPCTwin       1 slot, echo, no PIN pad, dwMaxDataRate 344086
    GemPCPinPad     1 slot, echo, bPINSupport 03 (verify and modify): pcscd
                    then offers FEATURE_VERIFY_PIN_DIRECT / MODIFY_PIN_DIRECT;
                    libccid 1.5.2 loads its display strings with an Escape
                    ``B2 A0 00 4D 4C`` + 10 x 16 bytes and gives the port up
                    when it fails, or when the echo of that 175-byte
                    command does not fit its 20-byte answer buffer (so
                    this one command is echoed with the answer's frame)
    GemCoreSIMPro   2 slots (bMaxSlotIndex 1), no echo, dwMaxDataRate 500000
                    (125000 on the second slot): pcscd lists two readers,
                    "<name> 00 00" and "<name> 00 01", over the one port

All three are TPDU-level readers (dwFeatures 00010230) whose CCID messages
are at most 271 bytes; libccid asks the firmware version (Escape ``02``)
and must get an answer, or it gives the port up. While the card works the
reader sends time-request bytes (80h..FFh), never CCID time-extension
frames: libccid reads one echo per ReadSerial call, so a second frame would
be taken for another echo.

This module has the frame codec (``encode_frame``, ``Decoder``,
``decode_frame``), the sans-I/O link (``GemPcTwinSerial``: host bytes in,
reader bytes out, over an ``emu.reader.EmulatedReader``) and a threaded
bridge on a pty (``SerialReaderBridge``: ``.device`` is the path for
reader.conf; it must exist before pcscd starts). Card movement is left to
libccid's GetSlotStatus polling; no 50 xx bytes are sent.
"""

import os
import select
import struct
import threading
import tty

from ccidkit.core import ccid as C
from ccidkit.core.errors import CcidkitError
from ccidkit.core.hexutil import PIN_INS, redact_apdu, to_hex
from ccidkit.emu.reader import EmulatedReaderError

SYNC = 0x03
CTRL_ACK = 0x06
CTRL_NAK = 0x15
NAK_FRAME = bytes((SYNC, CTRL_NAK, SYNC ^ CTRL_NAK))
SLOT_CHANGE = 0x50
TIME_REQUEST = 0x80       # the byte the reader sends while the card works

# libccid's serial GemPC Twin: dwMaxCCIDMessageLength 271 (header + 261 data).
MAX_CCID_MESSAGE = 271

# The Escape that sets card movement notification to synchronous mode.
ESCAPE_SYNC_NOTIFICATION = b"\x01\x01\x01"

# Bounds of the bridge loop.
POLL_INTERVAL = 0.1
MAX_ANSWERS_PER_COMMAND = 10000       # time extensions before the final answer
ANSWER_TIMEOUT_MS = 600000            # emulated time: the reader model always answers
MAX_TRACE = 4096                      # trace lines kept (the last ones)


def _personality(base, firmware, echo, **ccid):
    from ccidkit.emu import profiles as P
    prof = P.profile(base)
    prof = dict(prof)
    prof["ccid"] = dict(prof["ccid"])
    prof["ccid"].update(ccid)
    escape = dict(prof.get("escape", {}))
    escape[ESCAPE_FIRMWARE] = firmware
    prof["escape"] = escape
    return {"profile": prof, "echo": echo, "slots": prof["ccid"]["bMaxSlotIndex"] + 1,
            "display": bool(prof["ccid"]["bPINSupport"])}


ESCAPE_FIRMWARE = b"\x02"
# The PIN pad's display strings: B2 (load strings), A0 (memory), 00 (first
# byte), 4D 4C (magic), then 16-byte strings. libccid 1.5 gives the port up
# when the reader refuses it.
ESCAPE_LOAD_STRINGS = b"\xB2\xA0\x00\x4D\x4C"
DISPLAY_STRING = 16


def personality(name):
    """The serial reader libccid sees under ``name`` (GemPCTwin, GemPCPinPad,
    GemCoreSIMPro; any case): {"profile": a profile dict for EmulatedReader,
    "echo": bool, "slots": int, "display": bool (a PIN pad taking libccid's
    display strings), "name": the canonical name}. SerialLinkError
    SERIAL_PERSONALITY for another name."""
    for known in PERSONALITIES:
        if known.lower() == str(name).lower():
            p = PERSONALITIES[known]()
            p["name"] = known
            p["profile"]["id"] = "serial-" + known
            return p
    raise SerialLinkError("no serial reader called %r (known: %s)"
                          % (name, ", ".join(PERSONALITIES)), None, "SERIAL_PERSONALITY")


# The version strings are chosen; libccid only logs them ("Firmware: ...").
PERSONALITIES = {
    "GemPCTwin": lambda: _personality("gemalto-pctwin", b"GemTwin V1.10", True),
    "GemPCPinPad": lambda: _personality("pinpad", b"GemPC Pinpad V1.00", True,
                                        wLcdLayout=0),
    "GemCoreSIMPro": lambda: _personality("gemalto-pctwin", b"GemCore SIM Pro V1.00", False,
                                          bMaxSlotIndex=1, dwMaxDataRate=500000),
}


def make_serial_reader(name, cards=None):
    """(EmulatedReader, echo) for the personality ``name`` with ``cards`` (slot -> card).

    The reader's ``serial_personality`` is ``personality(name)``: a
    SerialReaderBridge on it takes echo and display handling from there."""
    from ccidkit.emu.reader import EmulatedReader
    p = personality(name)
    reader = EmulatedReader(p["profile"], cards=cards or {})
    reader.serial_personality = p
    return reader, p["echo"]


class SerialLinkError(CcidkitError):
    """Malformed GemPC Twin serial traffic or a bridge failure.

    ``name``: SERIAL_BAD_LRC (a frame whose LRC does not match), SERIAL_TOO_LONG
    (a CCID message longer than the link's maximum), SERIAL_TRUNCATED
    (``decode_frame`` given an incomplete frame or more than one), SERIAL_NOT_CCID
    (``decode_frame`` given something other than an ACK frame), SERIAL_PTY
    (the pseudo-terminal could not be made), SERIAL_PERSONALITY (a reader
    name libccid's serial driver does not know). ``code``: the offending byte
    or length, when there is one.
    """


def lrc(data):
    """XOR of all bytes."""
    x = 0
    for b in data:
        x ^= b
    return x


def encode_frame(ccid_message, max_message=MAX_CCID_MESSAGE):
    """``03 06 <message> LRC``; SerialLinkError for a message over the maximum
    or shorter than a CCID header."""
    msg = bytes(ccid_message)
    if len(msg) < C.CCID_HEADER_LENGTH:
        raise SerialLinkError("a CCID message has at least 10 bytes, not %d" % len(msg),
                              len(msg), "SERIAL_TRUNCATED")
    if len(msg) > max_message:
        raise SerialLinkError("CCID message of %d bytes exceeds %d" % (len(msg), max_message),
                              len(msg), "SERIAL_TOO_LONG")
    head = bytes((SYNC, CTRL_ACK)) + msg
    return head + bytes((lrc(head),))


class SerialEvent:
    """One decoded item: ``kind`` is "ccid" (``data`` = the CCID message),
    "nak", "slot_change" (``data`` = the state byte), "time_request" (``data``
    = the byte), "bad_lrc" / "too_long" (``data`` = the bytes dropped) or
    "noise" (bytes that start no frame, dropped)."""

    def __init__(self, kind, data=b""):
        self.kind = kind
        self.data = bytes(data)

    def __eq__(self, other):
        return isinstance(other, SerialEvent) and (self.kind, self.data) == (other.kind,
                                                                               other.data)

    def __repr__(self):
        return "SerialEvent(%s, %s)" % (self.kind, to_hex(self.data))


class Decoder:
    """Incremental decoder of the serial byte stream, either direction.

    Never raises: damage comes out as "bad_lrc", "too_long" or "noise"
    events and the decoder resynchronises on the next SYNC byte. A length
    above ``max_message`` is refused from the header, before its data is
    waited for.
    """

    def __init__(self, max_message=MAX_CCID_MESSAGE):
        self.max_message = max_message
        self._buf = bytearray()

    @property
    def pending(self):
        return len(self._buf)

    def feed(self, data):
        self._buf += data
        out = []
        noise = bytearray()
        buf = self._buf
        while buf:
            b = buf[0]
            if b == SYNC:
                if len(buf) < 2:
                    break
                if buf[1] == CTRL_NAK:
                    if len(buf) < 3:
                        break
                    self._flush(noise, out)
                    if buf[2] == SYNC ^ CTRL_NAK:
                        out.append(SerialEvent("nak"))
                    else:
                        out.append(SerialEvent("bad_lrc", buf[:3]))
                    del buf[:3]
                    continue
                if buf[1] != CTRL_ACK:
                    noise.append(b)
                    del buf[:1]
                    continue
                if len(buf) < 2 + C.CCID_HEADER_LENGTH:
                    break
                (dw,) = struct.unpack_from("<I", buf, 3)
                size = C.CCID_HEADER_LENGTH + dw
                if size > self.max_message:
                    self._flush(noise, out)
                    out.append(SerialEvent("too_long", buf[:2 + C.CCID_HEADER_LENGTH]))
                    # resynchronise on a later SYNC
                    del buf[:1]
                    continue
                if len(buf) < 2 + size + 1:
                    break
                self._flush(noise, out)
                frame = bytes(buf[:2 + size + 1])
                del buf[:2 + size + 1]
                if lrc(frame) == 0:
                    out.append(SerialEvent("ccid", frame[2:-1]))
                else:
                    out.append(SerialEvent("bad_lrc", frame))
                continue
            if b == SLOT_CHANGE:
                if len(buf) < 2:
                    break
                self._flush(noise, out)
                out.append(SerialEvent("slot_change", buf[1:2]))
                del buf[:2]
                continue
            if b >= 0x80:
                self._flush(noise, out)
                out.append(SerialEvent("time_request", buf[:1]))
                del buf[:1]
                continue
            noise.append(b)
            del buf[:1]
        self._flush(noise, out)
        return out

    @staticmethod
    def _flush(noise, out):
        if noise:
            out.append(SerialEvent("noise", noise))
            del noise[:]


def decode_frame(data, max_message=MAX_CCID_MESSAGE):
    """The CCID message of exactly one ``03 06 ... LRC`` frame; SerialLinkError
    for anything else."""
    dec = Decoder(max_message)
    events = dec.feed(bytes(data))
    if dec.pending or len(events) != 1:
        raise SerialLinkError("not exactly one frame in %d bytes" % len(data), None,
                              "SERIAL_TRUNCATED")
    ev = events[0]
    if ev.kind == "ccid":
        return ev.data
    if ev.kind == "bad_lrc":
        raise SerialLinkError("LRC mismatch", lrc(ev.data), "SERIAL_BAD_LRC")
    if ev.kind == "too_long":
        raise SerialLinkError("CCID message longer than %d" % max_message, None,
                              "SERIAL_TOO_LONG")
    raise SerialLinkError("a %s, not a CCID frame" % ev.kind, None, "SERIAL_NOT_CCID")


def _is_time_extension(answer):
    return (len(answer) >= C.CCID_HEADER_LENGTH and
            C.command_status(answer[7]) == C.COMMAND_STATUS_TIME_EXTENSION)


def _trace_text(message):
    """Hex of a host CCID message for the trace, the data of a PIN command
    replaced by 2A bytes (core.hexutil.redact_apdu) so the line stays hex:
    an APDU-level XfrBlock, or a T=1 I-block carrying one (NAD PCB LEN, then
    the APDU, then the EDC)."""
    try:
        msg = C.decode_bulk_out(bytes(message))
    except C.CCIDError:
        return to_hex(message)
    if not C.carries_pin(msg):
        return to_hex(message)
    head = bytes(message[:C.CCID_HEADER_LENGTH])
    d = bytes(msg.abData)
    if len(d) > 5 and d[1] in PIN_INS:
        return to_hex(head + redact_apdu(d))
    n = d[2]
    return to_hex(head + d[:3] + redact_apdu(d[3:3 + n]) + d[3 + n:])


class GemPcTwinSerial:
    """Sans-I/O reader side of the serial link over an EmulatedReader.

    ``receive(data)`` takes host bytes and returns what the reader sends:
    for each good frame its echo, then a time-request byte (80h) for each
    CCID time extension and the reader's answer frame; for a damaged frame
    a NAK. The Escape ``01 01 01``
    (notification mode) is answered here, a matter of the serial link;
    every other message goes to ``reader.bulk_out`` / ``reader.bulk_in``.
    ``trace`` records "-> msg" / "<- msg" hex lines of CCID messages (the
    last MAX_TRACE of them).
    """

    def __init__(self, reader, echo=True, max_message=MAX_CCID_MESSAGE, log=None,
                 display=False):
        self.reader = reader
        self.echo = echo
        # a PIN pad's display: the strings libccid loads (Escape B2 A0 00 4D 4C)
        self.display = display
        self.display_strings = []
        self.max_message = max_message
        self.decoder = Decoder(max_message)
        self.log = log
        self.trace = []
        self.naks = 0
        self.noise = 0

    def _note(self, line):
        self.trace.append(line)
        if len(self.trace) > MAX_TRACE:
            del self.trace[:len(self.trace) - MAX_TRACE // 2]
        if self.log is not None:
            self.log(line)

    def receive(self, data):
        out = bytearray()
        for ev in self.decoder.feed(data):
            if ev.kind == "ccid":
                self._note("-> " + _trace_text(ev.data))
                answers = self._answers(ev.data)
                if self.echo:
                    echo = ev.data
                    if self._is_load_strings(ev.data) and answers:
                        # libccid 1.5.2 reads the echo into the buffer of the
                        # answer (20 bytes here) and gives the port up on the
                        # 175-byte echo of its own command ("Wrong value for
                        # frame size: 175"): this one is echoed with the
                        # answer's frame instead
                        echo = answers[-1]
                    out += encode_frame(echo, max(self.max_message, len(echo)))
                for answer in answers:
                    if _is_time_extension(answer):
                        # on the serial link the reader asks for more time
                        # with one byte 80..FF, not a CCID frame: libccid
                        # takes every frame after its echo as the answer
                        self._note("<- time request")
                        out.append(TIME_REQUEST)
                        continue
                    self._note("<- " + to_hex(answer))
                    out += encode_frame(answer, max(self.max_message, len(answer)))
            elif ev.kind in ("bad_lrc", "too_long"):
                self.naks += 1
                out += NAK_FRAME
            else:
                self.noise += 1
        return bytes(out)

    def _answers(self, msg):
        if (msg[0] == C.PC_to_RDR_Escape and msg[C.CCID_HEADER_LENGTH:]
                == ESCAPE_SYNC_NOTIFICATION):
            bslot, bseq = msg[5], msg[6]
            status = C.make_status(self._icc(bslot), C.COMMAND_STATUS_NO_ERROR)
            return [struct.pack("<BIBBBBB", C.RDR_to_PC_Escape, 0, bslot, bseq, status, 0, 0)]
        if self._is_load_strings(msg):
            text = msg[C.CCID_HEADER_LENGTH + len(ESCAPE_LOAD_STRINGS):]
            self.display_strings = [
                text[i:i + DISPLAY_STRING].decode("latin-1").rstrip()
                for i in range(0, len(text), DISPLAY_STRING)]
            bslot, bseq = msg[5], msg[6]
            status = C.make_status(self._icc(bslot), C.COMMAND_STATUS_NO_ERROR)
            return [struct.pack("<BIBBBBB", C.RDR_to_PC_Escape, 0, bslot, bseq, status, 0, 0)]
        answers = []
        try:
            self.reader.bulk_out(msg)
            for _ in range(MAX_ANSWERS_PER_COMMAND):
                answer = self.reader.bulk_in(65536, ANSWER_TIMEOUT_MS)
                answers.append(answer)
                if len(answer) < C.CCID_HEADER_LENGTH or \
                        C.command_status(answer[7]) != C.COMMAND_STATUS_TIME_EXTENSION:
                    break
        except EmulatedReaderError as e:
            # no answer (unplugged, stalled): libccid sees a read timeout
            self._note("!! " + str(e))
        return answers

    def _is_load_strings(self, msg):
        return (self.display and msg[0] == C.PC_to_RDR_Escape and msg[C.CCID_HEADER_LENGTH:
                C.CCID_HEADER_LENGTH + len(ESCAPE_LOAD_STRINGS)] == ESCAPE_LOAD_STRINGS)

    def _icc(self, bslot):
        slots = getattr(self.reader, "slots", [])
        if bslot < len(slots):
            return slots[bslot].icc_status()
        return 2


class SerialReaderBridge:
    """An EmulatedReader on a pseudo-terminal, served by a background thread.

    ``start()`` opens the pty (raw mode) and serves it; ``device`` is the
    slave's path for reader.conf (``serial_reader(bridge.device)`` in
    emu/pcscd.py). ``stop()`` ends the thread and closes the pty.
    """

    def __init__(self, reader, log=None, echo=None):
        self.reader = reader
        p = getattr(reader, "serial_personality", None) or {}
        if echo is None:
            echo = p.get("echo", True)
        self.link = GemPcTwinSerial(reader, echo=echo, log=log,
                                    display=p.get("display", False))
        self.device = None
        self.errors = []
        self._master = None
        self._slave = None
        self._stop = threading.Event()
        self._thread = None

    def start(self):
        try:
            master, slave = os.openpty()
        except OSError as e:
            raise SerialLinkError("cannot open a pty: %s" % e, None, "SERIAL_PTY")
        tty.setraw(slave)
        self._master, self._slave = master, slave
        self.device = os.ttyname(slave)
        self._thread = threading.Thread(target=self._run, name="serial-reader", daemon=True)
        self._thread.start()
        return self

    def stop(self, timeout=5.0):
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout)
            self._thread = None
        for fd in (self._master, self._slave):
            if fd is not None:
                try:
                    os.close(fd)
                except OSError:
                    pass
        self._master = self._slave = None

    def __enter__(self):
        return self.start()

    def __exit__(self, *exc):
        self.stop()

    def _run(self):
        fd = self._master
        while not self._stop.is_set():
            try:
                r, _, _ = select.select([fd], [], [], POLL_INTERVAL)
            except (OSError, ValueError):
                return
            if not r:
                continue
            try:
                data = os.read(fd, 4096)
            except OSError as e:
                # EIO while no one holds the slave open: wait for the next opener
                self._error(e)
                self._stop.wait(POLL_INTERVAL)
                continue
            if not data:
                continue
            reply = self.link.receive(data)
            try:
                self._write_all(fd, reply)
            except OSError as e:
                self._error(e)

    def _error(self, e):
        self.errors.append(e)
        if len(self.errors) > MAX_TRACE:
            del self.errors[:len(self.errors) - MAX_TRACE // 2]

    def _write_all(self, fd, data):
        # the pty buffer takes a few KiB at a time; bounded by the stop flag
        view = memoryview(data)
        while view and not self._stop.is_set():
            _, w, _ = select.select([], [fd], [], POLL_INTERVAL)
            if w:
                n = os.write(fd, view)
                view = view[n:]
