"""ccidkit bench apdu: a smoke run through the CLI on both platforms (no timing
assertions: shapes, counts and the arithmetic the figures come from), and
the pure logic: wire-time arithmetic, APDU layout, the replay and its input."""

import json
import os

import pytest
from hypothesis import given, strategies as st

from ccidkit.scripts.main import main
from ccidkit.emu.bench import apdu as A
from ccidkit.emu.bench import apdu_mp as M
from ccidkit.emu.bench.common import BenchError
from ccidkit.emu.card.minicard import MiniCard


@pytest.fixture(scope="module")
def smoke(tmp_path_factory):
    d = tmp_path_factory.mktemp("bench-apdu")
    out = d / "out"
    plot = d / "plot.png"
    js = d / "apdu.json"
    rc = main(["bench", "apdu", "--smoke", "--out", str(out), "--plot", str(plot),
               "--json-file", str(js)])
    assert rc == 0
    with open(js) as f:
        return json.load(f), out, plot


def test_smoke_shape(smoke):
    res, out, plot = smoke
    assert res["bench"] == "apdu"
    assert res["machine"]["cores"] >= 1 and res["machine"]["python"]
    assert res["parameters"]["smoke"] is True and res["parameters"]["runs"] == 1
    assert res["parameters"]["etu_us"] == 4.0
    assert "replay" in res["method"]
    assert res["goal"]["t1_4k_cpython_pct"] == 2.0 and res["goal"]["short_5b_pct"] == 25.0
    assert res["reference"]["derived_us_per_apdu"] > 0
    assert res["micropython"]["exe"] and "ticks_us" in res["micropython"]["clock"]
    rows = res["results"]
    assert sorted((r["level"], r["size"]) for r in rows) == sorted(
        (lv, s) for lv in A.LEVELS for s in (5, 256))
    for r in rows:
        assert r["wire_us"] > 0 and r["iterations"] >= 2
        for pf in ("cpython", "micropython"):
            s = r[pf]
            assert len(s["driver_us_runs"]) == 1
            assert s["driver_us"] > 0 and s["driver_us_p95"] >= s["driver_us"]
            assert s["stub_us"] >= 0
            # the fraction is the driver time over the wire time it came from
            assert s["pct_of_wire"] == pytest.approx(100.0 * s["driver_us"] / r["wire_us"],
                                                     rel=2e-3, abs=2e-3)


def test_smoke_wire_times_and_exchanges(smoke):
    res, _, _ = smoke
    by = dict(((r["level"], r["size"]), r) for r in res["results"])
    # READ BINARY 5: T=1 blocks of 9 and 11 bytes, (9*11 + 22 + 11*11 + 22) etu of 4 µs
    assert by[("t1-32", 5)]["wire_us"] == 1056.0
    assert by[("t1-254", 5)]["wire_us"] == 1056.0
    assert by[("short", 5)]["wire_us"] == 1056.0
    # T=0: header 5, one procedure byte, 5 data + SW1 SW2, 12 etu each
    assert by[("t0", 5)]["wire_us"] == (5 + 1 + 7) * 12 * 4.0
    assert by[("t0", 5)]["apdus_per_exchange"] == 1
    # 256 bytes: extended; T=0 goes through ENVELOPE segments and GET RESPONSE
    assert by[("t0", 256)]["command"].startswith("ECHO case 4E")
    assert by[("t0", 256)]["ccid_exchanges"] >= 3
    # T=1 IFSC 32 chains 265 bytes in 9 I-blocks, each but the last acknowledged
    assert by[("t1-32", 256)]["line_blocks_or_tpdus"] == 9 + 8 + 2 + 1
    verdicts = res["verdicts"]
    assert len(verdicts) == 8
    assert all(v["what"] == "short 5-byte APDU" and v["goal_pct"] == 25.0 for v in verdicts)
    for v in verdicts:
        assert v["met"] == (v["measured_pct"] <= 25.0)


def test_smoke_files(smoke):
    _, out, plot = smoke
    for name in ("apdu.json", "apdu.md", "apdu.png"):
        assert (out / name).stat().st_size > 0
    with open(plot, "rb") as f:
        assert f.read(8) == b"\x89PNG\r\n\x1a\n"
    with open(out / "apdu.png", "rb") as f:
        assert f.read(4) == b"\x89PNG"
    md = (out / "apdu.md").read_text()
    assert "| level | platform |" in md and "micropython" in md and "≤ 25 %" in md


def test_wire_time_arithmetic():
    assert A.etu_us() == 4.0
    assert A.t1_wire_us([4]) == (4 * 11 + 22) * 4.0
    assert A.t0_wire_us(5, 2) == 8 * 12 * 4.0
    # command of 70 bytes at IFSC 32: 32, 32, 6 with two R-blocks; answer of 40 at IFSD 254
    assert A.t1_block_lengths(70, 40, 32, 254) == [36, 4, 36, 4, 10, 44]
    assert A.t1_block_lengths(5, 300, 254, 254) == [9, 258, 4, 50]
    assert A.t1_block_lengths(0, 2, 32, 32) == [4, 6]


def test_block_lengths_match_a_recorded_exchange():
    # the computed T=1 blocks (used at short APDU level) are the ones the driver
    # and the card side really exchange at TPDU level
    rec = A.record("t1-254", 1024)
    got = []
    for out, ans in A._pairs(rec["loop"])[:len(A._pairs(rec["loop"])) // 2]:
        got += [len(out), len(ans)]
    want = A.t1_block_lengths(1024 + 9, 1024 + 2, 254, 254)
    # pairs are (reader block, card answer): flattened, the order on the line
    assert got == want


def test_command_layouts():
    setup, cmd, what = A.command_for(5)
    assert cmd == bytes.fromhex("00B0000005") and setup == [A.SETUP_SELECT]
    _, cmd, what = A.command_for(255)
    assert len(cmd) == 5 + 255 + 1 and cmd[4] == 255 and cmd[-1] == 255
    _, cmd, what = A.command_for(256)
    assert cmd[4:7] == b"\x00\x01\x00" and cmd[-2:] == b"\x01\x00" and len(cmd) == 7 + 256 + 2
    assert "4E" in what
    with pytest.raises(BenchError) as e:
        A.command_for(70000)
    assert e.value.name == "BAD_ARGUMENT"


def test_envelope_card_serves_an_extended_echo():
    card = A.EnvelopeCard(MiniCard(protocols=(1,), ifsc=254))
    _, cmd, _ = A.command_for(300)
    first, rest = cmd[:255], cmd[255:]
    assert card.process_apdu(bytes((0x10, 0xC2, 0, 0, len(first))) + first) == b"\x90\x00"
    r = card.process_apdu(bytes((0x00, 0xC2, 0, 0, len(rest))) + rest)
    assert r == b"\x61\x00"                      # 300 data bytes + SW wait
    got = card.process_apdu(bytes.fromhex("00C0000000"))
    assert got[:256] == bytes([i & 0xFF for i in range(256)]) and got[256:] == b"\x61\x2C"
    got = card.process_apdu(bytes.fromhex("00C000002C"))
    assert got == bytes([i & 0xFF for i in range(256, 300)]) + b"\x90\x00"
    # other commands go to the card itself
    assert card.process_apdu(bytes.fromhex("00A4000C022F00")) == b"\x90\x00"


def _recording(level="t1-32", size=16):
    rec = A.record(level, size)
    return rec, A.serialise(rec, "%s/%d" % (level, size), 4, 2)


def test_replay_times_and_checks_every_byte():
    rec, text = _recording()
    r = A.parse_recording(text)
    assert r.name == "t1-32/16" and r.iterations == 4 and r.runs == 2
    assert r.responses == [A.expected_data(16) + b"\x90\x00"]
    runs, stubs = M.time_runs(r)
    assert len(runs) == 2 and len(stubs) == 2
    assert all(s >= 0 for s in stubs)


def test_replay_detects_a_changed_answer():
    rec, text = _recording()
    bad = text.replace("R " + rec["response"].hex(), "R " + (b"\x6f\x00").hex())
    with pytest.raises(M.ReplayError) as e:
        M.check(A.parse_recording(bad))
    assert e.value.name == "REPLAY_DIVERGED"


def test_replay_detects_a_diverging_setup():
    rec, text = _recording()
    lines = text.splitlines()
    # drop the first bulk-OUT of the setup: the driver's calls no longer line up
    i = next(k for k, l in enumerate(lines) if l.startswith("E bo "))
    del lines[i]
    with pytest.raises(M.ReplayError) as e:
        M.open_replayed(A.parse_recording("\n".join(lines) + "\n"))
    assert e.value.name == "REPLAY_DIVERGED"


def test_replay_input_errors():
    r = M.Recording()
    for line in ("E bo 0", "I vid x", "X zz", "Q what", "N 1"):
        with pytest.raises(M.ReplayError) as e:
            M.parse_line(r, line)
        assert e.value.name == "REPLAY_BAD_INPUT"
    assert M.parse_line(r, "G") is True
    assert M.parse_line(r, "") is False
    with pytest.raises(M.ReplayError):
        M.ReplayTransport({}, [], [("bo", b"\x6f" + bytes(9))])


@given(st.text(max_size=80))
def test_parse_line_on_any_text(text):
    r = M.Recording()
    try:
        assert M.parse_line(r, text) in (True, False)
    except M.ReplayError as e:
        assert e.name == "REPLAY_BAD_INPUT"


def test_no_micropython_is_a_clear_error(monkeypatch):
    monkeypatch.setattr(A, "micropython_exe", lambda: None)
    with pytest.raises(BenchError) as e:
        A.run_micropython([])
    assert e.value.name == "NO_MICROPYTHON"


def test_verdicts_and_markdown_of_a_made_up_result():
    def stats(pct):
        return {"driver_us": pct, "driver_us_p95": pct, "driver_us_runs": [pct],
                "stub_us": 0.0, "pct_of_wire": pct}
    rows = [{"level": "t1-254", "size": 4096, "wire_us": 100.0, "cpython": stats(1.5),
             "micropython": stats(12.0)},
            {"level": "t0", "size": 5, "wire_us": 100.0, "cpython": stats(30.0)},
            {"level": "t0", "size": 64, "wire_us": 100.0, "cpython": stats(1.0)}]
    res = {"results": rows, "parameters": {"runs": 1}, "reference": A.REFERENCE}
    v = A.verdicts(res)
    assert [(x["level"], x["platform"], x["goal_pct"], x["met"]) for x in v] == [
        ("t1-254", "cpython", 2.0, True), ("t1-254", "micropython", 10.0, False),
        ("t0", "cpython", 25.0, False)]
    res["verdicts"] = v
    md = A.markdown(res)
    assert "≤ 2 % (met)" in md and "≤ 10 % (missed)" in md and "≤ 25 % (missed)" in md


def test_bad_arguments():
    assert main(["bench", "apdu", "--smoke", "--levels", "t2"]) == 1
    assert main(["bench", "apdu", "--smoke", "--platforms", "jython"]) == 1
