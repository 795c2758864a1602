"""firmware: the UEFI image in QEMU (issue 7, benchmark 5).

    ccidkit bench firmware [--apdus N] [--boots B] [--no-demo]

1. .efi size: ``build/uefi/ccidkit.efi`` from the image builder
   (uefi/build.py, built or found up to date; its manifest's figure).
2. One boot of the app ``bench-firmware`` (uefi/fw/apps/bench_firmware.py)
   with two readers: QEMU's usb-ccid with a MiniCard behind our VSCard
   server, and an emulated GemPC Twin (T=1) over usb-redir. The host stamps
   every console line as it arrives: QEMU launch (the harness's ``start()``
   returning, as docs/demo.md counts) -> the app's first line, and -> the
   first APDU answer. Inside the firmware the app times N ECHO APDUs per
   reader with efi.ticks_us() around Reader.transmit (the in-firmware
   driver over EFI_USB_IO), prints them, and the host takes their median
   and p95.
3. One boot of the pre-boot authentication demo (emu/demo.py, `ccidkit uefi
   demo`, usb-ccid): QEMU launch -> the SUCCESS line (goal <= 20 s; the
   figure in docs/demo.md is 4.2-4.4 s).

All times are wall time of this machine (QEMU TCG, no KVM); the in-firmware
round trips are the guest's clock (efi.ticks_us, which follows the host's
under TCG). Only one VM runs at a time on the machine: a boot may first wait
for another one (that wait is not in the figures).
"""

import os
import re
import threading
import time

from ccidkit.emu.bench import common
from ccidkit.emu.bench.common import BenchError
from ccidkit.core.errors import CcidkitError

NAME = "firmware"
HELP = ".efi size, QEMU launch to first APDU and to authentication, APDU round trip via " \
       "usb-ccid and usbredir (inside the firmware)"

APP = "bench-firmware"
USB_CCID = "08E6:4433"          # QEMU's usb-ccid
TWIN = "08E6:3437"              # the emulated GemPC Twin (emu/profiles.py)
PATHS = ((USB_CCID, "usb-ccid (QEMU's reader + VSCard)"),
         (TWIN, "usb-redir (emulated GemPC Twin)"))
DEFAULT_APDUS = 100
SMOKE_APDUS = 5
GOAL_AUTH_S = 20.0
REFERENCE = {
    "demo_launch_to_authenticated_s": [4.2, 4.4],
    "demo_source": "docs/demo.md (qemu-ccid, Secure Boot off)",
    "launch_to_first_python_line_s": [3.9, 4.4],
    "first_line_source": "docs/uefi.md",
    "efi_bytes": 2100000,
    "efi_source": "docs/uefi.md (2.10 MB)",
}
BOOT_TIMEOUT_S = 900.0

LINE_RE = re.compile(r"^bench-firmware: (\S+)(?: (.*))?$")


def add_arguments(p):
    p.add_argument("--apdus", type=int, default=DEFAULT_APDUS,
                   help="timed APDUs per reader inside the firmware (default %d)" % DEFAULT_APDUS)
    p.add_argument("--boots", type=int, default=1,
                   help="boots of each kind (medians over them; default 1)")
    p.add_argument("--no-demo", action="store_true",
                   help="skip the authentication demo's boot")


# ---------------------------------------------------------------- parsing

def parse_console(lines):
    """The app's lines -> {"start": i, "first_apdu": [(tag, i)], "rtt": {tag: [us]},
    "readers": {tag: text}, "done": bool, "errors": [text]}; ``i`` the line's index."""
    out = {"start": None, "first_apdu": [], "rtt": {}, "readers": {}, "done": False,
           "errors": []}
    for i, line in enumerate(lines):
        m = LINE_RE.match(line.rstrip("\r"))
        if not m:
            continue
        what, rest = m.group(1), m.group(2) or ""
        if what == "start" and out["start"] is None:
            out["start"] = i
        elif what == "reader":
            tag, _, text = rest.partition(" ")
            out["readers"][tag] = text
        elif what == "first-apdu":
            tag, _, verdict = rest.partition(" ")
            if verdict == "ok":
                out["first_apdu"].append((tag, i))
            else:
                out["errors"].append(line)
        elif what == "rtt":
            parts = rest.split(" ")
            if len(parts) != 3 or parts[1] != "us":
                out["errors"].append(line)
                continue
            try:
                values = [int(v) for v in parts[2].split(",") if v]
            except ValueError:
                out["errors"].append(line)
                continue
            out["rtt"].setdefault(parts[0], []).extend(values)
        elif what == "done":
            out["done"] = True
        else:
            out["errors"].append(line)
    return out


def rtt_stats(values_us):
    return {"n": len(values_us),
            "median_ms": round(common.median(values_us) / 1000.0, 3),
            "p95_ms": round(common.percentile(values_us, 95) / 1000.0, 3),
            "min_ms": round(min(values_us) / 1000.0, 3),
            "max_ms": round(max(values_us) / 1000.0, 3)}


# ---------------------------------------------------------------- the boots

class _Stamps:
    def __init__(self):
        self.lines = []
        self.times = []
        self.lock = threading.Lock()

    def __call__(self, line):
        with self.lock:
            self.lines.append(line)
            self.times.append(time.monotonic())


def boot_bench(image, apdus, readers=("qemu-ccid", "emulated:gemalto-pctwin")):
    """One boot of bench-firmware; returns the measured dict."""
    from ccidkit.emu import qemu
    from ccidkit.emu.vm_readers import VmReaders
    rig = VmReaders(list(readers))
    stamps = _Stamps()
    rig.start()
    vm = None
    try:
        opts = rig.qemu_options()
        vm = qemu.Vm(image, app=APP,
                     args=["--apdus", apdus, "--readers", len(readers), "--wait-ms", 120000],
                     chardevs=opts["chardevs"], extra_devices=opts["devices"], echo=stamps)
        vm.start()
        t_launch = time.monotonic()
        status = vm.wait_exit(BOOT_TIMEOUT_S)
        t_exit = time.monotonic()
        console = vm.console
    finally:
        if vm is not None:
            vm.close()
        rig.stop()
    with stamps.lock:
        lines = list(stamps.lines)
        times = list(stamps.times)
    parsed = parse_console(lines)
    if status != 0 or not parsed["done"] or parsed["errors"]:
        raise BenchError("bench-firmware ended with status %r: %s" % (
            status, "\n".join(parsed["errors"] or console.splitlines()[-15:])), name="RUN_FAILED")
    out = {"status": status, "launch_to_exit_s": round(t_exit - t_launch, 3),
           "launch_to_app_start_s": round(times[parsed["start"]] - t_launch, 3),
           "first_apdu": [], "rtt_us": parsed["rtt"], "readers": parsed["readers"]}
    for tag, i in parsed["first_apdu"]:
        out["first_apdu"].append({"reader": tag, "launch_s": round(times[i] - t_launch, 3)})
    for tag, _ in PATHS:
        if len(parsed["rtt"].get(tag, ())) != apdus:
            raise BenchError("reader %s: %d round trips, %d expected" % (
                tag, len(parsed["rtt"].get(tag, ())), apdus), name="RUN_FAILED")
    return out


def boot_demo():
    from ccidkit.emu.demo import run_demo
    t0 = time.monotonic()
    status, demo = run_demo(echo=None, progress=None, reader="qemu-ccid")
    took = demo.seconds_to_success
    if status != 0 or took is None:
        raise BenchError("the demo did not authenticate (status %r)" % status, name="RUN_FAILED")
    return {"status": status, "launch_to_authenticated_s": round(took, 3),
            "whole_command_s": round(time.monotonic() - t0, 3)}


# ---------------------------------------------------------------- the bench

def run(args):
    smoke = bool(getattr(args, "smoke", False))
    apdus = SMOKE_APDUS if smoke else args.apdus
    boots = 1 if smoke else max(1, args.boots)
    demo = not (smoke or args.no_demo)
    if not 1 <= apdus <= 10000:
        raise BenchError("--apdus is 1..10000", name="BAD_ARGUMENT")
    try:
        from ccidkit.uefi.build import build_image
        from ccidkit.emu.qemu import find_qemu, find_firmware
        find_qemu()
        find_firmware()
    except ImportError as e:
        raise BenchError("the UEFI builder is not installed: %s" % e, name="NO_IMAGE") from e
    except CcidkitError as e:
        raise BenchError("QEMU or OVMF missing: %s" % e, name="NO_IMAGE") from e
    t_start = time.monotonic()
    try:
        image = build_image(progress=None)
    except CcidkitError as e:
        raise BenchError("the UEFI image could not be built: %s" % e, name="NO_IMAGE") from e
    manifest = image.manifest
    efi_bytes = os.path.getsize(image.efi_path)

    bench_boots = []
    demo_boots = []
    try:
        for _ in range(boots):
            bench_boots.append(boot_bench(image, apdus))
        if demo:
            for _ in range(boots):
                demo_boots.append(boot_demo())
    except CcidkitError as e:
        if isinstance(e, BenchError):
            raise
        raise BenchError("a boot failed: %s" % e, name="RUN_FAILED") from e

    rtt = {}
    for tag, label in PATHS:
        values = []
        for b in bench_boots:
            values += b["rtt_us"][tag]
        rtt[tag] = dict(path=label, **rtt_stats(values))
    first = [b["first_apdu"][0]["launch_s"] for b in bench_boots]
    first_reader = bench_boots[0]["first_apdu"][0]["reader"]
    app_start = [b["launch_to_app_start_s"] for b in bench_boots]
    auth = [d["launch_to_authenticated_s"] for d in demo_boots]
    table = manifest.get("table", {})
    result = {
        "bench": NAME,
        "machine": common.machine(),
        "units": {
            "s": "wall time on this machine from QEMU's launch (the harness's start() "
                 "returning), QEMU TCG (no KVM); stamped when the console line reaches the host",
            "ms": "APDU round trip measured inside the firmware with efi.ticks_us() around "
                  "Reader.transmit (the guest's clock, which follows the host's under TCG)",
            "bytes": "file size",
        },
        "notes": [
            "readers in one boot: QEMU usb-ccid (MiniCard behind VSCard, T=0, APDUs passed "
            "whole) and an emulated GemPC Twin over usb-redir (MiniCard, T=1 at TPDU level)",
            "the timed APDU: ECHO 80 EE 00 00 04 DE AD BE EF 00 (answer DE AD BE EF 90 00)",
            "first APDU: the first reader the app serves (readers in VID:PID order): %s"
            % first_reader,
            "the demo: `ccidkit uefi demo` (usb-ccid, PIV card, RSA-2048 signature verified "
            "in the firmware); its own image build/uefi-demo",
            "time a boot spent waiting for another VM on the machine is not counted",
        ] + (["smoke run: %d APDUs, the demo boot skipped" % apdus] if smoke else [])
          + (["the demo boot was skipped (--no-demo)"] if not demo and not smoke else []),
        "parameters": {"apdus": apdus, "boots": boots, "smoke": smoke, "demo": demo,
                       "readers": [label for _, label in PATHS]},
        "goal": {"launch_to_authenticated_s": GOAL_AUTH_S},
        "reference": REFERENCE,
        "efi": {"bytes": efi_bytes, "manifest_bytes": manifest.get("efi", {}).get("size"),
                "table_bytes": table.get("size"), "table_files": len(table.get("files", ())),
                "path": image.efi_path},
        "boot": {
            "launch_to_app_start_s": _summary(app_start),
            "launch_to_first_apdu_s": _summary(first),
            "first_apdu_reader": first_reader,
            "launch_to_authenticated_s": _summary(auth) if auth else None,
        },
        "rtt": rtt,
        "boots": {"bench": bench_boots, "demo": demo_boots},
        "verdict": {"launch_to_authenticated_met":
                    (max(auth) <= GOAL_AUTH_S) if auth else None},
        "elapsed_s": round(time.monotonic() - t_start, 2),
    }
    return result


def _summary(values):
    return {"median": round(common.median(values), 3), "values": values, "n": len(values)}


# ---------------------------------------------------------------- outputs

def markdown(result):
    b = result["boot"]
    ref = result["reference"]
    auth = b["launch_to_authenticated_s"]
    met = result["verdict"]["launch_to_authenticated_met"]
    rows = [
        [".efi size", "%.2f MB" % (result["efi"]["bytes"] / 1e6), "-",
         "%.2f MB" % (ref["efi_bytes"] / 1e6), "-"],
        ["QEMU launch -> app's first line", "%.2f s" % b["launch_to_app_start_s"]["median"], "-",
         "%.1f-%.1f s" % tuple(ref["launch_to_first_python_line_s"]), "-"],
        ["QEMU launch -> first APDU answer (%s)" % b["first_apdu_reader"],
         "%.2f s" % b["launch_to_first_apdu_s"]["median"], "-", "-", "-"],
        ["QEMU launch -> authenticated (demo, usb-ccid)",
         "%.2f s" % auth["median"] if auth else "not run",
         "<= %.0f s" % result["goal"]["launch_to_authenticated_s"],
         "%.1f-%.1f s" % tuple(ref["demo_launch_to_authenticated_s"]),
         "-" if met is None else ("met" if met else "missed")],
    ]
    for tag, _ in PATHS:
        r = result["rtt"][tag]
        rows.append(["APDU round trip via %s (n=%d)" % (r["path"], r["n"]),
                     "median %.2f ms, p95 %.2f ms" % (r["median_ms"], r["p95_ms"]), "-", "-", "-"])
    out = "### firmware\n\n" + common.markdown_table(
        ["figure", "measured", "goal", "reference", "goal met"], rows)
    out += "\n" + "\n".join("- " + n for n in result["notes"]) + "\n"
    return out


def plot(result, path):
    plt = common.pyplot()
    fig, (ax, ax2) = plt.subplots(1, 2, figsize=(12, 4.8))
    b = result["boot"]
    labels = ["app start", "first APDU", "authenticated"]
    values = [b["launch_to_app_start_s"]["median"], b["launch_to_first_apdu_s"]["median"],
              b["launch_to_authenticated_s"]["median"] if b["launch_to_authenticated_s"] else 0]
    ax.barh(labels, values, color=["tab:gray", "tab:blue", "tab:green"], label="measured")
    ax.axvline(result["goal"]["launch_to_authenticated_s"], color="tab:red", linestyle="--",
               label="goal: authenticated <= 20 s")
    ref = result["reference"]["demo_launch_to_authenticated_s"]
    ax.axvline(max(ref), color="tab:orange", linestyle=":",
               label="docs/demo.md: %.1f s" % max(ref))
    ax.set_xlabel("seconds from QEMU launch (wall, TCG)")
    ax.set_title("Boot milestones")
    ax.legend(loc="lower right")
    data = []
    names = []
    for tag, label in PATHS:
        vals = []
        for bb in result["boots"]["bench"]:
            vals += [v / 1000.0 for v in bb["rtt_us"][tag]]
        data.append(vals)
        names.append(label.split(" (")[0])
    ax2.boxplot(data, whis=(5, 95), showfliers=True)
    ax2.set_xticks(range(1, len(names) + 1))
    ax2.set_xticklabels(names)
    ax2.set_ylabel("APDU round trip (ms, in-firmware clock)")
    ax2.set_title("APDU round trip through EFI_USB_IO (whiskers p5-p95)")
    fig.suptitle("ccidkit UEFI firmware under QEMU TCG (%s)" % result["machine"]["date"][:10])
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)
