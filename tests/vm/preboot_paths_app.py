"""preboot-paths-app: the VM side of tests/vm/test_preboot_paths.py (embedded in the image that test builds).

    preboot-paths-app [--wait-ms MS] [--long N]
    preboot-paths-app --each

Runs the in-firmware driver (core/driver.py over uefi/fw/usb_transport.py) on
the three readers the test attaches and prints one line per fact, each
starting ``paths: ``:

  usb-ccid (08E6:4433, QEMU's reader, a MiniCard behind VSCard): the ATR,
      SELECT of EF 2F00 and a READ BINARY of its 1 KiB in 256-byte pieces
      (QEMU drops answers over 374 bytes), the bytes in hexadecimal.
  sysmoOCTSIM (1D50:6141, usb-redir, MiniCards in slots 0-2): the three
      slots powered, then SELECT and READ BINARY on all three through one
      ``transmit_many`` each; the most commands the driver had on the wire
      before reading an answer (``in flight``).
  GemPC Twin (08E6:3437, usb-redir, a MiniCard): a long chained T=1 ECHO
      during which the host takes the card out (the driver's error and its
      PC/SC name are printed), the card put back and an ECHO again; then a
      long ECHO during which the reader leaves the bus, the reader back (a
      new UsbIo handle) and an ECHO again.

With ``--each`` it instead takes every reader it finds, powers slot 0 and
prints the reader's exchange level, the ATR, an ECHO and the first 32 bytes
of EF 2F00 per reader (``paths: each``): the tests put a host card served by
the host's pcscd behind each reader, or a MiniCard in each of the other
emulated readers' profiles.

The host learns where the app is from ``paths: twin wait ...`` lines. Status:
0 done, 3 a reader missing, 4 an unexpected driver error, 6 timeout.
"""

import binascii
import sys

from ccidkit.core.apdu import transmit_with_auto_response
from ccidkit.core.driver import PROTOCOL_T0, PROTOCOL_T1, Reader, ReaderError
from ccidkit.core.hexutil import to_hex
from ccidkit.core.pcsc import from_reader_error
from ccidkit.core.transport import TransportError
from ccidkit.uefi.fw import efi

QEMU_CCID = "08E6:4433"
OCTSIM = "1D50:6141"
TWIN = "08E6:3437"
SELECT_2F00 = bytes((0x00, 0xA4, 0x00, 0x0C, 0x02, 0x2F, 0x00))   # ISO/IEC 7816-4 §11.2.2
GET_DATA = bytes((0x00, 0xCA, 0x01, 0x00, 0x00))                   # ISO/IEC 7816-4 §11.4.3
POLL_MS = 100
MAX_ROUNDS = 100000


def _out(line):
    sys.stdout.write("paths: " + line + "\n")


def _tag(r):
    return "%04X:%04X" % (r.vid, r.pid)


def _echo(n):
    data = bytes([(0x30 + i) & 0xFF for i in range(n)])
    return bytes((0x80, 0xEE, 0, 0, 0, n >> 8, n & 0xFF)) + data + b"\x00\x00", data


def _read_binary(offset, le):
    # ISO/IEC 7816-4 §11.3.3: offset in P1 P2 (b8 of P1 = 0), Le 00 = 256
    return bytes((0x00, 0xB0, (offset >> 8) & 0x7F, offset & 0xFF, le & 0xFF))


def usb_ccid_path(r):
    atr, proto = r.connect(0, PROTOCOL_T0 | PROTOCOL_T1)
    _out("ccid ATR %s T=%d" % (to_hex(atr), proto))
    _out("ccid SELECT 2F00 <- %s" % to_hex(r.transmit(0, SELECT_2F00)))
    for off in range(0, 1024, 256):
        ans = r.transmit(0, _read_binary(off, 0))
        _out("ccid READ %d %d %s %s" % (off, len(ans) - 2, to_hex(ans[-2:]),
                                        binascii.hexlify(ans[:-2]).decode()))
    # the host leaves this one unanswered (a silent card): QEMU's reader never
    # answers the XfrBlock and keeps its bSeq queued, and every later answer
    # carries the bSeq of the command before it (the answers_in_order quirk)
    try:
        r.transmit(0, GET_DATA)
        _out("ccid silent answered")
    except ReaderError as e:
        _out("ccid silent error %s -> %s" % (e.name, from_reader_error(e).name))
    _out("ccid after SELECT 2F00 <- %s" % to_hex(r.transmit(0, SELECT_2F00)))
    _out("ccid after READ 512 <- %s" % to_hex(r.transmit(0, _read_binary(512, 16))))


class _WireCount:
    """Counts PC_to_RDR messages sent since the last bulk-IN read (the
    commands on the wire at once), keeping the highest figure."""

    def __init__(self, transport):
        self.t = transport
        self.run = 0
        self.peak = 0
        self._out = transport.bulk_out
        self._in = transport.bulk_in

    def bulk_out(self, data, timeout_ms):
        self.run += 1
        if self.run > self.peak:
            self.peak = self.run
        return self._out(data, timeout_ms)

    def bulk_in(self, max_len, timeout_ms):
        data = self._in(max_len, timeout_ms)
        self.run = 0
        return data

    def install(self):
        self.t.bulk_out = self.bulk_out
        self.t.bulk_in = self.bulk_in


def octsim_path(r):
    slots = (0, 1, 2)
    for i in slots:
        atr, proto = r.connect(i, PROTOCOL_T0 | PROTOCOL_T1)
        _out("octsim slot %d ATR %s T=%d" % (i, to_hex(atr), proto))
    _out("octsim max_busy %d" % r.max_busy)
    w = _WireCount(r.transport)
    w.install()
    req = {}
    for i in slots:
        req[i] = SELECT_2F00
    res = r.transmit_many(req)
    for i in slots:
        _out("octsim slot %d SELECT <- %s" % (i, _show(res[i])))
    _out("octsim SELECT in flight %d" % w.peak)
    w.peak = 0
    req = {}
    for i in slots:
        req[i] = _read_binary(64 * i, 32)
    res = r.transmit_many(req)
    for i in slots:
        _out("octsim slot %d READ %d <- %s" % (i, 64 * i, _show(res[i])))
    _out("octsim READ in flight %d" % w.peak)


def _show(x):
    if isinstance(x, ReaderError):
        return "error %s" % x.name
    return to_hex(x)


def _t1(r, tag):
    atr, proto = r.connect(0, PROTOCOL_T1 | PROTOCOL_T0)
    if proto != 1:
        # ISO/IEC 7816-3 §9: a warm reset, then PPS to T=1 (the ATR offers it)
        r.reset(0)
        proto = r.set_protocol(0, PROTOCOL_T1)
    _out("twin %s T=%d IFSC %d" % (tag, proto, r.slots[0].t1.ifsc))


def _echo_ok(r, n, tag):
    apdu, data = _echo(n)
    ans = r.transmit(0, apdu)
    _out("twin %s ECHO %d %s" % (tag, n, "ok" if ans == data + b"\x90\x00"
                                  else "WRONG %d bytes" % len(ans)))


def _echo_broken(r, n, tag):
    """A long ECHO the host breaks; the driver's error, or None if it went through."""
    apdu, data = _echo(n)
    _out("twin wait %s" % tag)
    try:
        r.transmit(0, apdu)
    except ReaderError as e:
        _out("twin %s error %s -> %s" % (tag, e.name, from_reader_error(e).name))
        return e
    _out("twin %s ECHO went through" % tag)
    return None


def _deadline(wait_ms):
    return efi.ticks_us() + wait_ms * 1000


def _scan_twin(wait_ms, present):
    """Scan the firmware's UsbIo handles (every 500 ms, bounded) until the Twin
    is listed (``present``: its new transport) or not listed (True)."""
    from ccidkit.uefi.fw.usb_transport import EfiUsbTransport, _ccid_desc
    end = _deadline(wait_ms)
    for _ in range(MAX_ROUNDS):
        found = None
        try:
            devs = efi.usb_devices()
        except efi.EfiError:
            devs = []
        for dev in devs:
            if "%04X:%04X" % (dev.vid, dev.pid) == TWIN:
                desc = _ccid_desc(dev)
                if desc is not None:
                    found = dev, desc
        if present and found is not None:
            return EfiUsbTransport(found[0], found[1])
        if not present and found is None:
            return True
        if efi.ticks_us() > end:
            return None
        efi.stall(500000)
    return None


def twin_path(r, wait_ms, long_n):
    _t1(r, "start")
    if _echo_broken(r, long_n, "remove") is None:
        return 4
    _out("twin wait insert")
    end = _deadline(wait_ms)
    for _ in range(MAX_ROUNDS):
        r.poll_events(POLL_MS)
        if r.slots[0].present:
            break
        if efi.ticks_us() > end:
            _out("timeout: no card back")
            return 6
    _out("twin card back")
    _t1(r, "inserted")
    _echo_ok(r, 4096, "inserted")

    if _echo_broken(r, long_n, "unplug") is None:
        return 4
    # the transfer the unplug broke fails as a transfer error; once the firmware
    # has taken the UsbIo handle away the driver names the reader removed (seen
    # by the next exchange or by the driver's event poll, whichever comes first)
    seen = None
    end = _deadline(wait_ms)
    for _ in range(MAX_ROUNDS):
        try:
            r.transmit(0, SELECT_2F00)
        except ReaderError as e:
            seen = e
            if e.name == "IFD_NO_SUCH_DEVICE":
                break
        r.poll_events(POLL_MS)
        if efi.ticks_us() > end:
            break
    if seen is None or seen.name != "IFD_NO_SUCH_DEVICE":
        _out("twin reader still answering")
        return 4
    _out("twin then %s -> %s" % (seen.name, from_reader_error(seen).name))
    if _scan_twin(wait_ms, False) is None:
        _out("timeout: the reader stays listed")
        return 6
    _out("twin wait plug")
    fresh = _scan_twin(wait_ms, True)
    if fresh is None:
        _out("timeout: no reader back")
        return 6
    r2 = Reader(fresh).open()
    _out("twin back slot 0 %s" % ("present" if r2.slots[0].present else "empty"))
    _t1(r2, "back")
    _echo_ok(r2, 4096, "back")
    return 0


LEVELS = {0x00000000: "character", 0x00010000: "TPDU", 0x00020000: "short APDU",
          0x00040000: "extended APDU"}


def each_path(readers):
    """Slot 0 of every reader: the same exchanges through each."""
    for r in readers:
        _out("each %s level %s" % (_tag(r), LEVELS.get(r.exchange, "0x%08X" % r.exchange)))
        atr, proto = r.connect(0, PROTOCOL_T0 | PROTOCOL_T1)
        _out("each %s ATR %s T=%d" % (_tag(r), to_hex(atr), proto))
        data = bytes([(0x30 + i) & 0xFF for i in range(16)])
        # short case 4; at T=0 the card's 61xx is followed by GET RESPONSE (ISO/IEC 7816-4 §5.3.4)
        ans = transmit_with_auto_response(bytes((0x80, 0xEE, 0, 0, 16)) + data + b"\x00",
                                          lambda c: r.transmit(0, c))
        _out("each %s ECHO %s" % (_tag(r), to_hex(ans)))
        _out("each %s SELECT 2F00 <- %s" % (_tag(r), to_hex(r.transmit(0, SELECT_2F00))))
        _out("each %s READ 0 <- %s" % (_tag(r), to_hex(r.transmit(0, _read_binary(0, 32)))))
    return 0


def main(argv):
    wait_ms = 120000
    long_n = 8192
    args = list(argv)
    each = False
    while args:
        a = args.pop(0)
        if a == "--each":
            each = True
            continue
        if a in ("--wait-ms", "--long") and args:
            try:
                v = int(args.pop(0))
            except ValueError:
                v = -1
            if v <= 0 or (a == "--long" and v > 65535):
                _out("bad value for %s" % a)
                return 2
            if a == "--wait-ms":
                wait_ms = v
            else:
                long_n = v
        else:
            _out("usage: preboot-paths-app [--wait-ms MS] [--long N] | --each")
            return 2
    from ccidkit.uefi.fw.usb_transport import find_readers
    byname = {}
    try:
        for t in find_readers():
            r = Reader(t).open()
            byname[_tag(r)] = r
        if each:
            if not byname:
                _out("missing reader: none found")
                return 3
            status = each_path([byname[k] for k in sorted(byname)])
            if not status:
                _out("done")
            return status
        for want in (QEMU_CCID, OCTSIM, TWIN):
            if want not in byname:
                _out("missing reader %s" % want)
                return 3
        usb_ccid_path(byname[QEMU_CCID])
        octsim_path(byname[OCTSIM])
        status = twin_path(byname[TWIN], wait_ms, long_n)
    except (ReaderError, TransportError) as e:
        _out("driver error: %s %s" % (e.name, e))
        return 4
    if not status:
        _out("done")
    return status
