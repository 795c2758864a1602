"""`ccidkit bench footprint`: a smoke run through the CLI (shape and sanity of
the figures, never their speed) and the pure pieces (bisection, parsing,
the recording / replay pair)."""

import io
import json
import os

import pytest

from ccidkit.scripts.main import main
from ccidkit.emu.bench import footprint
from ccidkit.emu.bench.common import BenchError
from ccidkit.emu.bench.footprint_work import ReplayTransport, ReplayError, t1_echo, phonebook


@pytest.fixture(scope="module")
def smoke(tmp_path_factory):
    out = tmp_path_factory.mktemp("fp")
    rc = main(["bench", "footprint", "--smoke", "--out", str(out), "--plot", str(out / "p.png"),
               "--json-file", str(out / "r.json")])
    assert rc == 0
    return out


def test_smoke_writes_the_three_files_and_a_png(smoke):
    for name in ("footprint.json", "footprint.md", "footprint.png", "p.png", "r.json"):
        assert (smoke / name).stat().st_size > 0, name
    assert (smoke / "footprint.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert (smoke / "p.png").read_bytes()[:4] == b"\x89PNG"
    md = (smoke / "footprint.md").read_text()
    assert "| core .mpy total" in md and "| figure | measured | goal | reference | goal met |" in md


def test_smoke_json_shape_and_sane_numbers(smoke):
    r = json.loads((smoke / "footprint.json").read_text())
    assert r["bench"] == "footprint" and r["parameters"]["smoke"] is True
    assert r["machine"]["cores"] >= 1 and "bytes" in r["units"] and r["notes"]
    assert r["goal"] == {"core_mpy_total_bytes": 65536, "t1_4k_peak_heap_bytes": 49152}
    m = r["mpy"]
    assert m["total_bytes"] == sum(e["bytes"] for e in m["modules"])
    assert m["minimal"]["total_bytes"] == sum(e["bytes"] for e in m["minimal"]["modules"])
    assert 0 < m["minimal"]["total_bytes"] < m["total_bytes"]
    names = set(e["module"] for e in m["modules"])
    assert set(e["module"] for e in m["minimal"]["modules"]) <= names
    assert {"driver", "t1", "apdu"} <= set(e["module"] for e in m["minimal"]["modules"])
    assert "pcsc" in m["minimal"]["left_out"]
    assert r["verdict"]["core_mpy_total_met"] == (m["total_bytes"] <= 65536)

    t1 = r["heap"]["t1_echo"]
    assert t1["parameter"] == 4096 and t1["response_bytes"] == 4098
    assert t1["usb_transfers"] > 2 * 4096 // 254          # chained blocks both ways
    assert t1["probes"] >= t1["usb_transfers"]
    assert 0 < t1["heap_after_start_bytes"] < t1["before_exchange_bytes"] <= t1["peak_bytes"]
    assert t1["exchange_peak_bytes"] <= t1["peak_bytes"]
    assert t1["exchange_growth_bytes"] == t1["exchange_peak_bytes"] - t1["before_exchange_bytes"]
    assert t1["exchange_growth_bytes"] >= 4096            # it holds the 4 KiB command at least
    assert t1["kit_code_bytes"] > 0 and t1["run_peak_bytes"] > 0
    assert t1["min_heapsize_bytes"] >= t1["peak_bytes"] - t1["harness_bytes"]
    assert t1["min_heapsize_bytes"] % t1["bisect_step_bytes"] == 0
    assert r["verdict"]["t1_run_peak_met"] == (t1["run_peak_bytes"] <= 49152)

    pb = r["heap"]["phonebook"]
    assert pb["records"] == pb["parameter"] == 20 and 0 < pb["entries"] <= 20
    assert pb["usb_transfers"] >= 2 * (6 + 20)          # XfrBlock out + in per APDU
    assert pb["min_heapsize_bytes"] > 0

    plats = [(i["platform"], i["what"]) for i in r["import_time"]]
    assert len(plats) == 5 and sum(1 for p in plats if p[0] == "cpython") == 2
    for i in r["import_time"]:
        assert i["runs"] == 1 and i["median_ms"] > 0 and i["p95_ms"] >= i["min_ms"] > 0


def test_bisect_finds_the_smallest_passing_size():
    for need in (4096, 5000, 40960, 400000):
        calls = []

        def ok(n):
            calls.append(n)
            return n >= need
        got, tries = footprint.bisect_heapsize(ok, 4096, 1 << 20, 1024)
        assert got == -(-need // 1024) * 1024
        assert tries == len(calls) and tries <= 12
    assert footprint.bisect_heapsize(lambda n: False, 4096, 8192, 1024) == (None, 1)


def test_parse_kv():
    assert footprint.parse_kv("HEAP a=1 b=22", "HEAP") == {"a": 1, "b": 22}
    for bad in ("HEAP a", "HEAP a=x", "OTHER a=1", ""):
        with pytest.raises(BenchError):
            footprint.parse_kv(bad, "HEAP")


def test_recording_replays_on_cpython_and_a_changed_run_is_caught(tmp_path):
    rec = str(tmp_path / "t1.rec")
    assert footprint.record("t1_echo", rec, 600) == 602
    with open(rec) as f:
        lines = f.read().splitlines()
    assert lines[0].startswith("H 08E6 ") and any(l.startswith("O ") for l in lines)
    probes = []
    with open(rec) as f:
        t = ReplayTransport(f, sample=lambda: probes.append(1))
        assert t1_echo(t, size=600) == 602
    assert t.transfers == len(lines) - 1 == len(probes)
    # the same recording cannot stand for another exchange
    with open(rec) as f:
        with pytest.raises(ReplayError) as e:
            t1_echo(ReplayTransport(f), size=599)
    assert e.value.name == "MISMATCH"
    with pytest.raises(ReplayError) as e:
        ReplayTransport(io.StringIO("X\n"))
    assert e.value.name == "BAD_RECORDING"

    pb = str(tmp_path / "pb.rec")
    host = footprint.record("phonebook", pb, 5)
    assert host[0] == 5 and 0 < host[1] <= 5
    with open(pb) as f:
        assert phonebook(ReplayTransport(f), max_records=5) == host
    with open(pb) as f:
        t = ReplayTransport(f)
        with pytest.raises(ReplayError) as e:
            phonebook(t, max_records=6)        # one more READ RECORD than was recorded
    assert e.value.name in ("END", "MISMATCH")


def test_bad_arguments_are_reported(capsys):
    assert main(["bench", "footprint", "--smoke", "--size", "0"]) == 1
    assert "BAD_ARGUMENT" in capsys.readouterr().err


# ---------------------------------------------------------------- bench firmware: console parsing

def test_firmware_console_parsing_and_stats():
    from ccidkit.emu.bench import firmware
    lines = [
        "OVMF noise",
        "bench-firmware: start",
        "bench-firmware: reader 08E6:3437 T=1 level TPDU",
        "bench-firmware: first-apdu 08E6:3437 ok",
        "bench-firmware: rtt 08E6:3437 us 1000,3000",
        "bench-firmware: rtt 08E6:3437 us 2000",
        "bench-firmware: reader 08E6:4433 T=0 level short APDU",
        "bench-firmware: first-apdu 08E6:4433 ok\r",
        "bench-firmware: rtt 08E6:4433 us 500",
        "bench-firmware: done",
        "CCIDKIT-EXIT status=0",
    ]
    p = firmware.parse_console(lines)
    assert p["start"] == 1 and p["done"] and p["errors"] == []
    assert p["first_apdu"] == [("08E6:3437", 3), ("08E6:4433", 7)]
    assert p["rtt"] == {"08E6:3437": [1000, 3000, 2000], "08E6:4433": [500]}
    assert p["readers"]["08E6:4433"] == "T=0 level short APDU"
    s = firmware.rtt_stats(p["rtt"]["08E6:3437"])
    assert s == {"n": 3, "median_ms": 2.0, "p95_ms": 2.9, "min_ms": 1.0, "max_ms": 3.0}
    bad = firmware.parse_console(["bench-firmware: rtt X us 1,x", "bench-firmware: first-apdu "
                                  "08E6:4433 WRONG", "bench-firmware: driver error: boom"])
    assert len(bad["errors"]) == 3 and not bad["done"] and bad["rtt"] == {}
