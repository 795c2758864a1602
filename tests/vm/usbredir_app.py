"""usbredir-app: the VM side of tests/vm/test_usbredir.py (embedded in the image that test builds).

    usbredir-app [--t1-echo N] [--wait-ms MS] [--replug]

Runs the in-firmware driver (core/driver.py over uefi/fw/usb_transport.py) on
every CCID reader the firmware sees, and prints one line per fact for the
host to check, each starting ``usbredir: `` and naming the reader VID:PID:

    usbredir: reader 08E6:3437 slots 1 level TPDU dwFeatures 0x00010230 ...
    usbredir: 08E6:3437 slot 0 present
    usbredir: 08E6:3437 slot 0 ATR 3B ... T=1
    usbredir: 08E6:3437 slot 0 APDU <- DE AD BE EF 90 00
    usbredir: 08E6:3437 slot 0 ECHO 4096 bytes T=1 ok
    usbredir: ready
    usbredir: 08E6:3437 slot 0 removed
    usbredir: 1D50:6141 gone

After ``ready`` it watches the readers' events (bounded by --wait-ms) until
every reader is gone; with --replug it then waits (same bound) for a reader to
come back, a new UsbIo handle, and prints ``usbredir: back`` before it
describes the reader and exchanges an APDU with it again. Status: 0 done,
3 no reader, 4 a driver error, 6 timeout waiting for the readers.
"""

import sys

from ccidkit.core.driver import PROTOCOL_T0, PROTOCOL_T1, Reader, ReaderError
from ccidkit.core.hexutil import to_hex
from ccidkit.core.transport import TransportError
from ccidkit.uefi.fw import efi

ECHO = bytes((0x80, 0xEE, 0x00, 0x00, 0x04, 0xDE, 0xAD, 0xBE, 0xEF, 0x00))
POLL_MS = 100
MAX_ROUNDS = 100000


def _out(line):
    sys.stdout.write("usbredir: " + line + "\n")


def _tag(r):
    return "%04X:%04X" % (r.vid, r.pid)


def _echo(n):
    data = bytes([(0x30 + i) & 0xFF for i in range(n)])
    return bytes((0x80, 0xEE, 0, 0, 0, n >> 8, n & 0xFF)) + data + b"\x00\x00", data


def describe(r):
    d = r.descriptor
    _out("reader %s slots %d level %s dwFeatures 0x%08X dwProtocols 0x%08X "
         "dwMaxCCIDMessageLength %d dwMaxIFSD %d bMaxCCIDBusySlots %d" % (
             _tag(r), len(r.slots), r.level_name, d.dwFeatures, d.dwProtocols,
             d.dwMaxCCIDMessageLength, d.dwMaxIFSD, d.bMaxCCIDBusySlots))
    for s in r.slots:
        _out("%s slot %d %s" % (_tag(r), s.index, "present" if s.present else "empty"))


def exchange(r, t1_echo):
    atr, proto = r.connect(0, PROTOCOL_T1 | PROTOCOL_T0)
    _out("%s slot 0 ATR %s T=%d" % (_tag(r), to_hex(atr), proto))
    answer = r.transmit(0, ECHO)
    if len(answer) == 2 and answer[0] == 0x61:
        # T=0 at TPDU level: the data waits for GET RESPONSE (ISO/IEC 7816-4 §5.3.4)
        _out("%s slot 0 APDU <- %s" % (_tag(r), to_hex(answer)))
        answer = r.transmit(0, bytes((0x00, 0xC0, 0x00, 0x00, answer[1])))
    _out("%s slot 0 APDU <- %s" % (_tag(r), to_hex(answer)))
    if t1_echo and r.descriptor.dwProtocols & 2 and proto != 1:
        # ISO/IEC 7816-3 §9: a warm reset, then PPS to T=1 (the ATR offers it)
        r.reset(0)
        proto = r.set_protocol(0, PROTOCOL_T1)
        _out("%s slot 0 reset, T=%d IFSC %d" % (_tag(r), proto, r.slots[0].t1.ifsc))
    if t1_echo and proto == 1:
        apdu, data = _echo(t1_echo)
        answer = r.transmit(0, apdu)
        _out("%s slot 0 ECHO %d bytes T=1 %s" % (_tag(r), t1_echo,
                                                "ok" if answer == data + b"\x90\x00"
                                                else "WRONG %d bytes" % len(answer)))


def _alive(r):
    """GET_STATUS on the default pipe: fails once the UsbIo handle is gone."""
    try:
        r.transport.control(0x80, 0, 0, 0, 2, 1000)     # USB 2.0 §9.4.5 GET_STATUS
    except TransportError as e:
        _out("%s: %s" % (_tag(r), e.name))
        return False
    return True


def watch(readers, wait_ms):
    told = {}
    start = efi.ticks_us()
    for _ in range(MAX_ROUNDS):
        if efi.ticks_us() - start > wait_ms * 1000:
            _out("timeout: readers still here after %d ms" % wait_ms)
            return 6
        left = 0
        for r in readers:
            if told.get(id(r)):
                continue
            changed = r.poll_events(POLL_MS)
            # the driver marks a reader gone when its interrupt poll finds the device
            # unplugged; GET_STATUS shows a transfer to the handle failing as well
            alive = _alive(r)
            if r.gone or not alive:
                r.gone = True
                told[id(r)] = True
                _out("%s gone" % _tag(r))
                continue
            left += 1
            for i in changed:
                _out("%s slot %d %s" % (_tag(r), i,
                                        "inserted" if r.slots[i].present else "removed"))
        if not left:
            return 0
    return 6


def wait_back(wait_ms):
    """Readers found by a fresh scan (every 500 ms, bounded), or []."""
    from ccidkit.uefi.fw.usb_transport import find_readers
    start = efi.ticks_us()
    for _ in range(MAX_ROUNDS):
        found = find_readers()
        if found:
            return found
        if efi.ticks_us() - start > wait_ms * 1000:
            return []
        efi.stall(500000)
    return []


def main(argv):
    t1_echo = 0
    wait_ms = 60000
    replug = False
    args = list(argv)
    while args:
        a = args.pop(0)
        if a == "--replug":
            replug = True
        elif a in ("--t1-echo", "--wait-ms") and args:
            try:
                v = int(args.pop(0))
            except ValueError:
                v = -1
            if v < 0:
                _out("bad value for %s" % a)
                return 2
            if a == "--t1-echo":
                t1_echo = v
            else:
                wait_ms = v
        else:
            _out("usage: usbredir-app [--t1-echo N] [--wait-ms MS] [--replug]")
            return 2
    from ccidkit.uefi.fw.usb_transport import find_readers
    readers = []
    try:
        for t in find_readers():
            readers.append(Reader(t).open())
        if not readers:
            _out("no CCID reader")
            return 3
        for r in readers:
            describe(r)
        for r in readers:
            if r.slots[0].present:
                exchange(r, t1_echo)
    except (ReaderError, TransportError) as e:
        _out("driver error: %s" % e)
        return 4
    _out("ready")
    status = watch(readers, wait_ms)
    if status or not replug:
        return status
    found = wait_back(wait_ms)
    if not found:
        _out("timeout: no reader came back within %d ms" % wait_ms)
        return 6
    _out("back")
    try:
        for t in found:
            r = Reader(t).open()
            describe(r)
            if r.slots[0].present:
                exchange(r, 0)
    except (ReaderError, TransportError) as e:
        _out("driver error: %s" % e)
        return 4
    return 0
