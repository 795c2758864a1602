"""APDU round trip: ccidkit in one process against the third-party PC/SC
stack, same card type, same machine, one run.

Paths (each with a fresh MiniCard, T=1 asked for at connect):
  inproc  core/pcsc.py SCardTransmit -> core/driver.py -> pyusb with the
          emulated backend -> emulated GemPC Twin (emu/reader.py, TPDU level,
          the driver runs T=1) -> MiniCard; all in this process, no sleeping
          (emulated time only)
  vpcd    pyscard SCardTransmit (a client process of its own) -> a private
          pcscd (emu/pcscd.py) -> vsmartcard's vpcd -> TCP -> our vicc
          (emu/vicc.py, a thread of this process) -> MiniCard
  serial  pyscard SCardTransmit (client process) -> a private pcscd ->
          libccid's serial driver (libccidtwin.so, its own T=1 at TPDU level)
          -> pty -> our GemPC Twin serial reader emulation (emu/serial_reader.py,
          a thread of this process) -> MiniCard

APDUs: "short" is READ BINARY ``00 B0 00 00 05`` (a 5-byte command, 5 data
bytes back) after a SELECT of EF 2F00; "long" is the MiniCard ECHO with 255
bytes each way (``80 EE 00 00 FF`` data ``FF``). Every answer is checked.
Times are wall-clock round trips (time.perf_counter_ns around each
SCardTransmit), after a warm-up; median and p95 per path and series; the
ratio of each path to ours comes from the same run. CPU per APDU is given
per process where it can be told apart (client, pcscd, card side).
"""

import json
import os
import subprocess
import sys
import time

from ...core import pcsc
from ...core.driver import Reader, PROTOCOL_T1
from ..card.minicard import MiniCard
from .common import BenchError, median, percentile, machine, markdown_table, pyplot
from .remote_transport import LocalTransport

NAME = "stack"
HELP = "APDU round trip: ccidkit in-process vs pcscd + vpcd + pyscard vs pcscd + libccid serial"

PATHS = ("inproc", "vpcd", "serial")
PATH_TEXT = {
    "inproc": "ccidkit in-process (pcsc -> driver -> emulated reader -> card)",
    "vpcd": "pcscd + vpcd + pyscard",
    "serial": "pcscd + libccid serial (GemPC Twin on a pty) + pyscard",
}
SELECT = bytes.fromhex("00A4000C022F00")
SHORT = bytes.fromhex("00B0000005")
SHORT_EXPECT = bytes(range(5)) + b"\x90\x00"
LONG_DATA = bytes([i & 0xFF for i in range(255)])
LONG = bytes((0x80, 0xEE, 0, 0, 255)) + LONG_DATA + b"\xFF"
LONG_EXPECT = LONG_DATA + b"\x90\x00"

GOALS = {"inproc_short_median_us": 50.0, "speedup_vs_vpcd": 2.0}
GOAL_TEXT = ("in-process round trip of a short APDU <= 50 µs median on CPython, at least 2x "
             "faster than pcscd + vpcd + pyscard on the same card")
REFERENCE = {"vpcd_short_ms": [0.09, 0.14],
             "text": "pcscd + vpcd + pyscard: 0.09-0.14 ms per short APDU (published)"}


def add_arguments(p):
    p.add_argument("--count", type=int, default=1000, help="short APDUs per path (default 1000)")
    p.add_argument("--count-long", type=int, default=200,
                   help="255-byte ECHO APDUs per path (default 200)")
    p.add_argument("--warmup", type=int, default=50, help="untimed APDUs first (default 50)")
    p.add_argument("--paths", default=None, help="comma-separated among inproc,vpcd,serial")
    p.add_argument("--no-profile", action="store_true",
                   help="skip the profile of the in-process path")


def _series(count, count_long):
    out = [("short", SHORT, SHORT_EXPECT, count)]
    if count_long > 0:
        out.append(("long", LONG, LONG_EXPECT, count_long))
    return out


def _stats_ns(times_ns, cpu):
    us = [t / 1000.0 for t in times_ns]
    n = len(us)
    st = {"count": n, "median_us": round(median(us), 2), "p95_us": round(percentile(us, 95), 2),
          "min_us": round(min(us), 2), "max_us": round(max(us), 2),
          "sample_us": [round(v, 2) for v in us]}
    for k in sorted(cpu):
        st[k] = round(cpu[k] * 1e6 / n, 2) if n else None
    return st


# --------------------------------------------------------------------------- in-process

def _inproc_open():
    from ...core.host.emulated import emulated_manager
    mgr = emulated_manager("gemalto-pctwin", cards={0: MiniCard()})
    ctx = pcsc.SCardEstablishContext(pcsc.SCARD_SCOPE_USER, mgr)
    name = pcsc.SCardListReaders(ctx)[0]
    h, proto = pcsc.SCardConnect(ctx, name, pcsc.SCARD_SHARE_SHARED, pcsc.SCARD_PROTOCOL_T1)
    pci = pcsc.SCARD_PCI_T1 if proto == pcsc.SCARD_PROTOCOL_T1 else pcsc.SCARD_PCI_T0
    if pcsc.SCardTransmit(h, pci, SELECT)[-2:] != b"\x90\x00":
        raise BenchError("SELECT 2F00 failed on the in-process path", name="RUN_FAILED")
    return ctx, h, pci, name, proto


def run_inproc(series, warmup):
    ctx, h, pci, name, proto = _inproc_open()
    out = {"reader": name, "protocol": "T=%d" % (0 if proto == pcsc.SCARD_PROTOCOL_T0 else 1),
           "series": {}}
    try:
        for sname, apdu, expect, count in series:
            for _ in range(warmup):
                pcsc.SCardTransmit(h, pci, apdu)
            times = []
            bad = 0
            now = time.perf_counter_ns
            c0 = time.process_time()
            for _ in range(count):
                t0 = now()
                r = pcsc.SCardTransmit(h, pci, apdu)
                t1 = now()
                times.append(t1 - t0)
                if r != expect:
                    bad += 1
            c1 = time.process_time()
            if bad:
                raise BenchError("in-process path: %d wrong answers" % bad, name="RUN_FAILED")
            out["series"][sname] = _stats_ns(times, {"cpu_us_per_apdu": c1 - c0})
    finally:
        pcsc.SCardDisconnect(h, pcsc.SCARD_LEAVE_CARD)
        pcsc.SCardReleaseContext(ctx)
    return out


_GROUPS = (
    ("pcsc layer (core/pcsc.py)", ("/core/pcsc.py",)),
    ("driver (core/driver.py, ccid.py, t1.py, apdu.py, transport)",
     ("/core/driver.py", "/core/ccid.py", "/core/t1.py", "/core/t0.py", "/core/apdu.py",
      "/core/transport.py", "/core/quirks.py")),
    ("pyusb transport (core/host/pyusb_transport.py)", ("/core/host/pyusb_transport.py",)),
    ("pyusb library (usb/)", ("/usb/",)),
    ("emulated backend (emu/pyusb_backend.py)", ("/emu/pyusb_backend.py",)),
    ("emulated reader (emu/reader.py, timing.py, faults.py)",
     ("/emu/reader.py", "/emu/timing.py", "/emu/faults.py")),
    ("card (emu/card/)", ("/emu/card/",)),
)


def _driver_over(transport):
    r = Reader(transport)
    r.open()
    r.power_on(0)
    r.set_protocol(0, PROTOCOL_T1)
    if r.transmit(0, SELECT) != b"\x90\x00":
        raise BenchError("SELECT 2F00 failed", name="RUN_FAILED")
    return r


def _median_call_us(fn, count):
    for _ in range(min(50, count)):
        fn()
    now = time.perf_counter_ns
    times = []
    for _ in range(count):
        t0 = now()
        fn()
        times.append(now() - t0)
    return median(times) / 1000.0


def breakdown_inproc(count):
    """Wall-clock medians of the short APDU with one layer taken away at a time:
    the full pcsc path; the driver's transmit over pyusb (no pcsc layer); the
    driver over the emulated reader's own calls (no pyusb); the driver alone
    with replayed answers (emu/bench/apdu.py's method, CPU time)."""
    from ...core.host.emulated import emulated_readers
    from ...core.host.pyusb_transport import find_readers
    from ..pyusb_backend import EmulatedBackend
    from . import apdu as A
    ctx, h, pci, name, proto = _inproc_open()
    try:
        full = _median_call_us(lambda: pcsc.SCardTransmit(h, pci, SHORT), count)
    finally:
        pcsc.SCardDisconnect(h, pcsc.SCARD_LEAVE_CARD)
        pcsc.SCardReleaseContext(ctx)
    er = emulated_readers("gemalto-pctwin", cards={0: MiniCard()})[0]
    r = _driver_over(find_readers(EmulatedBackend([er]))[0])
    pyusb = _median_call_us(lambda: r.transmit(0, SHORT), count)
    er = emulated_readers("gemalto-pctwin", cards={0: MiniCard()})[0]
    r = _driver_over(LocalTransport(er))   # the reader's own calls, without pyusb
    direct = _median_call_us(lambda: r.transmit(0, SHORT), count)
    rec = A.record("t1-32", 5)
    runs, stub = A.run_cpython(A.serialise(rec, "t1-32/5", 2000, 5))
    alone = median(runs)
    return {
        "full_us": round(full, 2), "driver_pyusb_emulator_card_us": round(pyusb, 2),
        "driver_emulator_card_us": round(direct, 2), "driver_alone_us": round(alone, 2),
        "parts_us": {
            "pcsc layer (core/pcsc.py: handle checks, event poll per call)": round(full - pyusb, 2),
            "pyusb + emulated backend + pyusb transport": round(pyusb - direct, 2),
            "emulated reader + card": round(direct - alone, 2),
            "driver (core/driver.py, ccid.py, t1.py)": round(alone, 2),
        },
        "how": "medians of %d calls each, one layer removed at a time; the driver alone is "
               "ccidkit bench apdu's replay (T=1 TPDU, IFSC 32, size 5, CPU time)" % count,
    }


def profile_inproc(count):
    """Where the in-process round trip goes: cProfile's own time per part (shares;
    the profiler inflates small calls), and the layer-by-layer breakdown."""
    import cProfile
    import pstats
    ctx, h, pci, name, proto = _inproc_open()
    try:
        for _ in range(50):
            pcsc.SCardTransmit(h, pci, SHORT)
        prof = cProfile.Profile()
        prof.enable()
        for _ in range(count):
            pcsc.SCardTransmit(h, pci, SHORT)
        prof.disable()
    finally:
        pcsc.SCardDisconnect(h, pcsc.SCARD_LEAVE_CARD)
        pcsc.SCardReleaseContext(ctx)
    st = pstats.Stats(prof)
    totals = {}
    calls = {}
    total = 0.0
    for (fname, line, func), (cc, nc, tt, ct, callers) in st.stats.items():
        group = "other (builtins, locks, struct, ...)"
        for gname, pats in _GROUPS:
            if any(p in fname for p in pats):
                group = gname
                break
        totals[group] = totals.get(group, 0.0) + tt
        calls[group] = calls.get(group, 0) + nc
        total += tt
    parts = []
    for g in sorted(totals, key=lambda k: -totals[k]):
        parts.append({"part": g, "share_pct": round(100.0 * totals[g] / total, 1),
                      "calls_per_apdu": round(calls[g] / float(count), 1)})
    return {"apdus": count, "parts": parts, "breakdown": breakdown_inproc(count)}


# --------------------------------------------------------------------------- pcscd paths

def _proc_cpu_s(pid):
    """utime + stime of a process from /proc (seconds), or None."""
    try:
        with open("/proc/%d/stat" % pid) as f:
            fields = f.read().rsplit(")", 1)[1].split()
        ticks = os.sysconf("SC_CLK_TCK")
        return (int(fields[11]) + int(fields[12])) / float(ticks)
    except (OSError, ValueError, IndexError):
        return None


def _run_client(env, reader, series, warmup, timeout_s):
    job = {"reader": reader, "protocol": 2, "wait_s": 20, "warmup": warmup,
           "setup": [SELECT.hex()],
           "series": [{"name": n, "apdu": a.hex(), "count": c, "expect": e.hex()}
                      for n, a, e, c in series]}
    try:
        p = subprocess.run([sys.executable, "-m", "ccidkit.emu.bench.stack_client"],
                           input=json.dumps(job), capture_output=True, text=True,
                           timeout=timeout_s, env=env)
    except subprocess.TimeoutExpired:
        raise BenchError("pyscard client took over %d s" % timeout_s, name="RUN_FAILED")
    try:
        res = json.loads(p.stdout.strip().splitlines()[-1])
    except (ValueError, IndexError):
        raise BenchError("pyscard client said nothing usable (exit %d): %s"
                         % (p.returncode, p.stderr.strip()[-400:]), name="RUN_FAILED")
    if "error" in res:
        raise BenchError("pyscard client: %s" % res["error"], name="RUN_FAILED")
    return res


def _pcscd_path(daemon, reader, series, warmup, timeout_s):
    env = daemon.client_env()
    # the client process is found through PYTHONPATH when ccidkit is not installed
    env["PYTHONPATH"] = os.pathsep.join([p for p in sys.path if p] + [env.get("PYTHONPATH", "")])
    d0 = _proc_cpu_s(daemon.pid)
    c0 = time.process_time()
    res = _run_client(env, reader, series, warmup, timeout_s)
    c1 = time.process_time()
    d1 = _proc_cpu_s(daemon.pid)
    total = sum(s[3] for s in series) + warmup * len(series) + 1
    out = {"reader": reader, "protocol": "T=%d" % (0 if res["protocol"] == 1 else 1),
           "series": {}, "pcscd_pid": daemon.pid,
           "pcscd_cpu_us_per_apdu_all": round((d1 - d0) * 1e6 / total, 1)
           if d0 is not None and d1 is not None else None,
           "card_side_cpu_us_per_apdu_all": round((c1 - c0) * 1e6 / total, 1),
           "cpu_note": "pcscd and card-side CPU over all APDUs of the run (warm-up and both "
                       "series), /proc ticks for pcscd (10 ms resolution)"}
    for s in res["series"]:
        if s["bad"]:
            raise BenchError("%s: %d wrong answers" % (reader, s["bad"]), name="RUN_FAILED")
        out["series"][s["name"]] = _stats_ns(s["times_ns"],
                                             {"client_cpu_us_per_apdu": s["client_cpu_s"]})
    return out


def run_vpcd(series, warmup, timeout_s=600):
    from ..pcscd import private_pcscd, vpcd_reader, unavailable_reason, PcscdError
    reason = unavailable_reason()
    if reason:
        raise BenchError("private pcscd: %s" % reason, name="NO_PCSCD")
    try:
        with private_pcscd([vpcd_reader()]) as daemon:
            vicc = daemon.vicc(MiniCard())
            try:
                if not vicc.wait_connected(20):
                    raise BenchError("vicc did not reach vpcd", name="RUN_FAILED")
                return _pcscd_path(daemon, "Virtual PCD 00 00", series, warmup, timeout_s)
            finally:
                vicc.stop()
    except PcscdError as e:
        raise BenchError("pcscd + vpcd: %s" % e, name="NO_PCSCD")


def run_serial(series, warmup, timeout_s=600):
    from ..pcscd import private_pcscd, serial_reader, unavailable_reason, PcscdError
    from ..reader import EmulatedReader
    from ..serial_reader import SerialReaderBridge
    reason = unavailable_reason()
    if reason:
        raise BenchError("private pcscd: %s" % reason, name="NO_PCSCD")
    reader = EmulatedReader("gemalto-pctwin", cards={0: MiniCard()})
    try:
        # the pty must exist before pcscd reads reader.conf
        with SerialReaderBridge(reader) as bridge:
            with private_pcscd([serial_reader(bridge.device)]) as daemon:
                return _pcscd_path(daemon, "GemPCTwin serial 00 00", series, warmup, timeout_s)
    except PcscdError as e:
        raise BenchError("pcscd + libccid serial: %s" % e, name="NO_PCSCD")


# --------------------------------------------------------------------------- the bench

def run(args):
    smoke = getattr(args, "smoke", False)
    count = 20 if smoke else int(getattr(args, "count", 1000))
    count_long = 5 if smoke else int(getattr(args, "count_long", 200))
    warmup = 3 if smoke else int(getattr(args, "warmup", 50))
    paths = PATHS if getattr(args, "paths", None) is None else \
        [p.strip() for p in args.paths.split(",") if p.strip()]
    for p in paths:
        if p not in PATHS:
            raise BenchError("unknown path %r (one of %s)" % (p, ", ".join(PATHS)),
                             name="BAD_ARGUMENT")
    if count < 1 or count_long < 0 or warmup < 0:
        raise BenchError("counts must be positive", name="BAD_ARGUMENT")
    series = _series(count, count_long)
    results = {}
    errors = {}
    for p in paths:
        try:
            if p == "inproc":
                results[p] = run_inproc(series, warmup)
            elif p == "vpcd":
                results[p] = run_vpcd(series, warmup)
            else:
                results[p] = run_serial(series, warmup)
        except BenchError as e:
            if p == "inproc":
                raise
            errors[p] = str(e)
    ratios = {}
    if "inproc" in results:
        ours = results["inproc"]["series"]
        for p in results:
            if p == "inproc":
                continue
            ratios[p] = {}
            for sname in results[p]["series"]:
                th = results[p]["series"][sname]
                ratios[p][sname] = {
                    "median_ratio": round(th["median_us"] / ours[sname]["median_us"], 3),
                    "p95_ratio": round(th["p95_us"] / ours[sname]["p95_us"], 3)}
    prof = None
    if "inproc" in paths and not getattr(args, "no_profile", False):
        prof = profile_inproc(200 if smoke else 2000)
    result = {
        "bench": NAME,
        "machine": machine(),
        "parameters": {"paths": list(paths), "count": count, "count_long": count_long,
                       "warmup": warmup, "smoke": smoke, "card": "MiniCard (one per path)",
                       "short_apdu": SHORT.hex(), "long_apdu": "ECHO 255 bytes each way",
                       "protocol_asked": "T=1"},
        "units": {"median_us": "wall-clock µs per round trip (real time, not emulated)",
                  "cpu_us_per_apdu": "process CPU µs per APDU (in-process path: everything)",
                  "client_cpu_us_per_apdu": "pyscard client process CPU µs per APDU"},
        "notes": ["The in-process path uses emulated time with time scale 0: the emulated "
                  "reader never sleeps, so its wall time is CPU work only.",
                  "The pcscd paths' card side (vicc, serial reader) runs in a thread of the "
                  "bench process; the pyscard client is a process of its own."],
        "goal": dict(GOALS, text=GOAL_TEXT),
        "reference": REFERENCE,
        "results": results,
        "errors": errors,
        "ratio_to_inproc": ratios,
        "inproc_profile": prof,
    }
    result["verdicts"] = verdicts(result)
    return result


def verdicts(result):
    out = []
    ours = result["results"].get("inproc")
    if ours:
        m = ours["series"]["short"]["median_us"]
        out.append({"what": "in-process short APDU median", "measured_us": m,
                    "goal_us": GOALS["inproc_short_median_us"],
                    "met": m <= GOALS["inproc_short_median_us"]})
    r = result["ratio_to_inproc"].get("vpcd")
    if r and "short" in r:
        out.append({"what": "pcscd + vpcd + pyscard / in-process, short APDU median",
                    "measured_ratio": r["short"]["median_ratio"],
                    "goal_ratio": GOALS["speedup_vs_vpcd"],
                    "met": r["short"]["median_ratio"] >= GOALS["speedup_vs_vpcd"]})
    return out


def markdown(result):
    rows = []
    for p in PATHS:
        res = result["results"].get(p)
        if res is None:
            if p in result["errors"]:
                rows.append([PATH_TEXT[p], "-", "not run: " + result["errors"][p], "", "", ""])
            continue
        for sname in ("short", "long"):
            st = res["series"].get(sname)
            if st is None:
                continue
            ratio = ""
            if p != "inproc" and p in result["ratio_to_inproc"]:
                ratio = "%.2f×" % result["ratio_to_inproc"][p][sname]["median_ratio"]
            rows.append([PATH_TEXT[p], sname, "%d" % st["count"], "%.1f" % st["median_us"],
                         "%.1f" % st["p95_us"], ratio])
    text = "APDU round trip, same machine, one run (wall-clock µs)\n\n"
    text += markdown_table(["path", "APDU", "n", "median µs", "p95 µs",
                            "median / in-process"], rows)
    text += "\nGoals: %s. Reference: %s.\n\n" % (GOAL_TEXT, REFERENCE["text"])
    for v in result["verdicts"]:
        if "measured_us" in v:
            text += "- %s: %.1f µs (goal ≤ %g µs): %s\n" % (
                v["what"], v["measured_us"], v["goal_us"], "met" if v["met"] else "missed")
        else:
            text += "- %s: %.2f× (goal ≥ %g×): %s\n" % (
                v["what"], v["measured_ratio"], v["goal_ratio"], "met" if v["met"] else "missed")
    prof = result.get("inproc_profile")
    if prof:
        b = prof["breakdown"]
        text += "\nWhere the in-process time goes, one layer removed at a time (median µs of " \
                "a short APDU; %s):\n\n" % b["how"]
        text += markdown_table(["part", "µs"], [[k, "%.1f" % b["parts_us"][k]]
                                               for k in b["parts_us"]])
        text += "\ncProfile own-time shares (%d short APDUs, full path):\n\n" % prof["apdus"]
        text += markdown_table(["part", "share", "calls per APDU"],
                               [[x["part"], "%.1f %%" % x["share_pct"], x["calls_per_apdu"]]
                                for x in prof["parts"]])
    return text


def plot(result, path):
    plt = pyplot()
    fig, axes = plt.subplots(1, 2, figsize=(12, 6))
    colours = {"inproc": "tab:green", "vpcd": "tab:blue", "serial": "tab:orange"}
    shown = []
    for ax, sname, title in ((axes[0], "short", "short APDU (00 B0 00 00 05)"),
                             (axes[1], "long", "255-byte ECHO each way")):
        data = []
        labels = []
        cols = []
        for p in PATHS:
            res = result["results"].get(p)
            if res is None or sname not in res["series"]:
                continue
            data.append(res["series"][sname]["sample_us"])
            labels.append(p)
            cols.append(colours[p])
            if p not in shown:
                shown.append(p)
        if not data:
            ax.set_visible(False)
            continue
        bp = ax.boxplot(data, tick_labels=labels, whis=(5, 95), showfliers=False,
                        patch_artist=True)
        for patch, c in zip(bp["boxes"], cols):
            patch.set_facecolor(c)
            patch.set_alpha(0.5)
        if sname == "short":
            ax.axhline(GOALS["inproc_short_median_us"], linestyle="--", color="tab:green",
                       label="goal: in-process median ≤ 50 µs")
            lo, hi = REFERENCE["vpcd_short_ms"]
            ax.axhspan(lo * 1000, hi * 1000, color="tab:blue", alpha=0.12,
                       label="published pcscd + vpcd + pyscard: 90-140 µs")
        ax.set_yscale("log")
        ax.set_ylabel("round trip, µs (wall clock, log scale)")
        ax.set_xlabel("path (boxes: quartiles and median, whiskers 5th-95th percentile)")
        ax.set_title(title)
        ax.grid(True, axis="y", which="both", alpha=0.3)
    for p in shown:
        axes[0].plot([], [], color=colours[p], linewidth=8, alpha=0.5, label=PATH_TEXT[p])
    handles, labs = axes[0].get_legend_handles_labels()
    fig.legend(handles, labs, loc="lower center", ncol=2, fontsize=8)
    fig.suptitle("APDU round trip: ccidkit in-process vs pcscd-based stacks (same machine, one run)")
    fig.tight_layout(rect=(0, 0.13, 1, 1))
    fig.savefig(path, dpi=110)
    plt.close(fig)
