"""`ccidkit demo`: the protocol core end to end on the host.

A virtual card's ATR is explained, the PPS for a 4 MHz / 250 kbit/s reader is
chosen and answered, then APDUs go over T=1 (IFSC 32, with scripted
transmission faults on the line) and over T=0 (ENVELOPE for extended
APDUs), traced as `pcscd -d` traces them. Exit status 0 only when every
answer is the expected one.
"""

import argparse

from ccidkit.core.apdu import CommandAPDU, explain_sw
from ccidkit.core.atr import parse_atr
from ccidkit.core.hexutil import trace_line
from ccidkit.core.pps import ReaderCaps, SpeedPolicy, parse_pps_response, pps_request_for
from ccidkit.core.t0 import T0Reader
from ccidkit.core.t1 import T1Reader
from ccidkit.emu.card.link import Fault, FaultLink
from ccidkit.emu.card.minicard import AID, MiniCard
from ccidkit.emu.card.t0 import T0Card
from ccidkit.emu.card.t1 import T1Card

TRACE_LIMIT = 24
MIN_FAULT_SIZE = 1024


def register(sub):
    p = sub.add_parser("demo", help="the protocol core end to end with a virtual card")
    p.add_argument("--size", type=_size, default=4096,
                   help="bytes each way of the large echo APDU, 1..65535 (default 4096)")
    p.add_argument("--no-faults", action="store_true", help="a clean line for T=1")
    p.add_argument("-v", "--verbose", action="store_true", help="also trace every T=1 block")
    p.set_defaults(func=run)


def _size(text):
    n = int(text)
    if not 1 <= n <= 65535:
        raise argparse.ArgumentTypeError("size must be 1..65535 (the Lc of one APDU)")
    return n


def _pattern(n):
    return bytes((i * 7 + (i >> 8)) & 0xFF for i in range(n))


class _Demo:
    def __init__(self, out=print):
        self.out = out
        self.failures = 0

    def check(self, what, ok):
        self.out("   %s %s" % ("ok  " if ok else "FAIL", what))
        if not ok:
            self.failures += 1

    def apdu(self, label, send, apdu, expect=None, expect_sw1=0x90):
        self.out(trace_line("->", apdu, TRACE_LIMIT))
        resp = send(apdu)
        self.out(trace_line("<-", resp, TRACE_LIMIT))
        sw_ok = resp[-2] == expect_sw1 and (expect_sw1 != 0x90 or resp[-1] == 0x00)
        ok = sw_ok and (expect is None or resp[:-2] == expect)
        self.check("%s: %s" % (label, explain_sw(resp[-2], resp[-1])), ok)
        return resp


def run(args):
    d = _Demo()
    out = d.out
    card = MiniCard()
    atr = parse_atr(card.atr)
    out("== ATR of the virtual card")
    for line in atr.explain():
        out("   " + line)

    out("")
    out("== PPS for a reader at 4 MHz allowing 250 kbit/s")
    caps = ReaderCaps(4000000, 250000)
    request = pps_request_for(atr, caps, SpeedPolicy(), protocol=1)
    out(trace_line("->", request))
    answer = request  # the card accepts the proposal: it echoes it (ISO/IEC 7816-3 §9.3)
    out(trace_line("<-", answer))
    result = parse_pps_response(request, answer)
    rate = caps.clock_hz * result.di // result.fi
    d.check("PPS accepted: T=%d, Fi %d, Di %d, %d bit/s" % (result.protocol, result.fi,
                                                             result.di, rate),
            result.protocol == 1 and rate == 250000)

    data = _pattern(args.size)
    echo = CommandAPDU(0x80, 0xEE, 0x00, 0x00, data, ne=len(data)).to_bytes()

    out("")
    # The fault script needs a chained exchange long enough to carry it.
    faulty = not args.no_faults and len(data) >= MIN_FAULT_SIZE
    out("== T=1, IFSC %d, %s" % (atr.ifsc, "with corrupted, lost and duplicated blocks, WTX, "
                                 "IFS change on the line" if faulty else "clean line"))
    card_t1 = T1Card(card, ifsc=atr.ifsc)
    clean = FaultLink(card_t1, [], record=args.verbose)
    # Block indexes of the echo exchange, spread over its first chain.
    faults = [] if not faulty else [
        Fault("corrupt", at=3), Fault("corrupt", at=9, to="reader"),
        Fault("lose", at=15), Fault("lose", at=21, to="reader"),
        Fault("bad_ns", at=27), Fault("duplicate", at=33),
        Fault("wtx", at=40, value=2), Fault("ifs", at=46, value=24),
    ]
    faulty_link = FaultLink(card_t1, faults, record=args.verbose)
    reader = T1Reader(ifsc=atr.ifsc, bwi=atr.bwi, cwi=atr.cwi,
                      fi=result.fi, di=result.di, clock_hz=caps.clock_hz)
    ifsd = reader.negotiate_ifsd(clean)
    d.check("IFSD negotiated: %d" % ifsd, ifsd == 254)

    link = clean

    def t1_send(apdu):
        return reader.transceive(apdu, link)

    select = CommandAPDU(0x00, 0xA4, 0x04, 0x0C, AID).to_bytes()
    d.apdu("SELECT the application by AID", t1_send, select)
    before = card.count(0xEE)
    link = faulty_link
    d.apdu("ECHO %d bytes each way" % len(data), t1_send, echo, expect=data)
    d.check("the command reached the card exactly once", card.count(0xEE) == before + 1)
    if faults:
        fired = sum(1 for f in faults if f.fired)
        d.check("%d of %d scripted faults hit the line and were recovered "
                "(%d blocks lost, %d corrupted, %d retransmissions)"
                % (fired, len(faults), link.lost, link.corrupted, reader.retransmissions),
                fired == len(faults))
    if args.verbose:
        for direction, block in clean.log + faulty_link.log:
            out("   " + trace_line(direction, block, TRACE_LIMIT))

    out("")
    out("== T=0 at TPDU level (procedure bytes in the reader; ENVELOPE for extended APDUs)")
    card_t0 = T0Card(card)
    t0 = T0Reader()

    def t0_send(apdu):
        return t0.transceive(apdu, lambda tpdu, timeout_us: card_t0.process_tpdu(tpdu))

    select_fid = CommandAPDU(0x00, 0xA4, 0x00, 0x00, b"\x2F\x00", ne=256).to_bytes()
    resp = d.apdu("SELECT EF 2F00 (case 4: the card says 61xx, the application asks)",
                  t0_send, select_fid, expect_sw1=0x61)
    if resp[-2] == 0x61:
        fcp = d.apdu("GET RESPONSE", t0_send, bytes((0x00, 0xC0, 0x00, 0x00, resp[-1])))
        d.check("FCP of EF 2F00 (tag 62, FID 2F00)", fcp[0] == 0x62 and b"\x83\x02\x2F\x00" in fcp)
    d.apdu("READ BINARY 256 bytes", t0_send, bytes.fromhex("00B0000000"),
           expect=bytes(i & 0xFF for i in range(256)))
    if len(data) > 255:
        d.apdu("ECHO %d bytes each way (extended, via ENVELOPE)" % len(data), t0_send, echo,
               expect=data)
    else:
        resp = d.apdu("ECHO %d bytes each way (case 4: 61xx first)" % len(data), t0_send, echo,
                      expect_sw1=0x61)
        d.apdu("GET RESPONSE", t0_send, bytes((0x00, 0xC0, 0x00, 0x00, resp[-1])), expect=data)

    out("")
    if d.failures:
        out("demo: %d check(s) FAILED" % d.failures)
        return 1
    out("demo: all checks passed")
    return 0

