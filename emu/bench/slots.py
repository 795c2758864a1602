"""`ccidkit bench slots`: many SIM cards at once, sequential against parallel.

    ccidkit bench slots --profile sysmooctsim --json
    ccidkit bench slots --profile sysmosimbank-96 --no-sequential --out DIR
    ccidkit bench slots --smoke                      # octsim, 1 and 2 cards, 10 records

Workload: the phone-book read of usim_read.py (scripts/cmd_phonebook.py's
``read_phonebook``: SELECT 3F00 / 7F10 / 6F3A with GET RESPONSE, then
READ RECORD 1..N, 250 records by default) against the virtual USIM
(emu/cards "usim", T=0), through the CCID driver (core/driver.py) and
emulated readers (emu/reader.py) of the sysmoOCTSIM (8 slots,
bMaxCCIDBusySlots 8) or the sysmoSIMBANK-96 (12 of them behind hubs on one
full-speed bus). One card session = IccPowerOn (class by class), protocol
set-up (PPS), the phone-book read.

Sequential: N cards one after another, one thread. Parallel: N cards at
once in ONE process. The driver's ``Reader.run`` is a blocking loop per
reader (it pipelines the slots of its reader up to bMaxCCIDBusySlots, with
distinct bSeq), so each reader in use gets one thread that runs the
sessions of its slots through one ``run`` call; ``read_phonebook`` is
plain synchronous code, so each card runs it in a thread of its own whose
``transmit`` hands the APDU to its slot's exchange generator in that
``run`` (the card thread only decodes records; it never waits on the
clock).

Time: two passes over the same cases. The MODEL pass runs at time scale 0
on emu.timing.SharedClock, one emulated clock and one USB bus model for all
readers of the run: each slot is its own card line, bulk transfers of all
readers take turns on the bus, and the reader threads take part in the
clock (it moves only when every one of them waits), so a slot's card work
overlaps the other slots' as it would in the hardware, however the host
schedules the threads, and host CPU costs no emulated time. Its figures,
``*_emulated_s``, ``ratio_to_one_emulated`` and ``bus_occupancy``, are
emulated time (the hardware model alone). The WALL pass (``--time-scale``
S > 0) runs on emu.timing.PacedClock: emulated time follows real time,
S real seconds per emulated second, every slot sleeping its own waits, so
host CPU overlaps the readers' work as it does against real hardware;
``sequential_s``, ``parallel_s`` and ``ratio_to_one`` are wall time there
(= scaled emulated time + the host CPU on the critical path). At S below 1
the host looks 1/S times slower next to the hardware, so wall ratios are
pessimistic; at S = 1 (the default) they are the real-time figures. The
model pass always runs the sequential case (it costs only CPU there);
``--no-sequential`` skips it in the wall pass, where N cards in a row take N
times one card of real time. CPU figures are process CPU time (user + system).

Where the CPU goes. ``--remote`` (the default) runs the emulated readers,
cards and clock in a child process reached through a framed protocol over
socketpairs (emu/bench/remote_transport.py, a core.transport.Transport):
the parent's CPU is the driver's plus the phone-book application's (and
this harness's threads), the child's is the emulator's; both are reported.
``--in-process`` puts all in one process (one CPU figure for all).

Calibration (emu/profiles.py, sysmooctsim "timing"; emu/timing.py's model).
Per APDU of the phone book (a T=0 TPDU, 5-byte header + 30-byte record):
  * USB: the bulk-OUT (15 B) and bulk-IN (10 + 32 B) transfers at 12 Mbit/s
    with packet overhead (~30 µs together); the answer is seen at the next
    1 ms frame boundary (0.5 ms on average);
  * reader firmware: ``firmware_us`` per command (100 µs);
  * card line: (header + procedure byte + data + SW1 SW2) characters of
    12 etu at the negotiated rate (the USIM's TA1 96h: Fi 512, Di 32; the
    OCTSIM's 2.5 MHz gives 156 kbit/s, 77 µs a character, ~2.9 ms a READ
    RECORD);
  * card processing: ``card_processing_us`` per command, the term set so
    that one card's 256 APDUs (6 for the SELECTs and GET RESPONSEs, 250
    READ RECORDs) take 5.1-5.6 s of emulated time as published (5.1 s on
    the sysmoOCTSIM, 5.56 s on a Gemalto at 250 kbit/s, 4 MHz). Real SIMs
    spend most of that time in their own processing (EEPROM reads at a few
    MHz), which the line speed does not change.
The result's "calibration" field gives these terms and the measured
emulated time of one card.
"""

import os
import queue
import threading
import time

from ...core.driver import Reader, ReaderError, PROTOCOL_T0
from ...core.errors import CcidkitError
from .. import profiles as P
from .. import timing as T
from . import common
from .common import BenchError

NAME = "slots"
HELP = "phone-book reads on many SIM slots at once: sequential vs parallel, CPU per card, bus"

PROFILE_IDS = ("sysmooctsim", "sysmosimbank-96")
DEFAULT_CARDS = {
    "sysmooctsim": [1, 2, 3, 4, 8],
    "sysmosimbank-96": [1, 2, 4, 8, 12, 24, 48, 88, 96],
}
DEFAULT_RECORDS = 250
DEFAULT_RUNS = 3
DEFAULT_TIME_SCALE = 1.0
CHANNEL_WAIT_S = 600.0        # one step of a card session, wall clock (bounds every wait)

GOAL = {
    "ratio_to_one_at_8": 1.05,
    "ratio_to_one_at_96": 1.15,
    "cpu_s_per_card": 0.033,
    "one_card_emulated_s": [5.1, 5.6],
}
REFERENCE = {
    "stack": "libccid + pcsc-lite, one Python process per card",
    "one_card_s": {"sysmoOCTSIM": 5.1, "Gemalto 250 kbit/s 4 MHz": 5.56,
                   "Cherry 230 kbit/s 3.685 MHz": 6.07},
    "sysmooctsim_before_simultaneous_access_s": {"1": 5.1, "2": 10.0, "3": 14.9},
    "sysmooctsim_after_s": "~24.6 s for 1 to 8 slots alike (a longer test): ratio ~1.0",
    "sysmosimbank_96": {"one_card_s": 21.0, "cards_88_s": 32.5, "ratio_at_88": 1.55,
                        "cpu_s_per_card": 0.33},
    "twelve_first_slots": {"one_card_s": 1.20, "cards_12_s": 2.42, "ratio": 2.02},
    "three_readers": {"one_s": 5.56, "three_s": 6.05, "ratio": 1.09},
}


class SlotsError(BenchError):
    """A card session failed during the benchmark (name SESSION_FAILED)."""


def add_arguments(p):
    p.add_argument("--profile", choices=PROFILE_IDS, default="sysmooctsim",
                   help="the emulated reader (default sysmooctsim)")
    p.add_argument("--cards", metavar="N,N,...",
                   help="card counts (default: 1,2,3,4,8 octsim; 1,2,4,8,12,24,48,88,96 bank)")
    p.add_argument("--first-slots", type=int, metavar="N", default=None,
                   help="bank only: one more row with N cards in the first slot of N readers "
                        "(default 12; 0: none)")
    p.add_argument("--records", type=int, default=DEFAULT_RECORDS,
                   help="ADN records of each card's phone book (default 250)")
    p.add_argument("--time-scale", type=float, default=None,
                   help="real seconds slept per emulated second (default %s; 0: none)"
                        % DEFAULT_TIME_SCALE)
    p.add_argument("--runs", type=int, default=DEFAULT_RUNS,
                   help="runs of every measurement; medians reported (default 3)")
    p.add_argument("--no-sequential", action="store_true",
                   help="no sequential runs in wall time (they take N x one card of real time "
                        "at --time-scale 1); the emulated sequential figures stay")
    g = p.add_mutually_exclusive_group()
    g.add_argument("--remote", dest="remote", action="store_true", default=True,
                   help="emulated readers in a child process: driver CPU apart (default)")
    g.add_argument("--in-process", dest="remote", action="store_false",
                   help="emulated readers in this process (one CPU figure for all)")


def parse_cards(text, limit):
    """``"1,2,4"`` -> [1, 2, 4]: sorted, unique, each 1..limit; BenchError otherwise."""
    out = []
    for part in str(text).split(","):
        part = part.strip()
        if not part:
            continue
        try:
            n = int(part)
        except ValueError:
            raise BenchError("--cards: %r is not a number" % part, name="BAD_ARGUMENT")
        if n < 1 or n > limit:
            raise BenchError("--cards: %d is not in 1..%d" % (n, limit), name="BAD_ARGUMENT")
        if n not in out:
            out.append(n)
    if not out:
        raise BenchError("--cards: no card count", name="BAD_ARGUMENT")
    return sorted(out)


def placement(n, layout, slots_per_reader, readers):
    """[(reader index, slot)] of ``n`` cards: "fill" takes the slots of reader 0
    first, then reader 1...; "first-slots" takes slot 0 of readers 0..n-1."""
    if layout == "first-slots":
        if n > readers:
            raise BenchError("%d first slots but %d readers" % (n, readers), name="BAD_ARGUMENT")
        return [(i, 0) for i in range(n)]
    if n > slots_per_reader * readers:
        raise BenchError("%d cards but %d slots" % (n, slots_per_reader * readers),
                         name="BAD_ARGUMENT")
    return [(k // slots_per_reader, k % slots_per_reader) for k in range(n)]


def calibration_terms(profile_id, records, record_length=30):
    """The per-APDU terms of the timing model for the phone book (µs), and the
    one-card estimate they add up to (the measured figure is in the result)."""
    prof = P.profile(profile_id)
    tm = prof["timing"]
    clock_hz = prof["ccid"]["dwDefaultClock"] * 1000
    fi, di = 512, 32                     # the virtual USIM's TA1 96h (emu/cards/usim.py)
    char_us = T.char_time_us(fi, di, clock_hz, 0)
    read_record_line = T.tpdu_t0_us(5, record_length + 2, fi, di, clock_hz)
    usb = T.usb_bulk_us(10 + 5) + T.usb_bulk_us(10 + record_length + 2)
    per_apdu = usb + tm["firmware_us"] + read_record_line + tm["card_processing_us"] + \
        T.FRAME_US / 2.0
    apdus = 6 + records
    return {
        "profile": profile_id,
        "clock_hz": clock_hz,
        "fi_di": [fi, di],
        "data_rate_bps": T.data_rate_bps(fi, di, clock_hz),
        "char_us": round(char_us, 2),
        "read_record_line_us": round(read_record_line, 1),
        "usb_transfers_us": usb,
        "frame_wait_us_mean": T.FRAME_US / 2.0,
        "firmware_us": tm["firmware_us"],
        "card_processing_us": tm["card_processing_us"],
        "per_apdu_us": round(per_apdu, 1),
        "apdus_per_card": apdus,
        "one_card_estimate_s": round(per_apdu * apdus / 1e6, 3),
        "terms": "per APDU: USB bulk-OUT + bulk-IN, next-frame wait, firmware_us, "
                 "card line (12 etu per character, T=0 TPDU + procedure byte + SW), "
                 "card_processing_us (the calibrated term)",
    }


# ---------------------------------------------------------------------------
# the emulated readers: in this process or in a child

class _LocalRig:
    remote = False

    def __init__(self, profile_id, records, time_scale):
        from ..cards import make_card
        from ..reader import create_readers
        from .remote_transport import LocalTransport
        bank = P.bank_of(profile_id)
        count = bank["count"] if bank else 1
        nslots = P.profile(profile_id)["ccid"]["bMaxSlotIndex"] + 1
        cards = {}
        for i in range(count):
            for s in range(nslots):
                cards[(i, s) if bank else s] = make_card("usim", records=records)
        self.clock = T.bench_clock(time_scale)
        self.bus = T.Bus(profile_id)
        self.emulated = create_readers(profile_id, cards=cards, clock=self.clock, bus=self.bus)
        self.transports = [LocalTransport(r) for r in self.emulated]

    def begin_parallel(self, indices):
        self.clock.add_participants(len(indices))

    def thread_enter(self, i):
        self.clock.enter()

    def thread_leave(self, i):
        self.clock.leave()

    def stats(self):
        self.clock.flush()
        return {"now_us": self.clock.now_us(), "bus_busy_us": self.bus.busy_us,
                "bus_transfers": self.bus.transfers, "cpu_s": None}

    def close(self):
        pass


class _RemoteRig:
    remote = True

    def __init__(self, profile_id, records, time_scale):
        from .remote_transport import RemoteReaders
        self.r = RemoteReaders(profile_id, card="usim", records=records, time_scale=time_scale)
        self.transports = self.r.transports
        self.child_pid = self.r.pid

    def begin_parallel(self, indices):
        for i in indices:
            self.r.join(i)

    def thread_enter(self, i):
        pass

    def thread_leave(self, i):
        self.r.leave(i)

    def stats(self):
        return self.r.stats()

    def close(self):
        self.r.close()


# ---------------------------------------------------------------------------
# card sessions

def _check_book(book, records, where):
    if book["records"] != records:
        raise SlotsError("%s: %d records read, %d expected" % (where, book["records"], records),
                         name="SESSION_FAILED")
    return len(book["entries"])


def session(reader, slot, records):
    """One card session, as usim_read.py does it: power on, protocol, phone book."""
    from ...scripts.cmd_phonebook import read_phonebook
    reader.power_on(slot)
    reader.set_protocol(slot, PROTOCOL_T0)
    book = read_phonebook(lambda apdu: reader.transmit(slot, apdu))
    return _check_book(book, records, "slot %d" % slot)


class _Channel:
    """A card thread's requests to its slot's exchange generator, and the answers."""

    def __init__(self):
        self.requests = queue.SimpleQueue()
        self.answers = queue.SimpleQueue()

    def _get(self, q, what):
        try:
            return q.get(timeout=CHANNEL_WAIT_S)
        except queue.Empty:
            raise SlotsError("no %s within %d s" % (what, CHANNEL_WAIT_S), name="SESSION_FAILED")

    def call(self, kind, arg=None):
        self.requests.put((kind, arg))
        ans = self._get(self.answers, "answer")
        if isinstance(ans, CcidkitError):
            raise ans
        return ans

    def finish(self):
        self.requests.put(None)

    def next_request(self):
        return self._get(self.requests, "request from the card thread")


def _slot_job(reader, slot, chan):
    """The exchange generator of one slot for ``Reader.run``: it serves the card
    thread's requests one after another with the driver's own generators."""
    s = reader.slot(slot)
    while True:
        req = chan.next_request()
        if req is None:
            return None
        kind, arg = req
        try:
            if kind == "transmit":
                ans = yield from reader.transmit_job(slot, arg)
            elif kind == "power_on":
                ans = yield from reader.power_on_job(slot)
            elif kind == "set_protocol":
                # the generator behind Reader.set_protocol (no public job form of it)
                ans = yield from reader._negotiate_gen(s, arg)
            else:
                raise SlotsError("unknown request %r" % (kind,), name="SESSION_FAILED")
        except CcidkitError as e:
            chan.answers.put(e)
            return e
        chan.answers.put(ans)


def _card_thread(chan, records, out, key):
    from ...scripts.cmd_phonebook import read_phonebook
    try:
        chan.call("power_on")
        chan.call("set_protocol", PROTOCOL_T0)
        book = read_phonebook(lambda apdu: chan.call("transmit", apdu))
        out[key] = _check_book(book, records, "slot %s" % (key,))
    except CcidkitError as e:
        out[key] = e
    finally:
        chan.finish()


def _reader_thread(rig, index, reader, slots, records, out):
    rig.thread_enter(index)
    try:
        chans = {}
        cards = []
        for slot in slots:
            chans[slot] = _Channel()
            t = threading.Thread(target=_card_thread,
                                 args=(chans[slot], records, out, (index, slot)), daemon=True)
            cards.append(t)
        for t in cards:
            t.start()
        try:
            res = reader.run([(slot, _slot_job(reader, slot, chans[slot])) for slot in slots])
        finally:
            # a card thread still waiting for an answer gets one: the run is over
            for slot in slots:
                chans[slot].answers.put(SlotsError("the reader's run ended",
                                                   name="SESSION_FAILED"))
        for slot, r in zip(slots, res):
            if isinstance(r, CcidkitError) and not isinstance(out.get((index, slot)),
                                                                CcidkitError):
                out[(index, slot)] = r
        for t in cards:
            t.join(CHANNEL_WAIT_S)
    except CcidkitError as e:
        out[(index, "reader")] = e
    finally:
        rig.thread_leave(index)


def run_sequential(rig, readers, where, records):
    for (i, slot) in where:
        session(readers[i], slot, records)


def run_parallel(rig, readers, where, records):
    by_reader = {}
    for (i, slot) in where:
        by_reader.setdefault(i, []).append(slot)
    indices = sorted(by_reader)
    out = {}
    threads = [threading.Thread(target=_reader_thread,
                                args=(rig, i, readers[i], by_reader[i], records, out),
                                daemon=True) for i in indices]
    rig.begin_parallel(indices)
    for t in threads:
        t.start()
    for t in threads:
        t.join(CHANNEL_WAIT_S * 2)
        if t.is_alive():
            raise SlotsError("a reader thread did not end", name="SESSION_FAILED")
    for key in sorted(out, key=str):
        if isinstance(out[key], CcidkitError):
            raise SlotsError("parallel session %s: %s" % (key, out[key]), name="SESSION_FAILED")
    done = [k for k in out if not isinstance(out[k], CcidkitError)]
    if len(done) != len(where):
        raise SlotsError("%d of %d sessions ended" % (len(done), len(where)),
                         name="SESSION_FAILED")


def _measure(rig, fn, readers, where, records):
    """One measured run: wall, this process's CPU, emulated time, bus, child CPU."""
    before = rig.stats()
    t0 = os.times()
    c0 = common.cpu_s()
    w0 = time.perf_counter()
    try:
        fn(rig, readers, where, records)
    except ReaderError as e:
        raise SlotsError("session failed: %s" % e, name="SESSION_FAILED")
    w1 = time.perf_counter()
    c1 = common.cpu_s()
    t1 = os.times()
    after = rig.stats()
    em = (after["now_us"] - before["now_us"]) / 1e6
    m = {"wall_s": w1 - w0, "cpu_s": c1 - c0, "emulated_s": em,
         "cpu_system_s": t1.system - t0.system,
         "bus_busy_s": (after["bus_busy_us"] - before["bus_busy_us"]) / 1e6,
         "bus_transfers": after["bus_transfers"] - before["bus_transfers"]}
    if before.get("cpu_s") is not None:
        m["emulator_cpu_s"] = after["cpu_s"] - before["cpu_s"]
    return m


def _med(runs, key):
    vals = [r[key] for r in runs if r.get(key) is not None]
    return common.median(vals) if vals else None


def _r(x, nd=6):
    return None if x is None else round(x, nd)


def _occupancy(runs):
    return _med([{"occ": r["bus_busy_s"] / r["emulated_s"] if r["emulated_s"] else 0.0}
                 for r in runs], "occ")


def _per(x, n):
    return None if x is None else _r(x / n, 5)


def _row(n, layout, model, wall, base):
    """One result row: emulated figures from the model pass (scale 0), wall
    figures from the paced pass (or the model pass when the scale is 0)."""
    mseq, mpar = model
    wseq, wpar = wall
    par_wall = _med(wpar, "wall_s")
    par_em = _med(mpar, "emulated_s")
    row = {
        "cards": n,
        "layout": layout,
        "sequential_s": _r(_med(wseq, "wall_s")) if wseq else None,
        "parallel_s": _r(par_wall),
        "parallel_p95_s": _r(common.percentile([r["wall_s"] for r in wpar], 95)),
        "sequential_emulated_s": _r(_med(mseq, "emulated_s")) if mseq else None,
        "parallel_emulated_s": _r(par_em),
        "ratio_to_one": None,
        "ratio_to_one_emulated": None,
        "cpu_s_per_card": _per(_med(wpar, "cpu_s"), n),
        "emulator_cpu_s_per_card": _per(_med(wpar, "emulator_cpu_s"), n),
        "cpu_system_s_per_card": _per(_med(wpar, "cpu_system_s"), n),
        "cpu_s_per_card_unpaced": _per(_med(mpar, "cpu_s"), n),
        "emulator_cpu_s_per_card_unpaced": _per(_med(mpar, "emulator_cpu_s"), n),
        "cpu_s_per_card_sequential": _per(_med(wseq, "cpu_s"), n) if wseq else None,
        "bus_occupancy": _r(_occupancy(mpar), 5),
        "bus_transfers": int(_med(mpar, "bus_transfers")),
        "runs": len(wpar),
    }
    if base is not None:
        if base["wall"]:
            row["ratio_to_one"] = _r(par_wall / base["wall"], 3)
        if base["emulated"]:
            row["ratio_to_one_emulated"] = _r(par_em / base["emulated"], 3)
    return row


def _pass(profile_id, records, scale, remote, cases, runs, sequential, nslots, nreaders):
    """Every case ``runs`` times on one rig: [(seq runs, par runs)] in case order."""
    rig = (_RemoteRig if remote else _LocalRig)(profile_id, records, scale)
    try:
        readers = [Reader(t).open() for t in rig.transports]
        # one warm-up session outside the figures (imports, first power-on)
        session(readers[0], 0, records)
        out = []
        for n, layout in cases:
            where = placement(n, layout, nslots, nreaders)
            seq = []
            par = []
            for _ in range(runs):
                if sequential:
                    seq.append(_measure(rig, run_sequential, readers, where, records))
                par.append(_measure(rig, run_parallel, readers, where, records))
            out.append((seq, par))
        return out
    finally:
        rig.close()


def run(args):
    smoke = getattr(args, "smoke", False)
    profile_id = "sysmooctsim" if smoke else args.profile
    if profile_id not in PROFILE_IDS:
        raise BenchError("profile %r: one of %s" % (profile_id, ", ".join(PROFILE_IDS)),
                         name="BAD_ARGUMENT")
    bank = P.bank_of(profile_id)
    nreaders = bank["count"] if bank else 1
    nslots = P.profile(profile_id)["ccid"]["bMaxSlotIndex"] + 1
    if smoke:
        counts, records, scale, runs, first = [1, 2], 10, 0.0, 1, 0
    else:
        counts = parse_cards(args.cards, nreaders * nslots) if args.cards else \
            list(DEFAULT_CARDS[profile_id])
        records = args.records
        scale = DEFAULT_TIME_SCALE if args.time_scale is None else args.time_scale
        runs = args.runs
        first = args.first_slots
        if first is None:
            first = 12 if bank else 0
    if not 1 <= records <= 254:
        raise BenchError("--records: 1..254", name="BAD_ARGUMENT")
    if scale < 0:
        raise BenchError("--time-scale must be >= 0", name="BAD_ARGUMENT")
    if runs < 1 or runs > 100:
        raise BenchError("--runs: 1..100", name="BAD_ARGUMENT")
    if first and (not bank or first > nreaders or first < 1):
        raise BenchError("--first-slots: 1..%d, bank profiles only" % nreaders,
                         name="BAD_ARGUMENT")
    sequential = not (getattr(args, "no_sequential", False) and not smoke)
    remote = bool(getattr(args, "remote", True))
    cases = [(n, "fill") for n in counts]
    if first:
        cases.append((first, "first-slots"))
    if 1 not in counts:
        cases.insert(0, (1, "fill"))           # the ratio needs one card

    wall0 = time.perf_counter()
    # the model pass: pure emulated time (host CPU costs none), no sleeps
    # (sequential there costs only CPU: always measured, so every row has its
    # emulated sequential time even when --no-sequential skips the wall one)
    model = _pass(profile_id, records, 0.0, remote, cases, runs, True, nslots, nreaders)
    # the wall pass: emulated time paced by real time at the scale
    wall = _pass(profile_id, records, scale, remote, cases, runs, sequential, nslots,
                 nreaders) if scale > 0 else model

    base = None
    for k in range(len(cases)):
        if cases[k] == (1, "fill"):
            base = {"wall": _med(wall[k][1], "wall_s"), "emulated": _med(model[k][1],
                                                                          "emulated_s")}
    rows = [_row(cases[k][0], cases[k][1], model[k], wall[k], base) for k in range(len(cases))]
    one = rows[0]
    calib = calibration_terms(profile_id, records)
    calib["one_card_emulated_s"] = one["parallel_emulated_s"]
    by = dict(((r["cards"], r["layout"]), r) for r in rows)
    summary = {}
    for n in (8, 96):
        r = by.get((n, "fill"))
        if r is not None:
            summary["ratio_to_one_at_%d" % n] = r["ratio_to_one"]
            summary["ratio_to_one_emulated_at_%d" % n] = r["ratio_to_one_emulated"]
    summary["cpu_s_per_card_max"] = max(r["cpu_s_per_card"] for r in rows)
    summary["cpu_s_per_card_one"] = one["cpu_s_per_card"]
    summary["cpu_s_per_card_unpaced_max"] = max(r["cpu_s_per_card_unpaced"] for r in rows)
    summary["one_card_emulated_s"] = one["parallel_emulated_s"]
    return {
        "bench": NAME,
        "machine": common.machine(),
        "profile": profile_id,
        "mode": "remote" if remote else "in-process",
        "parameters": {"cards": counts, "first_slots": first, "records": records,
                       "time_scale": scale, "runs": runs, "sequential": sequential,
                       "smoke": smoke, "card": "usim (T=0, TA1 96h)",
                       "readers": nreaders, "slots_per_reader": nslots},
        "units": {
            "sequential_s": "wall s, median of runs (wall pass: emulated time paced by real "
                            "time at time_scale real s per emulated s)",
            "parallel_s": "wall s, median of runs (wall pass)",
            "parallel_p95_s": "wall s, 95th percentile of runs (wall pass)",
            "sequential_emulated_s": "emulated s (model pass: virtual time, host CPU costs "
                                     "none; does not depend on the scale)",
            "parallel_emulated_s": "emulated s (model pass)",
            "ratio_to_one": "parallel_s(N) / parallel_s(1), wall",
            "ratio_to_one_emulated": "parallel_emulated_s(N) / parallel_emulated_s(1)",
            "cpu_s_per_card": "CPU s (user+system) of the driving process per card in the "
                              "parallel runs of the wall pass: %s" % (
                                  "driver + phone-book app + harness threads (emulator in "
                                  "the child)" if remote else
                                  "driver + app + emulator + cards, one process"),
            "cpu_system_s_per_card": "the system (kernel) part of cpu_s_per_card",
            "cpu_s_per_card_unpaced": "the same in the model pass (no sleeps between APDUs)",
            "emulator_cpu_s_per_card": "CPU s of the emulator process per card (remote mode)",
            "bus_occupancy": "fraction of emulated time the shared USB bus carried transfers "
                             "(model pass)",
        },
        "notes": [
            "One card session: IccPowerOn, PPS, SELECT 3F00/7F10/6F3A with GET RESPONSE, "
            "READ RECORD 1..N (read_phonebook of scripts/cmd_phonebook.py).",
            "Parallel: one process; a thread per reader runs Reader.run over its slots "
            "(pipelined up to bMaxCCIDBusySlots), a thread per card runs read_phonebook; "
            "all readers share one clock and one USB bus model.",
            "Model pass (time scale 0): emu.timing.SharedClock, a conservative parallel "
            "clock: it moves only when every reader thread waits, so slots overlap as in "
            "hardware and host CPU costs no emulated time.",
            "Wall pass (time scale > 0): emu.timing.PacedClock, emulated time runs with "
            "real time scaled; host CPU overlaps the hardware's work as against real "
            "readers, but at a scale below 1 the host looks 1/scale times slower next to "
            "the hardware, so wall ratios are pessimistic; at scale 1 they are the "
            "real-time figures.",
            "Readers are opened once before the runs; one warm-up session is not counted.",
        ],
        "calibration": calib,
        "goal": GOAL,
        "reference": REFERENCE,
        "summary": summary,
        "results": rows,
        "total_wall_s": round(time.perf_counter() - wall0, 2),
    }


def _fmt(x, nd=3):
    if x is None:
        return "-"
    if isinstance(x, float):
        return ("%%.%df" % nd) % x
    return str(x)


def markdown(result):
    rows = []
    for r in result["results"]:
        rows.append([
            "%d%s" % (r["cards"], " (first slots)" if r["layout"] == "first-slots" else ""),
            _fmt(r.get("sequential_s")), _fmt(r["parallel_s"]), _fmt(r.get("ratio_to_one")),
            _fmt(r.get("sequential_emulated_s")), _fmt(r["parallel_emulated_s"]),
            _fmt(r.get("ratio_to_one_emulated")),
            _fmt(r["cpu_s_per_card"] * 1000, 1),
            _fmt(r["emulator_cpu_s_per_card"] * 1000, 1)
            if r.get("emulator_cpu_s_per_card") is not None else "-",
            _fmt(r["bus_occupancy"] * 100, 2),
        ])
    p = result["parameters"]
    out = ["### slots: %s, %s, %d records, time scale %s, %d run(s)\n"
           % (result["profile"], result["mode"], p["records"], p["time_scale"], p["runs"]),
           common.markdown_table(
               ["cards", "sequential s (wall)", "parallel s (wall)", "ratio N/1 (wall)",
                "sequential s (emulated)", "parallel s (emulated)", "ratio N/1 (emulated)",
                "driver CPU ms/card", "emulator CPU ms/card", "bus busy %"], rows)]
    s = result["summary"]
    g = result["goal"]
    ref = result["reference"]
    goals = [
        ["one card, emulated s", _fmt(s.get("one_card_emulated_s")),
         "%s-%s" % tuple(g["one_card_emulated_s"]), "5.1 (OCTSIM), 5.56 (Gemalto)"],
        ["ratio N/1 at 8 (wall)", _fmt(s.get("ratio_to_one_at_8")), "<= %s"
         % g["ratio_to_one_at_8"], "~1.0 (OCTSIM, libccid 1.5.0)"],
        ["ratio N/1 at 96 (wall)", _fmt(s.get("ratio_to_one_at_96")), "<= %s"
         % g["ratio_to_one_at_96"], "%s at 88" % ref["sysmosimbank_96"]["ratio_at_88"]],
        ["CPU per card session, s (worst row)", _fmt(s.get("cpu_s_per_card_max"), 4),
         "<= %s" % g["cpu_s_per_card"], str(ref["sysmosimbank_96"]["cpu_s_per_card"])],
        ["the same without sleeps (model pass)", _fmt(s.get("cpu_s_per_card_unpaced_max"), 4),
         "<= %s" % g["cpu_s_per_card"], "-"],
    ]
    out.append("\n" + common.markdown_table(["figure", "measured", "goal", "reference"], goals))
    return "".join(out)


def plot(result, path):
    plt = common.pyplot()
    rows = [r for r in result["results"] if r["layout"] == "fill"]
    first = [r for r in result["results"] if r["layout"] == "first-slots"]
    xs = [r["cards"] for r in rows]
    fig, (ax, ax2) = plt.subplots(1, 2, figsize=(12, 4.8))
    scale = result["parameters"]["time_scale"]
    if any(r.get("sequential_s") is not None for r in rows):
        ax.plot(xs, [r["sequential_s"] for r in rows], "o-", color="tab:red",
                label="sequential (wall)")
    ax.plot(xs, [r["parallel_s"] for r in rows], "o-", color="tab:blue",
            label="parallel, one process (wall)")
    if scale:
        ax.plot(xs, [r["parallel_emulated_s"] * scale for r in rows], ":", color="tab:blue",
                label="parallel, emulated time x %g" % scale)
        if all(r.get("sequential_s") is None for r in rows) and \
                all(r.get("sequential_emulated_s") is not None for r in rows):
            ax.plot(xs, [r["sequential_emulated_s"] * scale for r in rows], ":",
                    color="tab:red", label="sequential, emulated time x %g" % scale)
    if first:
        ax.plot([r["cards"] for r in first], [r["parallel_s"] for r in first], "s",
                color="tab:green", label="first slot of each reader (wall)")
    ref = result["reference"]
    # the published figures, scaled like our clock so they sit on the same axis
    k = scale if scale else 1.0
    if result["profile"] == "sysmosimbank-96":
        b = ref["sysmosimbank_96"]
        ax.plot([1, 88], [b["one_card_s"] * k, b["cards_88_s"] * k], "x", color="black",
                markersize=9, label="published libccid, x%g (21.0 -> 32.5 s)" % k)
    else:
        pts = ref["sysmooctsim_before_simultaneous_access_s"]
        ax.plot([int(x) for x in pts], [pts[x] * k for x in pts], "x", color="black",
                markersize=9, label="published, before simultaneous access, x%g" % k)
    ax.set_xlabel("number of cards")
    ax.set_ylabel("time (s, wall)")
    ax.set_title("Phone-book read (%d records), %s" % (result["parameters"]["records"],
                                                         result["profile"]))
    ax.grid(True, alpha=0.3)
    ax.legend(fontsize=8)
    ax2.plot(xs, [r["cpu_s_per_card"] * 1000 for r in rows], "o-", color="tab:purple",
             label="driving process (driver + app)" if result["mode"] == "remote"
             else "whole process (driver + emulator)")
    if scale and all(r.get("cpu_s_per_card_unpaced") is not None for r in rows):
        ax2.plot(xs, [r["cpu_s_per_card_unpaced"] * 1000 for r in rows], "^:",
                 color="tab:purple", label="the same, model pass (no sleeps)")
    if any(r.get("emulator_cpu_s_per_card") is not None for r in rows):
        ax2.plot(xs, [r["emulator_cpu_s_per_card"] * 1000 for r in rows], "o--",
                 color="tab:gray", label="emulator process")
    ax2.set_ylim(bottom=0)
    ax2.axhline(result["goal"]["cpu_s_per_card"] * 1000, color="tab:green", ls="--",
                label="goal %d ms" % (result["goal"]["cpu_s_per_card"] * 1000))
    ax2.set_xlabel("number of cards")
    ax2.set_ylabel("CPU per card session (ms)")
    ax2.set_title("Host CPU per card (published libccid: ~330 ms)")
    ax2.grid(True, alpha=0.3)
    ax2.legend(fontsize=8)
    fig.suptitle("ccidkit bench slots (%s mode, time scale %s)" % (result["mode"], scale))
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)
