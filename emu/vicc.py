"""vicc: the card side of vsmartcard's ``vpcd`` reader driver for pcscd.

pcscd loads ``libifdvpcd.so`` (vsmartcard-vpcd) as a serial reader driver;
each of its slots talks to one virtual ICC over TCP. Every message either
way is a 2-byte big-endian length followed by that many bytes of payload:

    pcscd/vpcd -> card                          card -> vpcd
    00 01 00      power off                     (no reply)
    00 01 01      power on                      (no reply)
    00 01 02      reset                         (no reply)
    00 01 04      get ATR                       len + ATR
    len + APDU    a whole command APDU          len + response (data SW1 SW2)

pcscd asks for the ATR about every 400 ms to learn whether the card is still
there; a closed socket (or an empty reply) is a removed card. vpcd sends
nothing else: no PPS, no protocol selection, no PC/SC connect/disconnect.

How the two ends meet is chosen by the reader.conf ``DEVICENAME``:

    DEVICENAME /dev/null:PORT    vpcd listens on PORT (all interfaces) and
                                 PORT+1... for its further slots; the card
                                 connects (``Vicc(card, host, port)``).
    DEVICENAME HOST:PORT         vpcd connects out to HOST:PORT (PORT+1...);
                                 the card listens (``Vicc(card, listen=PORT)``).

vpcd 3.3 (Debian bookworm) cannot live with the second form for long: once
the card side is not accepting (not yet listening, or gone after a removal)
its retry path ends pcscd with a fortify abort ("bit out of range 0 -
FD_SETSIZE on fd_set"). ``emu/pcscd.py`` therefore runs vpcd in the first
form inside a private network namespace, where "all interfaces" is a
loopback nobody else can reach.

This module has the codec (``encode_frame``, ``Decoder``, ``decode_frame``),
a sans-I/O session (``ViccSession``: frames in, reply bytes out, session
events delivered to the card) and a threaded runner, ``Vicc``, in either
mode. TCP_QUICKACK is re-armed after every receive: vpcd used to write the
length and the payload in two segments, and with delayed ACKs each APDU then
waits ~44 ms for the ACK of the first one (measured on these machines).
"""

import select
import socket
import struct
import threading
import time

from ccidkit.core.errors import CcidkitError
from ccidkit.core.hexutil import ApduMasker, mask_apdu, redact_apdu

VPCD_PORT = 35963          # vpcd's default port (slot 0; slot n listens on +n)

VPCD_CTRL_OFF = 0
VPCD_CTRL_ON = 1
VPCD_CTRL_RESET = 2
VPCD_CTRL_ATR = 4
CONTROL_NAMES = {VPCD_CTRL_OFF: "power_off", VPCD_CTRL_ON: "power_on",
                 VPCD_CTRL_RESET: "reset", VPCD_CTRL_ATR: "get_atr"}

LENGTH = struct.Struct(">H")
# The 2-byte length field caps every payload at 65535 bytes: an extended
# command APDU (ISO/IEC 7816-3 §12.1.3, up to 65544 bytes) fits only up to
# 65526 data bytes through vpcd.
MAX_FRAME = 0xFFFF

# Card-side failure: "no precise diagnosis" (ISO/IEC 7816-4 §5.6).
SW_NO_PRECISE_DIAGNOSIS = b"\x6F\x00"

# How often the runner polls its stop flag while it waits for bytes.
POLL_INTERVAL = 0.1
# What a long-running card keeps of its traffic: the last lines and pairs.
MAX_TRACE = 4096
MAX_SESSIONS = 16


def _bounded_append(items, item, limit):
    items.append(item)
    if len(items) > limit:
        del items[:len(items) - limit // 2]


class ViccError(CcidkitError):
    """Malformed vpcd traffic or a runner failure.

    ``name`` is one of:
      VICC_TOO_LONG       a frame announces (or a payload has) more bytes than
                          the decoder's ``max_payload`` / the 2-byte field allows
      VICC_EMPTY          a frame of length 0 (vpcd never sends one; as a reply
                          it would mean "card removed")
      VICC_BAD_CONTROL    a 1-byte control payload other than 0, 1, 2, 4
      VICC_TRUNCATED      ``decode_frame`` given an incomplete frame or extra bytes
      VICC_NOT_CONNECTED  the runner has no connection
      VICC_TIMEOUT        a bounded wait ended
    ``code`` is the announced length or control byte involved (or None).
    """


class Frame:
    """One decoded vpcd message: ``kind`` is "power_off", "power_on",
    "reset", "get_atr" or "apdu"; ``data`` the APDU bytes (b"" for controls)."""

    def __init__(self, kind, data=b""):
        self.kind = kind
        self.data = bytes(data)

    def __eq__(self, other):
        return isinstance(other, Frame) and self.kind == other.kind and self.data == other.data

    def __repr__(self):
        if self.kind == "apdu":
            return "Frame(apdu, %s)" % mask_apdu(self.data)
        return "Frame(%s)" % self.kind


def encode_frame(payload):
    """Length + payload bytes; ViccError for an empty or oversized payload."""
    payload = bytes(payload)
    if not payload:
        raise ViccError("empty payload (a 0-length frame reads as card removal)", 0,
                        "VICC_EMPTY")
    if len(payload) > MAX_FRAME:
        raise ViccError("payload of %d bytes exceeds %d" % (len(payload), MAX_FRAME),
                        len(payload), "VICC_TOO_LONG")
    return LENGTH.pack(len(payload)) + payload


def encode_control(code):
    """The 3 bytes vpcd sends for a control code (what a test's fake vpcd sends)."""
    if code not in CONTROL_NAMES:
        raise ViccError("unknown control code %r" % (code,), code, "VICC_BAD_CONTROL")
    return LENGTH.pack(1) + bytes((code,))


def parse_payload(payload):
    """The Frame for one payload (1 byte: control, longer: APDU)."""
    payload = bytes(payload)
    if not payload:
        raise ViccError("empty frame", 0, "VICC_EMPTY")
    if len(payload) == 1:
        code = payload[0]
        if code not in CONTROL_NAMES:
            raise ViccError("unknown control code %d" % code, code, "VICC_BAD_CONTROL")
        return Frame(CONTROL_NAMES[code])
    return Frame("apdu", payload)


class Decoder:
    """Incremental decoder of the byte stream vpcd sends.

    ``feed(data)`` returns the Frames completed so far. A length above
    ``max_payload`` raises ViccError VICC_TOO_LONG at once, before any of
    its payload is buffered; a zero length VICC_EMPTY; a bad control byte
    VICC_BAD_CONTROL. After an error the decoder stays failed (a length-
    prefixed stream cannot be resynchronised) and raises it again.
    """

    def __init__(self, max_payload=MAX_FRAME):
        self.max_payload = max_payload
        self._buf = bytearray()
        self._failed = None

    @property
    def pending(self):
        """Bytes buffered towards the next frame."""
        return len(self._buf)

    def feed(self, data):
        if self._failed is not None:
            raise self._failed
        self._buf += data
        out = []
        while len(self._buf) >= 2:
            (length,) = LENGTH.unpack_from(self._buf, 0)
            if length > self.max_payload:
                self._failed = ViccError("frame announces %d bytes (limit %d)"
                                         % (length, self.max_payload), length,
                                         "VICC_TOO_LONG")
                raise self._failed
            if len(self._buf) < 2 + length:
                break
            payload = bytes(self._buf[2:2 + length])
            del self._buf[:2 + length]
            try:
                out.append(parse_payload(payload))
            except ViccError as e:
                self._failed = e
                raise
        return out


def decode_frame(data, max_payload=MAX_FRAME):
    """Exactly one Frame from ``data``; ViccError for anything else."""
    dec = Decoder(max_payload)
    frames = dec.feed(data)
    if dec.pending or len(frames) != 1:
        raise ViccError("not exactly one frame in %d bytes" % len(data), None,
                        "VICC_TRUNCATED")
    return frames[0]


def deliver_event(card, name, **detail):
    """Tell ``card`` about a session event.

    The card's state method runs first (``power_on()``, ``power_off()``,
    ``reset(warm=...)``, when it has one), then ``card.event(name, **detail)``
    (when it has one), so a card records its session in order.
    """
    method = None
    if name == "power_on":
        method = getattr(card, "power_on", None)
        args = {}
    elif name == "power_off":
        method = getattr(card, "power_off", None)
        args = {}
    elif name in ("reset_warm", "reset_cold"):
        method = getattr(card, "reset", None)
        args = {"warm": name == "reset_warm"}
    if method is not None:
        method(**args)
    event = getattr(card, "event", None)
    if event is not None:
        event(name, **detail)


class ViccSession:
    """Sans-I/O card side of one vpcd connection.

    ``receive(data)`` takes bytes from vpcd and returns the bytes to send
    back (possibly b""). Controls become card events: power on ->
    "power_on", power off -> "power_off", reset -> "reset_warm" (vpcd's
    IFD_RESET; pcscd uses it for SCARD_RESET_CARD). Get ATR answers
    ``card.atr`` and is no event (pcscd polls it for presence). An APDU goes
    to ``card.process_apdu``; a CcidkitError from the card is answered 6F 00.

    ``trace`` collects pcscd-style lines (APDUs and controls, not the ATR
    polls); ``apdus`` the (command, response) pairs; ``errors`` card-side
    failures; each keeps the last MAX_TRACE entries at most. Both records and
    the ``log`` lines are masked (core/hexutil.py ApduMasker): PIN command data
    kept as ``*`` bytes (``**`` in the lines), secret answers (GENERAL
    AUTHENTICATE, DECIPHER) as zero bytes; with ``record=False`` nothing is
    kept but the ``log`` lines.
    """

    def __init__(self, card, max_payload=MAX_FRAME, log=None, record=True):
        self.card = card
        self.decoder = Decoder(max_payload)
        self.log = log
        self.record = record
        self.masker = ApduMasker()
        self.trace = []
        self.apdus = []
        self.errors = []
        self.atr_polls = 0

    def _note(self, line):
        if self.record:
            _bounded_append(self.trace, line, MAX_TRACE)
        if self.log is not None:
            self.log(line)

    def receive(self, data):
        out = bytearray()
        for frame in self.decoder.feed(data):
            out += self.handle(frame)
        return bytes(out)

    def handle(self, frame):
        """The reply bytes (maybe b"") for one Frame."""
        kind = frame.kind
        if kind == "get_atr":
            self.atr_polls += 1
            return encode_frame(self.card.atr)
        if kind == "apdu":
            self._note("-> " + self.masker.command(frame.data))
            try:
                response = bytes(self.card.process_apdu(frame.data))
            except CcidkitError as e:
                _bounded_append(self.errors, e, MAX_TRACE)
                response = SW_NO_PRECISE_DIAGNOSIS
            if not response or len(response) > MAX_FRAME:
                # vpcd would read an empty reply as a removed card
                _bounded_append(self.errors, ViccError(
                    "card answered %d bytes" % len(response), len(response),
                    "VICC_TOO_LONG" if response else "VICC_EMPTY"), MAX_TRACE)
                response = SW_NO_PRECISE_DIAGNOSIS
            text, kept = self.masker.response(response)
            self._note("<- " + text)
            if self.record:
                _bounded_append(self.apdus, (redact_apdu(frame.data), kept), MAX_TRACE)
            return encode_frame(response)
        name = "reset_warm" if kind == "reset" else kind
        self._note("** " + name)
        deliver_event(self.card, name)
        return b""


def _quickack(sock):
    # Linux: TCP_QUICKACK is cleared by the stack after use; re-arm it after
    # every receive so the peer's next segment is acknowledged at once.
    opt = getattr(socket, "TCP_QUICKACK", None)
    if opt is None or sock.family not in (socket.AF_INET, socket.AF_INET6):
        return
    try:
        sock.setsockopt(socket.IPPROTO_TCP, opt, 1)
    except OSError:
        pass


def _tune(sock):
    if sock.family in (socket.AF_INET, socket.AF_INET6):
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        _quickack(sock)


class Vicc:
    """A virtual card served to vpcd over TCP, in a background thread.

    ``Vicc(card, host="127.0.0.1", port=VPCD_PORT)`` connects to a listening
    vpcd (reader.conf ``DEVICENAME /dev/null:PORT``) and connects again
    whenever the connection ends (pcscd restarted), every
    ``reconnect_interval`` seconds. ``socket_factory()`` (optional) makes the
    socket to connect with, e.g. one inside another network namespace.

    ``Vicc(card, listen=PORT)`` listens on ``listen_host`` (loopback) for a
    vpcd configured to connect out (``DEVICENAME 127.0.0.1:PORT``); port 0
    picks a free port (``.port`` after ``start()``).

    ``remove()`` closes the connection and stops (re)connecting or
    accepting: pcscd sees the card removed. ``insert()`` brings it back.
    ``stop()`` ends the thread. ``wait_connected`` / ``wait_apdus`` are
    bounded waits for tests.
    """

    def __init__(self, card, host="127.0.0.1", port=VPCD_PORT, listen=None,
                 listen_host="127.0.0.1", socket_factory=None, reconnect_interval=0.2,
                 max_payload=MAX_FRAME, log=None):
        self.card = card
        self.host = host
        self.port = port if listen is None else listen
        self.listening = listen is not None
        self.listen_host = listen_host
        self.socket_factory = socket_factory
        self.reconnect_interval = reconnect_interval
        self.max_payload = max_payload
        self.log = log
        self.connections = 0
        self.sessions = []
        self.errors = []
        self._inserted = threading.Event()
        self._inserted.set()
        self._stop = threading.Event()
        self._lock = threading.Condition()
        self._conn = None
        self._listener = None
        self._thread = None

    # -- life cycle -----------------------------------------------------
    def start(self):
        if self.listening:
            s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
            s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            s.bind((self.listen_host, self.port))
            s.listen(1)
            self.port = s.getsockname()[1]
            self._listener = s
        self._thread = threading.Thread(target=self._run, name="vicc", daemon=True)
        self._thread.start()
        return self

    def stop(self, timeout=5.0):
        self._stop.set()
        self._inserted.set()
        self._drop()
        if self._thread is not None:
            self._thread.join(timeout)
            self._thread = None
        if self._listener is not None:
            self._listener.close()
            self._listener = None

    def __enter__(self):
        return self.start()

    def __exit__(self, *exc):
        self.stop()

    @property
    def connected(self):
        with self._lock:
            return self._conn is not None

    @property
    def session(self):
        """The current (or last) ViccSession, or None."""
        return self.sessions[-1] if self.sessions else None

    def remove(self):
        """Take the card out: close the connection, stay away until insert()."""
        with self._lock:
            # under the lock: a connection being set up sees the flag first
            self._inserted.clear()
        self._drop()

    def insert(self):
        self._inserted.set()

    def wait_connected(self, timeout=10.0):
        """Block until a vpcd connection is up; False when ``timeout`` ends first."""
        deadline = time.monotonic() + timeout
        with self._lock:
            while self._conn is None:
                left = deadline - time.monotonic()
                if left <= 0:
                    return False
                self._lock.wait(min(left, POLL_INTERVAL))
        return True

    # -- internals ------------------------------------------------------
    def _drop(self):
        with self._lock:
            conn = self._conn
        if conn is not None:
            try:
                conn.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass

    def _run(self):
        while not self._stop.is_set():
            if not self._inserted.is_set():
                if self.listening:
                    # a removed card still answers connects, with a close:
                    # left in the backlog, vpcd would wait for its ATR forever
                    conn = self._accept()
                    if conn is not None:
                        conn.close()
                else:
                    self._inserted.wait(POLL_INTERVAL)
                continue
            conn = self._accept() if self.listening else self._connect()
            if conn is None:
                continue
            with self._lock:
                if not self._inserted.is_set():
                    conn.close()       # removed while connecting
                    continue
                self._conn = conn
                self.connections += 1
                self._lock.notify_all()
            try:
                self._serve(conn)
            except ViccError as e:
                _bounded_append(self.errors, e, MAX_TRACE)
                if self.log:
                    self.log("vicc: %s" % e)
            except OSError as e:
                _bounded_append(self.errors, e, MAX_TRACE)
            finally:
                with self._lock:
                    self._conn = None
                    self._lock.notify_all()
                conn.close()

    def _accept(self):
        try:
            r, _, _ = select.select([self._listener], [], [], POLL_INTERVAL)
        except (OSError, ValueError):
            self._stop.wait(POLL_INTERVAL)
            return None
        if not r:
            return None
        try:
            conn, _ = self._listener.accept()
        except OSError:
            return None
        _tune(conn)
        return conn

    def _connect(self):
        s = None
        try:
            # a factory may fail while its namespace is gone (pcscd restarting)
            if self.socket_factory is not None:
                s = self.socket_factory()
            else:
                s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
            s.settimeout(2.0)
            s.connect((self.host, self.port))
        except (OSError, CcidkitError):
            if s is not None:
                s.close()
            # bounded by the stop flag: one attempt every reconnect_interval
            self._stop.wait(self.reconnect_interval)
            return None
        s.settimeout(None)
        _tune(s)
        return s

    def _serve(self, conn):
        session = ViccSession(self.card, self.max_payload, self.log)
        _bounded_append(self.sessions, session, MAX_SESSIONS)
        while not self._stop.is_set():
            r, _, _ = select.select([conn], [], [], POLL_INTERVAL)
            if not r:
                continue
            data = conn.recv(65536)
            if not data:
                return
            _quickack(conn)
            reply = session.receive(data)
            if reply:
                conn.sendall(reply)
