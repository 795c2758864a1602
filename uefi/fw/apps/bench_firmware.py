"""bench-firmware: APDU round trips through EFI_USB_IO, timed inside the firmware.

    bench-firmware [--apdus N] [--readers K] [--wait-ms MS]

The host side is ``ccidkit bench firmware`` (emu/bench/firmware.py): it boots
this app with QEMU's usb-ccid (our VSCard card behind it) and an emulated
reader over usb-redir, stamps the console lines as they arrive and parses
them. The app waits (bounded by --wait-ms) until K CCID readers are there,
then on each one, in VID:PID order: opens it with the in-firmware driver
(core/driver.py over uefi/fw/usb_transport.py), powers slot 0 (T=1 when the
reader and the card offer it, else T=0), sends one ECHO APDU
(``80 EE 00 00 04 DE AD BE EF 00``, a short case-4 APDU) and then N more,
each timed with efi.ticks_us() around Reader.transmit (GET RESPONSE
included when T=0 answers 61xx). Lines, each starting ``bench-firmware: ``:

    start                                    the app runs (after boot)
    reader 08E6:4433 T=0 level TPDU          one per reader
    first-apdu 08E6:4433 ok                  right after the first answer
    rtt 08E6:4433 us 812,790,...             the N round trips, 32 a line
    done

Status: 0 done, 2 usage, 3 not enough readers, 4 a driver error, 5 a wrong
answer.
"""

import sys

from ccidkit.core.driver import PROTOCOL_T0, PROTOCOL_T1, Reader, ReaderError
from ccidkit.core.transport import TransportError
from ccidkit.uefi.fw import efi

ECHO = bytes((0x80, 0xEE, 0x00, 0x00, 0x04, 0xDE, 0xAD, 0xBE, 0xEF, 0x00))
ANSWER = bytes((0xDE, 0xAD, 0xBE, 0xEF, 0x90, 0x00))
MAX_APDUS = 10000
MAX_SCANS = 1000
SCAN_STEP_US = 250000
PER_LINE = 32


def _out(line):
    sys.stdout.write("bench-firmware: " + line + "\n")


def _tag(r):
    return "%04X:%04X" % (r.vid, r.pid)


def _transmit(r):
    answer = r.transmit(0, ECHO)
    if len(answer) == 2 and answer[0] == 0x61:
        # T=0 at TPDU level: the data waits for GET RESPONSE (ISO/IEC 7816-4 §5.3.4)
        answer = r.transmit(0, bytes((0x00, 0xC0, 0x00, 0x00, answer[1])))
    return answer


def _readers(count, wait_ms):
    from ccidkit.uefi.fw.usb_transport import find_readers
    start = efi.ticks_us()
    found = []
    for _ in range(MAX_SCANS):
        found = find_readers()
        if len(found) >= count:
            return found
        if efi.ticks_us() - start > wait_ms * 1000:
            return found
        for t in found:
            t.close()
        efi.stall(SCAN_STEP_US)
    return found


def bench(r, apdus):
    proto = r.connect(0, PROTOCOL_T1 if r.descriptor.dwProtocols & 2 else PROTOCOL_T0)[1]
    _out("reader %s T=%d level %s" % (_tag(r), proto, r.level_name))
    if _transmit(r) != ANSWER:
        _out("first-apdu %s WRONG" % _tag(r))
        return 5
    _out("first-apdu %s ok" % _tag(r))
    times = []
    for _ in range(apdus):
        t0 = efi.ticks_us()
        answer = _transmit(r)
        times.append(efi.ticks_us() - t0)
        if answer != ANSWER:
            _out("rtt %s WRONG answer" % _tag(r))
            return 5
    for i in range(0, len(times), PER_LINE):
        _out("rtt %s us %s" % (_tag(r), ",".join([str(t) for t in times[i:i + PER_LINE]])))
    return 0


def main(argv):
    _out("start")
    apdus = 100
    count = 1
    wait_ms = 60000
    args = list(argv)
    while args:
        a = args.pop(0)
        if a in ("--apdus", "--readers", "--wait-ms") and args:
            try:
                v = int(args.pop(0))
            except ValueError:
                v = -1
            if v < 0 or (a == "--apdus" and v > MAX_APDUS):
                _out("bad value for %s" % a)
                return 2
            if a == "--apdus":
                apdus = v
            elif a == "--readers":
                count = v
            else:
                wait_ms = v
        else:
            _out("usage: bench-firmware [--apdus N] [--readers K] [--wait-ms MS]")
            return 2
    found = _readers(count, wait_ms)
    if len(found) < count:
        _out("%d reader(s), %d expected" % (len(found), count))
        return 3
    status = 0
    try:
        readers = [Reader(t).open() for t in found]
        order = sorted([(_tag(r), i) for i, r in enumerate(readers)])
        for _, i in order:
            status = bench(readers[i], apdus) or status
    except (ReaderError, TransportError) as e:
        _out("driver error: %s" % e)
        return 4
    _out("done")
    return status
