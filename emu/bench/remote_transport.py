"""Emulated readers in another process, reached through a small framed protocol.

The slots benchmark measures the driver's own CPU apart from the emulator's:
the emulated readers (emu/reader.py, their cards and the shared emulated
clock) run in a child process; the parent drives them through
:class:`RemoteTransport`, a ``core.transport.Transport`` whose five calls go
over a socketpair. The parent's CPU is then the driver's and the
application's alone; the child reports its own CPU on request.

    remote = RemoteReaders("sysmosimbank-96", card="usim", records=250, time_scale=0.1)
    transports = remote.transports          # one per emulated reader
    remote.join(0); ...; remote.leave(0)    # reader 0's thread takes part in the clock
    remote.stats()                          # {"now_us", "bus_busy_us", "cpu_s", ...}
    remote.close()

:class:`LocalTransport` is the same Transport over an in-process EmulatedReader
(no pyusb in between), for the in-process mode.

Frames (all little-endian). Request: ``op u8, reader u8, length u32`` then
``length`` bytes; answer: ``status u8, length u32`` then the bytes. One
connection per reader, served by its own thread in the child, so the parent
may drive every reader from its own thread. Ops and their payloads:

    INFO      -                                     -> JSON identity of the reader
    BULK_OUT  timeout u32, data                     -> -
    BULK_IN   max_len u32, timeout u32              -> data
    INT_IN    max_len u32, timeout u32              -> data (status NONE: nothing)
    CONTROL   bmRequestType u8, bRequest u8, wValue u16, wIndex u16, timeout u32,
              kind u8 (0 length, 1 data), length u32 or data   -> data
    JOIN / LEAVE                                    -> -   (this connection's thread
              takes part in / leaves the shared clock: emu.timing.SharedClock)
    STATS     -                                     -> JSON (emulated time, bus, CPU)
    QUIT      -                                     -> -   (the child ends)

Status: OK 0, TIMEOUT 1 (LIBUSB_ERROR_TIMEOUT), STALL 2 (LIBUSB_ERROR_PIPE),
GONE 3 (LIBUSB_ERROR_NO_DEVICE), ERROR 4 (message), NONE 5.
"""

import json
import os
import socket
import struct
import subprocess
import sys
import threading
import time

from ...core.transport import (
    Transport, TransportError, TransportTimeout, TransportStall, ReaderRemoved,
)
from ..reader import ReaderTimeout, ReaderStall, ReaderGone, EmulatedReaderError

OP_INFO, OP_BULK_OUT, OP_BULK_IN, OP_INT_IN, OP_CONTROL, OP_JOIN, OP_LEAVE, OP_STATS, \
    OP_QUIT = range(1, 10)
ST_OK, ST_TIMEOUT, ST_STALL, ST_GONE, ST_ERROR, ST_NONE = range(6)

MAX_FRAME = 1 << 20          # no CCID message comes near it (dwMaxCCIDMessageLength ≤ 65544)
REQ = struct.Struct("<BBI")
ANS = struct.Struct("<BI")
CHILD_START_S = 60.0         # the child has this long to answer its first frame


class RemoteError(TransportError):
    """The framed link to the emulator process failed (name LINK_ERROR), or the
    emulator refused a request (name EMULATOR_ERROR)."""


def _recv_exact(sock, n):
    buf = bytearray()
    while len(buf) < n:
        chunk = sock.recv(n - len(buf))
        if not chunk:
            raise RemoteError("the emulator process closed the link", name="LINK_ERROR")
        buf.extend(chunk)
    return bytes(buf)


def read_request(sock):
    """(op, reader, payload) of the next request; None when the link closed."""
    try:
        head = _recv_exact(sock, REQ.size)
    except RemoteError:
        return None
    op, idx, n = REQ.unpack(head)
    if n > MAX_FRAME:
        raise RemoteError("request of %d bytes" % n, name="LINK_ERROR")
    return op, idx, _recv_exact(sock, n) if n else b""


def read_answer(sock):
    status, n = ANS.unpack(_recv_exact(sock, ANS.size))
    if n > MAX_FRAME:
        raise RemoteError("answer of %d bytes" % n, name="LINK_ERROR")
    return status, _recv_exact(sock, n) if n else b""


def identity(reader):
    """What a Transport says about itself, for one EmulatedReader."""
    u = reader.usb
    return {
        "vid": u["idVendor"], "pid": u["idProduct"], "bcd_device": u["bcdDevice"],
        "manufacturer": u["manufacturer"], "product": u["product"], "serial": reader.serial,
        "interface_number": reader.interface_number,
        "config_descriptor": reader.config_descriptor.hex(),
        "bus_path": "1-" + ".".join(str(p) for p in reader.port_path),
        "max_packet_size": u["wMaxPacketSize"], "has_interrupt": reader.has_interrupt,
    }


def _apply_identity(t, info):
    t.vid = info["vid"]
    t.pid = info["pid"]
    t.bcd_device = info["bcd_device"]
    t.manufacturer = info["manufacturer"]
    t.product = info["product"]
    t.serial = info["serial"]
    t.interface_number = info["interface_number"]
    t.config_descriptor = bytes.fromhex(info["config_descriptor"])
    t.bus_path = info["bus_path"]
    t.bus = 1
    t.max_packet_size = info["max_packet_size"]
    t._has_interrupt = info["has_interrupt"]


class LocalTransport(Transport):
    """A Transport straight over an in-process EmulatedReader."""

    def __init__(self, reader):
        self.reader = reader
        _apply_identity(self, identity(reader))

    @property
    def has_interrupt(self):
        return self._has_interrupt

    def _call(self, fn, *args):
        try:
            return fn(*args)
        except ReaderTimeout as e:
            raise TransportTimeout(str(e))
        except ReaderStall as e:
            raise TransportStall(str(e))
        except ReaderGone as e:
            raise ReaderRemoved(str(e))

    def bulk_out(self, data, timeout_ms):
        self._call(self.reader.bulk_out, data, timeout_ms)

    def bulk_in(self, max_len, timeout_ms):
        return self._call(self.reader.bulk_in, max_len, timeout_ms)

    def interrupt_in(self, max_len, timeout_ms):
        try:
            return self._call(self.reader.interrupt_in, max_len, timeout_ms)
        except TransportTimeout:
            return None

    def control(self, bmRequestType, bRequest, wValue, wIndex, data_or_length, timeout_ms):
        return self._call(self.reader.control, bmRequestType, bRequest, wValue, wIndex,
                          data_or_length)


class RemoteTransport(Transport):
    """A Transport whose reader lives in the emulator process (one connection each)."""

    def __init__(self, sock, index):
        self.sock = sock
        self.index = index
        self.calls = 0
        _apply_identity(self, json.loads(self._ask(OP_INFO, b"").decode()))

    @property
    def has_interrupt(self):
        return self._has_interrupt

    def _ask(self, op, payload, none_ok=False):
        self.calls += 1
        try:
            self.sock.sendall(REQ.pack(op, self.index, len(payload)) + payload)
            status, data = read_answer(self.sock)
        except OSError as e:
            raise RemoteError("link to the emulator: %s" % e, name="LINK_ERROR")
        if status == ST_OK:
            return data
        msg = data.decode("utf-8", "replace")
        if status == ST_NONE and none_ok:
            return None
        if status == ST_TIMEOUT:
            raise TransportTimeout(msg)
        if status == ST_STALL:
            raise TransportStall(msg)
        if status == ST_GONE:
            raise ReaderRemoved(msg)
        raise RemoteError(msg or "status %d" % status, name="EMULATOR_ERROR")

    def bulk_out(self, data, timeout_ms):
        self._ask(OP_BULK_OUT, struct.pack("<I", int(timeout_ms or 0)) + bytes(data))

    def bulk_in(self, max_len, timeout_ms):
        return self._ask(OP_BULK_IN, struct.pack("<II", int(max_len), int(timeout_ms or 0)))

    def interrupt_in(self, max_len, timeout_ms):
        return self._ask(OP_INT_IN, struct.pack("<II", int(max_len), int(timeout_ms or 0)),
                         none_ok=True)

    def control(self, bmRequestType, bRequest, wValue, wIndex, data_or_length, timeout_ms):
        head = struct.pack("<BBHHI", bmRequestType, bRequest, wValue, wIndex,
                           int(timeout_ms or 0))
        if isinstance(data_or_length, int):
            body = b"\x00" + struct.pack("<I", data_or_length)
        else:
            body = b"\x01" + bytes(data_or_length)
        return self._ask(OP_CONTROL, head + body)

    def join(self):
        self._ask(OP_JOIN, b"")

    def leave(self):
        self._ask(OP_LEAVE, b"")

    def stats(self):
        return json.loads(self._ask(OP_STATS, b"").decode())

    def quit(self):
        self._ask(OP_QUIT, b"")


# ---------------------------------------------------------------------------
# the child: emulated readers served over the connections it was given

def build_readers(config):
    """(readers, clock, bus) from the child's config: profile, card, records, time_scale."""
    from ...emu.cards import make_card
    from ...emu.profiles import bank_of, profile
    from ...emu.reader import create_readers
    from ...emu import timing as T
    pid = config["profile"]
    bank = bank_of(pid)
    count = bank["count"] if bank else 1
    slots = profile(pid)["ccid"]["bMaxSlotIndex"] + 1
    cards = {}
    for i in range(count):
        for s in range(slots):
            c = make_card(config.get("card", "usim"), records=config["records"])
            cards[(i, s) if bank else s] = c
    clock = T.bench_clock(config.get("time_scale", 0.0))
    bus = T.Bus(pid)
    readers = create_readers(pid, cards=cards, clock=clock, bus=bus)
    return readers, clock, bus


def stats_of(clock, bus):
    return {"now_us": clock.now_us(), "bus_busy_us": bus.busy_us,
            "bus_transfers": bus.transfers, "cpu_s": time.process_time(),
            "slept_s": clock.slept_s}


def _serve_one(sock, readers, clock, bus, quit_event):
    joined = False
    while not quit_event.is_set():
        req = read_request(sock)
        if req is None:
            break
        op, idx, p = req
        status, out = ST_OK, b""
        try:
            if idx >= len(readers):
                raise EmulatedReaderError("no reader %d" % idx, None, "BAD_READER")
            r = readers[idx]
            if op == OP_INFO:
                out = json.dumps(identity(r)).encode()
            elif op == OP_BULK_OUT:
                r.bulk_out(p[4:], struct.unpack_from("<I", p, 0)[0])
            elif op == OP_BULK_IN:
                n, t = struct.unpack_from("<II", p, 0)
                out = bytes(r.bulk_in(n, t))
            elif op == OP_INT_IN:
                n, t = struct.unpack_from("<II", p, 0)
                try:
                    out = bytes(r.interrupt_in(n, t))
                except ReaderTimeout:
                    status = ST_NONE
            elif op == OP_CONTROL:
                bm, br, wv, wi, _t = struct.unpack_from("<BBHHI", p, 0)
                body = p[10:]
                arg = struct.unpack_from("<I", body, 1)[0] if body[0] == 0 else body[1:]
                res = r.control(bm, br, wv, wi, arg)
                out = bytes(res) if res is not None else b""
            elif op == OP_JOIN:
                if not joined:
                    clock.add_participants(1)
                    clock.enter()
                    joined = True
            elif op == OP_LEAVE:
                if joined:
                    clock.leave()
                    joined = False
            elif op == OP_STATS:
                out = json.dumps(stats_of(clock, bus)).encode()
            elif op == OP_QUIT:
                quit_event.set()
            else:
                raise EmulatedReaderError("unknown op %d" % op, None, "BAD_OP")
        except ReaderTimeout as e:
            status, out = ST_TIMEOUT, str(e).encode()
        except ReaderStall as e:
            status, out = ST_STALL, str(e).encode()
        except ReaderGone as e:
            status, out = ST_GONE, str(e).encode()
        except (EmulatedReaderError, struct.error, IndexError, ValueError) as e:
            status, out = ST_ERROR, ("%s: %s" % (type(e).__name__, e)).encode()
        try:
            sock.sendall(ANS.pack(status, len(out)) + out)
        except OSError:
            break                       # the parent went away
    if joined:
        clock.leave()


def child_main(argv):
    """``python -m ccidkit.emu.bench.remote_transport CONFIG_JSON FD...``"""
    config = json.loads(argv[0])
    readers, clock, bus = build_readers(config)
    socks = [socket.socket(fileno=int(fd)) for fd in argv[1:]]
    quit_event = threading.Event()
    threads = [threading.Thread(target=_serve_one, args=(s, readers, clock, bus, quit_event),
                                daemon=True) for s in socks]
    for t in threads:
        t.start()
    for t in threads:
        while t.is_alive() and not quit_event.is_set():
            t.join(0.5)
    return 0


class RemoteReaders:
    """The emulated readers of ``profile`` in a child process (see the module doc)."""

    def __init__(self, profile, card="usim", records=250, time_scale=0.0):
        from ...emu.profiles import bank_of
        bank = bank_of(profile)
        count = bank["count"] if bank else 1
        config = {"profile": profile, "card": card, "records": records,
                  "time_scale": time_scale}
        pairs = [socket.socketpair() for _ in range(count)]
        child_fds = [b.fileno() for _a, b in pairs]
        env = dict(os.environ)
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "ccidkit.emu.bench.remote_transport", json.dumps(config)]
            + [str(fd) for fd in child_fds], pass_fds=child_fds, env=env)
        for _a, b in pairs:
            b.close()
        self.socks = [a for a, _b in pairs]
        for s in self.socks:
            s.settimeout(CHILD_START_S)
        try:
            self.transports = [RemoteTransport(self.socks[i], i) for i in range(count)]
        except (OSError, TransportError):
            self.close()
            raise
        for s in self.socks:
            s.settimeout(None)
        self.pid = self.proc.pid

    def join(self, i):
        self.transports[i].join()

    def leave(self, i):
        self.transports[i].leave()

    def stats(self):
        return self.transports[0].stats()

    def close(self):
        if self.proc is None:
            return
        try:
            if self.socks:
                try:
                    self.socks[0].sendall(REQ.pack(OP_QUIT, 0, 0))
                    read_answer(self.socks[0])
                except (OSError, RemoteError):
                    pass
            for s in self.socks:
                s.close()
            try:
                self.proc.wait(timeout=30)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(timeout=30)
        finally:
            self.proc = None


if __name__ == "__main__":
    sys.exit(child_main(sys.argv[1:]))
