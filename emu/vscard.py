"""VSCard: the card side of QEMU's ``ccid-card-passthru`` device.

QEMU's emulated reader (``-device usb-ccid``) talks to a card through a
chardev carrying the VSCard protocol (QEMU's libcacard ``vscard_common.h``):
every message is a 12-byte big-endian header ``u32 type, u32 reader_id,
u32 length`` followed by ``length`` bytes of payload.

    type  name           payload
    1     Init           "VSCD", u32 version (2), u32 capabilities
    2     Error          u32 code (0 ok, 1 general, 2 cannot add readers,
                         3 card already inserted): acknowledges a request
    3     ReaderAdd      reader name (may be empty)
    4     ReaderRemove   -
    5     ATR            the ATR; inserts the card
    6     CardRemove     -
    7     APDU           a whole command APDU (QEMU -> card) or response (card -> QEMU)
    8     Flush          -
    9     FlushComplete  -

This module has the codec (``encode``, ``Decoder``, ``decode_init``...) and a
small threaded server, ``VSCardServer``, that serves any object with the card
interface (``.atr``, ``.process_apdu(apdu) -> bytes``, see docs/architecture.md)
on a unix socket (owner-only directory) or on loopback TCP. QEMU connects to
it as a client::

    -chardev socket,id=ccid0,path=SOCK,reconnect=1
    -device usb-ccid,bus=xhci.0 -device ccid-card-passthru,chardev=ccid0

(``VSCardServer.chardev_arg("ccid0")`` returns that chardev option.)
Power on/off never reach the card side: QEMU answers them from the ATR.
"""

import os
import select
import socket
import struct
import threading
import time

from ccidkit.core.errors import CcidkitError
from ccidkit.core.hexutil import ApduMasker, mask_apdu, redact_apdu, to_hex
from ccidkit.emu.sockets import listen_private

VSC_Init = 1
VSC_Error = 2
VSC_ReaderAdd = 3
VSC_ReaderRemove = 4
VSC_ATR = 5
VSC_CardRemove = 6
VSC_APDU = 7
VSC_Flush = 8
VSC_FlushComplete = 9

MESSAGE_NAMES = {
    VSC_Init: "Init", VSC_Error: "Error", VSC_ReaderAdd: "ReaderAdd",
    VSC_ReaderRemove: "ReaderRemove", VSC_ATR: "ATR", VSC_CardRemove: "CardRemove",
    VSC_APDU: "APDU", VSC_Flush: "Flush", VSC_FlushComplete: "FlushComplete",
}

# Error payload codes
VSC_SUCCESS = 0
VSC_GENERAL_ERROR = 1
VSC_CANNOT_ADD_MORE_READERS = 2
VSC_CARD_ALREAY_INSERTED = 3   # (sic) the protocol header's own spelling
ERROR_NAMES = {0: "VSC_SUCCESS", 1: "VSC_GENERAL_ERROR", 2: "VSC_CANNOT_ADD_MORE_READERS",
               3: "VSC_CARD_ALREAY_INSERTED"}

VSCARD_MAGIC = b"VSCD"
VSCARD_VERSION = 2
VSCARD_UNDEFINED_READER_ID = 0xFFFFFFFF
VSCARD_MINIMAL_READER_ID = 0

HEADER = struct.Struct(">III")
HEADER_SIZE = HEADER.size  # 12

# The largest payload the decoder accepts: an extended command APDU
# (4 header + 3 Lc + 65535 data + 2 Le = 65544 bytes, ISO/IEC 7816-3 §12.1.3)
# fits, anything longer in a header is refused before it is buffered.
MAX_PAYLOAD = 65544

# ISO/IEC 7816-3 §8.2: an ATR is at most 33 characters; QEMU takes up to 40.
MAX_ATR = 40


# What a long-running server keeps of its traffic: the last lines and pairs.
MAX_TRACE = 4096


def _bounded_append(items, item, limit=MAX_TRACE):
    items.append(item)
    if len(items) > limit:
        del items[:len(items) - limit // 2]


class VSCardError(CcidkitError):
    """Malformed VSCard traffic or a server-side failure.

    ``name`` is one of VSC_TRUNCATED, VSC_TOO_LONG, VSC_UNKNOWN_TYPE,
    VSC_BAD_INIT, VSC_BAD_ERROR, VSC_BAD_ATR, VSC_NOT_CONNECTED, VSC_TIMEOUT;
    ``code`` the message type involved (or None).
    """


class Message:
    """One VSCard message."""

    def __init__(self, type_, reader_id, payload=b""):
        self.type = type_
        self.reader_id = reader_id
        self.payload = bytes(payload)

    @property
    def name(self):
        return MESSAGE_NAMES.get(self.type, "type%d" % self.type)

    def encode(self):
        return encode(self.type, self.reader_id, self.payload)

    def __eq__(self, other):
        return (isinstance(other, Message) and self.type == other.type
                and self.reader_id == other.reader_id and self.payload == other.payload)

    def __repr__(self):
        text = mask_apdu(self.payload) if self.type == VSC_APDU else to_hex(self.payload)
        return "Message(%s, reader=%d, %s)" % (self.name, self.reader_id, text)


def encode(type_, reader_id, payload=b""):
    """Header + payload bytes of one message."""
    if type_ not in MESSAGE_NAMES:
        raise VSCardError("unknown message type %r" % (type_,), type_, "VSC_UNKNOWN_TYPE")
    payload = bytes(payload)
    if len(payload) > MAX_PAYLOAD:
        raise VSCardError("payload of %d bytes exceeds %d" % (len(payload), MAX_PAYLOAD),
                          type_, "VSC_TOO_LONG")
    return HEADER.pack(type_, reader_id & 0xFFFFFFFF, len(payload)) + payload


def encode_init(version=VSCARD_VERSION, capabilities=0, reader_id=VSCARD_UNDEFINED_READER_ID):
    return encode(VSC_Init, reader_id, VSCARD_MAGIC + struct.pack(">II", version, capabilities))


def encode_error(code, reader_id=VSCARD_MINIMAL_READER_ID):
    return encode(VSC_Error, reader_id, struct.pack(">I", code))


def decode_init(payload):
    """(version, capabilities) of an Init payload; VSCardError VSC_BAD_INIT otherwise.

    Capabilities are a list of u32 words; all of them are returned OR-ed
    into one integer, bit i of word k as bit (32*k + i).
    """
    payload = bytes(payload)
    if len(payload) < 8 or payload[:4] != VSCARD_MAGIC or (len(payload) - 8) % 4:
        raise VSCardError("bad Init payload %s" % to_hex(payload[:16]), VSC_Init, "VSC_BAD_INIT")
    (version,) = struct.unpack(">I", payload[4:8])
    caps = 0
    for k in range(8, len(payload), 4):
        (word,) = struct.unpack(">I", payload[k:k + 4])
        caps |= word << (32 * ((k - 8) // 4))
    return version, caps


def decode_error(payload):
    """The u32 code of an Error payload; VSCardError VSC_BAD_ERROR otherwise."""
    payload = bytes(payload)
    if len(payload) != 4:
        raise VSCardError("Error payload of %d bytes (expected 4)" % len(payload),
                          VSC_Error, "VSC_BAD_ERROR")
    return struct.unpack(">I", payload)[0]


class Decoder:
    """Incremental decoder of a VSCard byte stream.

    ``feed(data)`` returns the complete messages so far. A header announcing
    more than ``max_payload`` bytes or an unknown type raises VSCardError
    (VSC_TOO_LONG / VSC_UNKNOWN_TYPE) at once, before buffering the payload;
    the decoder then stays failed (the stream cannot be resynchronised).
    """

    def __init__(self, max_payload=MAX_PAYLOAD):
        self.max_payload = max_payload
        self._buf = bytearray()
        self._failed = None

    @property
    def pending(self):
        """Bytes buffered towards the next message."""
        return len(self._buf)

    def feed(self, data):
        if self._failed is not None:
            raise self._failed
        self._buf += data
        out = []
        while len(self._buf) >= HEADER_SIZE:
            type_, reader_id, length = HEADER.unpack_from(self._buf, 0)
            if type_ not in MESSAGE_NAMES:
                self._failed = VSCardError("unknown message type %d" % type_, type_,
                                           "VSC_UNKNOWN_TYPE")
                raise self._failed
            if length > self.max_payload:
                self._failed = VSCardError(
                    "%s announces %d bytes (limit %d)" % (MESSAGE_NAMES[type_], length,
                                                          self.max_payload),
                    type_, "VSC_TOO_LONG")
                raise self._failed
            if len(self._buf) < HEADER_SIZE + length:
                break
            payload = bytes(self._buf[HEADER_SIZE:HEADER_SIZE + length])
            self._buf = self._buf[HEADER_SIZE + length:]
            out.append(Message(type_, reader_id, payload))
        return out


def decode_message(data, max_payload=MAX_PAYLOAD):
    """Exactly one message from ``data``; VSCardError for anything else."""
    dec = Decoder(max_payload)
    msgs = dec.feed(data)
    if dec.pending or not msgs:
        raise VSCardError("truncated message (%d bytes)" % len(data), None, "VSC_TRUNCATED")
    if len(msgs) != 1:
        raise VSCardError("%d messages where one was expected" % len(msgs), None,
                          "VSC_TRUNCATED")
    return msgs[0]


class StubCard:
    """A minimal card for the reader tests: a fixed ATR and two commands.

    - SELECT by AID ``00 A4 04 00 Lc AID``: 90 00 for ``STUB_AID``, 6A 82 otherwise;
    - ECHO ``80 EE 00 00 Lc data [Le]``: ``data 90 00`` (the same command as
      MiniCard's, so tests written against this stub keep working there);
    - other instructions: 6D 00; other classes: 6E 00; under 4 bytes: 67 00.
    """

    # TS 3B direct convention, T0 08: no interface bytes, 8 historical bytes.
    ATR = bytes.fromhex("3B08") + b"ccidkit0"
    STUB_AID = bytes.fromhex("F0636369646B6974")

    def __init__(self, atr=None):
        self.atr = bytes(atr) if atr is not None else self.ATR
        self.commands = []

    def process_apdu(self, apdu):
        apdu = bytes(apdu)
        self.commands.append(apdu)
        if len(apdu) < 4:
            return b"\x67\x00"
        cla, ins = apdu[0], apdu[1]
        body = apdu[4:]
        if cla == 0x00 and ins == 0xA4:
            if apdu[2] == 0x04 and body and body[1:1 + body[0]] == self.STUB_AID:
                return b"\x90\x00"
            return b"\x6A\x82"
        if cla == 0x80 and ins == 0xEE:
            data = _short_or_extended_data(body)
            if data is None:
                return b"\x67\x00"
            return data + b"\x90\x00"
        if cla in (0x00, 0x80):
            return b"\x6D\x00"
        return b"\x6E\x00"


def _short_or_extended_data(body):
    """The command data field of an APDU body (after CLA INS P1 P2), or None."""
    if not body:
        return b""
    if body[0] != 0 or len(body) < 3:
        # short: Lc data [Le]  (ISO/IEC 7816-4 §5.1)
        if len(body) == 1:
            return b""
        lc = body[0]
        if len(body) not in (1 + lc, 2 + lc):
            return None
        return body[1:1 + lc]
    lc = (body[1] << 8) | body[2]
    if len(body) == 3:
        return b""           # extended Le only
    if len(body) not in (3 + lc, 5 + lc):
        return None
    return body[3:3 + lc]


class VSCardServer:
    """Serves a card to QEMU's ccid-card-passthru over a unix or loopback socket.

    ``VSCardServer(card, unix=True)`` listens on a socket in a private
    (0700) temporary directory; ``unix=False`` on 127.0.0.1 with an
    ephemeral port (TCP_NODELAY). QEMU connects as a client (reconnect=1),
    one connection at a time; each new connection is greeted with Init,
    ReaderAdd and, if the card is inserted, its ATR. The guest's power on/off
    never reach this side, so the card's optional ``power_on()`` is called
    when its ATR is sent (insertion) and ``power_off()`` at removal.

    ``trace`` (a list, readable while running) records one pcscd-style line
    per message; ``apdus`` the (command, response) pairs served.
    """

    def __init__(self, card, unix=True, reader_name="ccidkit VSCard", inserted=True,
                 log=None):
        self.card = card
        self.unix = unix
        self.reader_name = reader_name
        self.inserted = inserted
        self.log = log
        # trace lines and (command, response) records, masked (core/hexutil.py):
        # no PIN command data, no secret answer
        self.trace = []
        self.apdus = []
        self.masker = ApduMasker()
        self.errors = []
        self.unanswered = []
        self._silent = None
        self.peer_version = None
        self.connections = 0
        self._lock = threading.Lock()
        self._conn = None
        self._reader_id = VSCARD_MINIMAL_READER_ID
        self._stop = threading.Event()
        self._connected = threading.Condition(self._lock)
        self._thread = None
        self._listener = None
        self._dir = None
        self.path = None
        self.port = None

    def leave_unanswered(self, predicate, count=1):
        """A silent card: the next ``count`` APDUs for which ``predicate(apdu)``
        is true get no answer at all (recorded in ``unanswered``). QEMU's
        usb-ccid then never answers the guest's XfrBlock, which is how its
        bSeq pairing breaks (the reader quirk the driver must survive)."""
        with self._lock:
            self._silent = (predicate, int(count))

    def _swallow(self, apdu):
        with self._lock:
            if self._silent is None:
                return False
            predicate, left = self._silent
            if left <= 0 or not predicate(bytes(apdu)):
                return False
            self._silent = (predicate, left - 1) if left > 1 else None
        _bounded_append(self.unanswered, redact_apdu(apdu))
        return True

    # -- life cycle -----------------------------------------------------
    def start(self):
        listener = listen_private("ccidkit-vscard-", "vscard.sock", self.unix)
        self._dir, self.path, self.port = listener.directory, listener.path, listener.port
        self._listener = listener.socket
        self._thread = threading.Thread(target=self._serve, name="vscard", daemon=True)
        self._thread.start()
        return self

    def stop(self):
        self._stop.set()
        with self._lock:
            conn = self._conn
        if conn is not None:
            _shutdown(conn)
        if self._thread is not None:
            self._thread.join(5)
        if self._listener is not None:
            self._listener.close()
            self._listener = None
        if self.path and os.path.exists(self.path):
            os.unlink(self.path)
        if self._dir:
            os.rmdir(self._dir)
            self._dir = None

    def __enter__(self):
        return self.start()

    def __exit__(self, *exc):
        self.stop()

    def chardev_arg(self, chardev_id="ccid0"):
        """The QEMU ``-chardev`` option that connects to this server."""
        if self.unix:
            return "socket,id=%s,path=%s,reconnect=1" % (chardev_id, self.path)
        return "socket,id=%s,host=127.0.0.1,port=%d,nodelay=on,reconnect=1" % (chardev_id,
                                                                               self.port)

    @staticmethod
    def device_args(chardev_id="ccid0", bus="xhci.0", reader_id="ccid", card_id="card0"):
        """The ``-device`` values for a usb-ccid reader with this card in it."""
        return ["usb-ccid,id=%s,bus=%s" % (reader_id, bus),
                "ccid-card-passthru,id=%s,chardev=%s" % (card_id, chardev_id)]

    def qemu_options(self, index=0):
        """QEMU options for reader number ``index`` of a VM: chardev ``ccid<i>``,
        usb-ccid ``ccid<i>``, card ``card<i>`` (what the pytest plugin's
        ``attach`` uses)."""
        chardev = "ccid%d" % index
        return {"chardevs": [self.chardev_arg(chardev)],
                "devices": self.device_args(chardev, reader_id="ccid%d" % index,
                                            card_id="card%d" % index)}

    def wait_connected(self, timeout=30.0):
        """Block until QEMU is connected (bounded); False on timeout."""
        deadline = time.monotonic() + timeout
        with self._lock:
            while self._conn is None:
                left = deadline - time.monotonic()
                if left <= 0:
                    return False
                self._connected.wait(left)
        return True

    # -- card events ----------------------------------------------------
    def insert_card(self, atr=None):
        """Insert the card (sends its ATR when QEMU is connected)."""
        if atr is not None:
            self.card.atr = bytes(atr)
        self.inserted = True
        self._send_atr()

    def remove_card(self):
        self.inserted = False
        power_off = getattr(self.card, "power_off", None)
        if power_off is not None:
            power_off()
        self._send(VSC_CardRemove, b"")

    def _send_atr(self):
        # The guest's IccPowerOn/Off never reach this side (QEMU answers them
        # from the ATR it holds), so the card's session starts at insertion.
        atr = self._check_atr(self.card.atr)
        power_on = getattr(self.card, "power_on", None)
        if power_on is not None:
            power_on()
        self._send(VSC_ATR, atr)

    # -- internals ------------------------------------------------------
    @staticmethod
    def _check_atr(atr):
        atr = bytes(atr)
        if not 2 <= len(atr) <= MAX_ATR or atr[0] not in (0x3B, 0x3F):
            raise VSCardError("not an ATR QEMU accepts: %s" % to_hex(atr), VSC_ATR, "VSC_BAD_ATR")
        return atr

    def _note(self, direction, msg_type, reader_id, payload, text=None):
        if text is None:
            if msg_type == VSC_APDU:
                text = self.masker.command(payload)     # from QEMU: a command APDU
            else:
                text = to_hex(payload)
        line = "%s %s reader=%d %s" % (direction, MESSAGE_NAMES.get(msg_type, msg_type),
                                        reader_id, text)
        _bounded_append(self.trace, line.rstrip())
        if self.log:
            self.log(line.rstrip())

    def _send(self, msg_type, payload, reader_id=None, text=None):
        with self._lock:
            conn = self._conn
        if conn is None:
            return False
        rid = self._reader_id if reader_id is None else reader_id
        data = encode(msg_type, rid, payload)
        self._note("->", msg_type, rid, payload, text)
        try:
            conn.sendall(data)
        except OSError:
            return False
        return True

    def _serve(self):
        while not self._stop.is_set():
            try:
                r, _, _ = select.select([self._listener], [], [], 0.2)
            except (OSError, ValueError):
                return
            if not r:
                continue
            try:
                conn, _ = self._listener.accept()
            except OSError:
                continue
            if not self.unix:
                conn.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            with self._lock:
                self._conn = conn
                self.connections += 1
                self._connected.notify_all()
            try:
                self._session(conn)
            except VSCardError as e:
                self.errors.append(e)
                if self.log:
                    self.log("vscard: %s" % e)
            except OSError as e:
                self.errors.append(e)
            finally:
                with self._lock:
                    self._conn = None
                conn.close()

    def _session(self, conn):
        decoder = Decoder()
        # Greet: Init, then our reader; the ATR follows QEMU's ReaderAdd ack.
        self._send(VSC_Init, encode_init()[HEADER_SIZE:], VSCARD_UNDEFINED_READER_ID)
        self._send(VSC_ReaderAdd, self.reader_name.encode(), VSCARD_UNDEFINED_READER_ID)
        atr_sent = False
        while not self._stop.is_set():
            r, _, _ = select.select([conn], [], [], 0.2)
            if not r:
                continue
            data = conn.recv(65536)
            if not data:
                return
            for msg in decoder.feed(data):
                self._note("<-", msg.type, msg.reader_id, msg.payload)
                if msg.type == VSC_Init:
                    self.peer_version = decode_init(msg.payload)[0]
                elif msg.type == VSC_Error:
                    code = decode_error(msg.payload)
                    if code == VSC_SUCCESS and not atr_sent:
                        # QEMU acknowledges ReaderAdd with the reader id it assigned
                        if msg.reader_id != VSCARD_UNDEFINED_READER_ID:
                            self._reader_id = msg.reader_id
                        atr_sent = True
                        if self.inserted:
                            self._send_atr()
                elif msg.type == VSC_APDU:
                    if self._swallow(msg.payload):
                        continue
                    try:
                        response = bytes(self.card.process_apdu(msg.payload))
                    except CcidkitError as e:
                        # a card-side failure is the card's "no precise diagnosis"
                        # (ISO/IEC 7816-4 §5.6: 6F 00), not a dead reader
                        self.errors.append(e)
                        response = b"\x6F\x00"
                    text, kept = self.masker.response(response)
                    _bounded_append(self.apdus, (redact_apdu(msg.payload), kept))
                    self._send(VSC_APDU, response, msg.reader_id, text)
                elif msg.type == VSC_Flush:
                    self._send(VSC_FlushComplete, b"", msg.reader_id)


def _shutdown(sock):
    try:
        sock.shutdown(socket.SHUT_RDWR)
    except OSError:
        pass
