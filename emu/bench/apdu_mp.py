"""The per-APDU driver cost, replayed: the part of ``ccidkit bench apdu`` that
runs unchanged on CPython and on the MicroPython unix binary (restricted
subset, docs/subset.md).

Method (the "replay" method): a reader and card were recorded once on
CPython (emu/bench/apdu.py drives the real driver over an emulated reader
and notes every USB call and its answer). Here :class:`ReplayTransport`
plays those answers back to a fresh ``core.driver.Reader``: the driver, its
CCID encoder/decoder and bulk-IN reassembly, the T=1 / T=0 engines and the
APDU layer run for real, while the card and the reader model cost nothing
(their answers are ready-made bytes). Only the replay's own bookkeeping
remains (take the next answer, put the command's bSeq in it); it is timed
on its own by calling the transport the same way without the driver
(``stub_us``) and subtracted.

A recording holds two identical exchanges: after two of them every sequence
bit (T=1 N(S)/N(R) on both sides) is back where it started, so the loop
answers can be replayed in a cycle for as long as the timing needs. Only
bSeq differs from one cycle to the next: it is copied from the command.

Input (text, one item a line, hex where bytes; several recordings in one
stream, each ended by ``G``)::

    K name                  which recording (echoed in the output)
    I key value             transport identity (config_descriptor and
                            strings in hex, numbers in decimal)
    P mask                  set_protocol's preferred protocols
    S apdu                  a setup APDU transmitted once after set_protocol
    X apdu [apdu ...]       the APDUs of one exchange, in order
    R response              the expected answer to the exchange's last APDU
    E kind data             a setup event, in order
    L kind data             a loop event (two exchanges), replayed in cycles
    N iterations runs       how many exchanges per timed run, and runs
    G                       go

Event kinds: ``bo`` bulk-OUT (the data sent), ``bi`` bulk-IN, ``ci``
control, ``ii`` interrupt-IN (the data received); ``bi!``, ``ci!``, ``ii!``
the call failed (data: TIMEOUT, STALL or NONE for an empty interrupt).

Output: ``RUN name us`` per run (µs per exchange, the stub's share
subtracted), ``STUB name us``, ``OK name`` after the answers were checked,
``ERR name message`` when the recording could not be replayed.
"""

import sys
import time
from binascii import hexlify, unhexlify

from ...core.transport import Transport, TransportError, TransportTimeout, TransportStall
from ...core.driver import Reader, ReaderError
from ...core.errors import CcidkitError


class ReplayError(CcidkitError):
    """The replay went another way than the recording (name REPLAY_DIVERGED),
    or the recording is malformed (REPLAY_BAD_INPUT)."""


def _now_us():
    return time.ticks_us()


def _diff_us(a, b):
    return time.ticks_diff(b, a)


def _now_us_cpy():
    return time.perf_counter() * 1000000.0


def _diff_us_cpy(a, b):
    return b - a


try:
    time.ticks_us
    NOW_US = _now_us
    DIFF_US = _diff_us
    CLOCK_NAME = "time.ticks_us (wall clock of a CPU-bound loop)"
except AttributeError:
    NOW_US = _now_us_cpy
    DIFF_US = _diff_us_cpy
    CLOCK_NAME = "time.perf_counter"


def _fail(kind, data):
    if data == "TIMEOUT":
        return TransportTimeout("replayed timeout")
    if data == "STALL":
        return TransportStall("replayed stall")
    return TransportError("replayed %s failure %s" % (kind, data))


class ReplayTransport(Transport):
    """A Transport answering from a recording: ``setup`` events once, in
    order, then the ``loop`` events in a cycle (bulk-OUT / bulk-IN only)."""

    def __init__(self, ident, setup, loop):
        for k in ident:
            setattr(self, k, ident[k])
        self._setup = setup
        self._pos = 0
        # the loop: only the bulk-IN answers matter once the setup is over
        answers = []
        outs = []
        for kind, data in loop:
            if kind == "bi":
                answers.append(bytearray(data))
            elif kind == "bo":
                outs.append(data)
            else:
                raise ReplayError("loop event %s: only bulk transfers repeat" % kind,
                                  name="REPLAY_BAD_INPUT")
        if not answers or len(answers) != len(outs):
            raise ReplayError("the loop needs one bulk-IN answer per bulk-OUT",
                              name="REPLAY_BAD_INPUT")
        self._answers = answers
        self._outs = outs
        self._n = len(answers)
        self._i = 0
        self._seq = 0
        self.verify = False
        self._oi = 0

    def _event(self, kind):
        if self._pos >= len(self._setup):
            return None
        k, data = self._setup[self._pos]
        if k != kind and k != kind + "!":
            raise ReplayError("setup call %d is %s, the recording has %s" % (self._pos, kind, k),
                              name="REPLAY_DIVERGED")
        self._pos += 1
        if k != kind:
            raise _fail(kind, data)
        return data

    @property
    def in_setup(self):
        return self._pos < len(self._setup)

    def bulk_out(self, data, timeout_ms):
        self._seq = data[6]
        if self._pos < len(self._setup):
            self._event("bo")
            return
        if self.verify:
            want = self._outs[self._oi]
            self._oi = (self._oi + 1) % len(self._outs)
            got = bytearray(data)
            got[6] = want[6]
            if bytes(got) != bytes(want):
                raise ReplayError("bulk-OUT differs from the recording: %s" % hexlify(data),
                                  name="REPLAY_DIVERGED")

    def bulk_in(self, max_len, timeout_ms):
        if self._pos < len(self._setup):
            a = bytearray(self._event("bi"))
        else:
            a = self._answers[self._i]
            self._i += 1
            if self._i == self._n:
                self._i = 0
        if len(a) > 6:
            a[6] = self._seq          # the answer carries the command's bSeq (CCID §6.2)
        return bytes(a)

    def interrupt_in(self, max_len, timeout_ms):
        data = self._event("ii")
        if data is None:
            raise TransportTimeout("no interrupt after the setup")
        return data

    def control(self, bmRequestType, bRequest, wValue, wIndex, data_or_length, timeout_ms):
        data = self._event("ci")
        if data is None:
            raise TransportStall("no control transfer after the setup")
        return data

    def stub_exchange(self, count):
        """The transport's own share: the loop's calls without the driver."""
        outs = self._outs
        n = len(outs)
        k = 0
        for _ in range(count):
            for j in range(n):
                self.bulk_out(outs[k], 0)
                self.bulk_in(65554, 0)
                k += 1
                if k == n:
                    k = 0


class Recording:
    """One parsed recording (see the module documentation for the format)."""

    def __init__(self):
        self.name = "?"
        self.ident = {}
        self.preferred = 3
        self.setup_apdus = []
        self.exchanges = []
        self.responses = []
        self.setup = []
        self.loop = []
        self.iterations = 10
        self.runs = 3


_INT_KEYS = ("vid", "pid", "interface_number", "bus", "address", "bcd_device",
             "max_packet_size")


def parse_line(rec, line):
    """Add one input line to ``rec``; True when it was ``G``."""
    line = line.strip()
    if not line:
        return False
    tag = line[0]
    rest = line[2:] if len(line) > 2 else ""
    if tag == "G":
        return True
    try:
        if tag == "K":
            rec.name = rest
        elif tag == "I":
            sp = rest.split(" ")
            key = sp[0]
            val = sp[1] if len(sp) > 1 else ""
            if key in _INT_KEYS:
                rec.ident[key] = int(val)
            elif key == "config_descriptor":
                rec.ident[key] = unhexlify(val)
            elif val == "-":
                rec.ident[key] = None
            else:
                rec.ident[key] = unhexlify(val).decode()
        elif tag == "P":
            rec.preferred = int(rest)
        elif tag == "S":
            rec.setup_apdus.append(unhexlify(rest))
        elif tag == "X":
            rec.exchanges.append([unhexlify(x) for x in rest.split(" ")])
        elif tag == "R":
            rec.responses.append(unhexlify(rest))
        elif tag == "E" or tag == "L":
            sp = rest.split(" ")
            kind = sp[0]
            data = sp[1] if len(sp) > 1 else ""
            if not kind.endswith("!"):
                data = unhexlify(data)
            if tag == "E":
                rec.setup.append((kind, data))
            else:
                rec.loop.append((kind, data))
        elif tag == "N":
            sp = rest.split(" ")
            rec.iterations = int(sp[0])
            rec.runs = int(sp[1])
        else:
            raise ReplayError("unknown line %s" % tag, name="REPLAY_BAD_INPUT")
    except (ValueError, IndexError) as e:
        raise ReplayError("bad line %s: %s" % (tag, e), name="REPLAY_BAD_INPUT")
    return False


def open_replayed(rec):
    """(reader, transport) with the recorded setup replayed."""
    t = ReplayTransport(rec.ident, rec.setup, rec.loop)
    r = Reader(t)
    r.open()
    r.power_on(0)
    r.set_protocol(0, rec.preferred)
    for a in rec.setup_apdus:
        r.transmit(0, a)
    if t.in_setup:
        raise ReplayError("setup over with recorded events left", name="REPLAY_DIVERGED")
    return r, t


def exchange(reader, apdus):
    """One exchange: the APDUs an application sends for it; the last answer."""
    resp = None
    for a in apdus:
        resp = reader.transmit(0, a)
    return resp


def check(rec):
    """Replay the recorded exchanges once, comparing every byte sent and received."""
    r, t = open_replayed(rec)
    t.verify = True
    for k in range(2 * len(rec.exchanges)):
        i = k % len(rec.exchanges)
        got = exchange(r, rec.exchanges[i])
        if rec.responses and got != rec.responses[i]:
            raise ReplayError("exchange %d answered %s" % (k, hexlify(got)),
                              name="REPLAY_DIVERGED")
    return r, t


def time_runs(rec, now=None, diff=None):
    """Per-run µs per exchange (driver only) and the stub's µs per exchange."""
    now = now or NOW_US
    diff = diff or DIFF_US
    r, t = check(rec)
    t.verify = False
    ex = rec.exchanges
    m = len(ex)
    n = rec.iterations
    runs = []
    stubs = []
    for _ in range(rec.runs):
        t0 = now()
        for k in range(n):
            for a in ex[k % m]:
                r.transmit(0, a)
        t1 = now()
        # the transport's share, same number of bulk round trips
        t.stub_exchange(n // m if n >= m else 1)
        t2 = now()
        stub = diff(t1, t2) / float(n // m if n >= m else 1) / m
        stubs.append(stub)
        runs.append(diff(t0, t1) / float(n) - stub)
    return runs, stubs


def _median(v):
    v = sorted(v)
    k = len(v)
    if k % 2:
        return v[k // 2]
    return (v[k // 2 - 1] + v[k // 2]) / 2.0


def main():
    """Read recordings from stdin, write the figures to stdout."""
    out = sys.stdout
    rec = Recording()
    for _ in range(10000000):
        line = sys.stdin.readline()
        if not line:
            break
        try:
            go = parse_line(rec, line)
        except ReplayError as e:
            out.write("ERR %s %s\n" % (rec.name, e))
            rec = Recording()
            continue
        if not go:
            continue
        try:
            runs, stubs = time_runs(rec)
            out.write("OK %s\n" % rec.name)
            for v in runs:
                out.write("RUN %s %.3f\n" % (rec.name, v))
            out.write("STUB %s %.3f\n" % (rec.name, _median(stubs)))
        except (ReplayError, ReaderError) as e:
            out.write("ERR %s %s\n" % (rec.name, e))
        rec = Recording()
    out.write("CLOCK %s\n" % CLOCK_NAME)
    out.write("END\n")
