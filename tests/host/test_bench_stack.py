"""ccidkit bench stack: a smoke run through the CLI of all three paths (the
pcscd ones for real, each pcscd private and stopped), checking shapes,
counts and ratios against the times they came from (no timing assertions),
and the pure logic."""

import json
import os

import pytest

from ccidkit.scripts.main import main
from ccidkit.emu.bench import stack as S
from ccidkit.emu.pcscd import unavailable_reason


@pytest.fixture(scope="module")
def smoke(tmp_path_factory):
    reason = unavailable_reason()
    if reason:
        pytest.skip("private pcscd: " + reason)
    pytest.importorskip("smartcard")
    d = tmp_path_factory.mktemp("bench-stack")
    out = d / "out"
    plot = d / "plot.png"
    js = d / "stack.json"
    rc = main(["bench", "stack", "--smoke", "--out", str(out), "--plot", str(plot),
               "--json-file", str(js)])
    assert rc == 0
    with open(js) as f:
        return json.load(f), out, plot


def _alive(pid):
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    # a zombie is gone for our purposes
    try:
        with open("/proc/%d/stat" % pid) as f:
            return f.read().rsplit(")", 1)[1].split()[0] != "Z"
    except OSError:
        return False


def test_smoke_all_paths_ran(smoke):
    res, _, _ = smoke
    assert res["bench"] == "stack" and res["machine"]["python"]
    assert res["errors"] == {}
    assert sorted(res["results"]) == ["inproc", "serial", "vpcd"]
    assert res["parameters"]["count"] == 20 and res["parameters"]["count_long"] == 5
    assert res["goal"]["inproc_short_median_us"] == 50.0
    assert res["reference"]["vpcd_short_ms"] == [0.09, 0.14]
    for p, r in res["results"].items():
        assert r["series"]["short"]["count"] == 20
        assert r["series"]["long"]["count"] == 5
        for s in r["series"].values():
            assert len(s["sample_us"]) == s["count"]
            assert 0 < s["min_us"] <= s["median_us"] <= s["p95_us"] <= s["max_us"]
        assert r["protocol"] == "T=1"
    assert res["results"]["vpcd"]["reader"] == "Virtual PCD 00 00"
    assert res["results"]["serial"]["reader"] == "GemPCTwin serial 00 00"
    assert res["results"]["inproc"]["series"]["short"]["cpu_us_per_apdu"] > 0
    assert res["results"]["vpcd"]["series"]["short"]["client_cpu_us_per_apdu"] > 0


def test_smoke_ratios_come_from_the_same_run(smoke):
    res, _, _ = smoke
    ours = res["results"]["inproc"]["series"]
    for p in ("vpcd", "serial"):
        for sname in ("short", "long"):
            th = res["results"][p]["series"][sname]
            rt = res["ratio_to_inproc"][p][sname]
            assert rt["median_ratio"] == pytest.approx(th["median_us"] / ours[sname]["median_us"],
                                                       rel=2e-3, abs=6e-4)
            assert rt["p95_ratio"] == pytest.approx(th["p95_us"] / ours[sname]["p95_us"],
                                                    rel=2e-3, abs=6e-4)
    v = res["verdicts"]
    assert [x["what"] for x in v] == ["in-process short APDU median",
                                      "pcscd + vpcd + pyscard / in-process, short APDU median"]
    assert v[0]["met"] == (v[0]["measured_us"] <= 50.0)
    assert v[1]["met"] == (v[1]["measured_ratio"] >= 2.0)


def test_smoke_profile_adds_up(smoke):
    res, _, _ = smoke
    prof = res["inproc_profile"]
    assert prof["apdus"] == 200
    assert sum(p["share_pct"] for p in prof["parts"]) == pytest.approx(100.0, abs=0.6)
    b = prof["breakdown"]
    assert b["driver_alone_us"] > 0
    assert sum(b["parts_us"].values()) == pytest.approx(b["full_us"], abs=0.05)


def test_smoke_processes_are_gone(smoke):
    res, _, _ = smoke
    for p in ("vpcd", "serial"):
        pid = res["results"][p]["pcscd_pid"]
        assert pid > 0 and not _alive(pid)


def test_smoke_files(smoke):
    _, out, plot = smoke
    for name in ("stack.json", "stack.md", "stack.png"):
        assert (out / name).stat().st_size > 0
    with open(plot, "rb") as f:
        assert f.read(8) == b"\x89PNG\r\n\x1a\n"
    md = (out / "stack.md").read_text()
    assert "pcscd + vpcd + pyscard" in md and "median / in-process" in md


def test_stats_of_round_trips():
    st = S._stats_ns([3000, 1000, 2000, 4000], {"cpu_us_per_apdu": 0.0001})
    assert st["count"] == 4 and st["median_us"] == 2.5 and st["min_us"] == 1.0
    assert st["max_us"] == 4.0 and st["p95_us"] == pytest.approx(3.85)
    assert st["cpu_us_per_apdu"] == 25.0
    assert st["sample_us"] == [3.0, 1.0, 2.0, 4.0]


def test_apdus_of_the_series():
    series = S._series(7, 3)
    assert [(n, c) for n, _, _, c in series] == [("short", 7), ("long", 3)]
    assert series[1][1][:5] == bytes.fromhex("80EE0000FF") and len(series[1][1]) == 261
    assert series[1][2][-2:] == b"\x90\x00" and len(series[1][2]) == 257
    assert S._series(7, 0) == [series[0]]


def test_proc_cpu_of_this_process():
    v = S._proc_cpu_s(os.getpid())
    assert v is not None and v >= 0
    assert S._proc_cpu_s(2 ** 31 - 2) is None


def test_markdown_with_a_path_that_did_not_run():
    st = S._stats_ns([40000, 60000], {})
    res = {"results": {"inproc": {"series": {"short": st}}}, "errors": {"vpcd": "NO_PCSCD: x"},
           "ratio_to_inproc": {}, "inproc_profile": None}
    res["verdicts"] = S.verdicts(res)
    assert res["verdicts"] == [{"what": "in-process short APDU median", "measured_us": 50.0,
                                "goal_us": 50.0, "met": True}]
    md = S.markdown(res)
    assert "not run: NO_PCSCD: x" in md and "50.0 µs (goal ≤ 50 µs): met" in md


def test_unknown_path_is_a_usage_error():
    assert main(["bench", "stack", "--smoke", "--paths", "inproc,nfc"]) == 1
