"""`ccidkit bench slots`: smoke runs through the CLI, the shared emulated clock,
the framed remote transport and the pure arithmetic. No timing assertions: only
emulated-time figures (the model's own arithmetic) are checked for values."""

import json
import os
import threading

import pytest

from ccidkit.core.driver import Reader
from ccidkit.core.transport import TransportTimeout, TransportStall
from ccidkit.emu import timing as T
from ccidkit.emu.bench import slots
from ccidkit.emu.bench.common import BenchError
from ccidkit.emu.bench.remote_transport import RemoteReaders, LocalTransport, identity
from ccidkit.emu.reader import create_readers
from ccidkit.scripts.main import main


def _smoke(capsys, *extra):
    assert main(["bench", "slots", "--smoke", "--json"] + list(extra)) == 0
    return json.loads(capsys.readouterr().out)


def _check_shape(res, mode):
    assert res["bench"] == "slots" and res["profile"] == "sysmooctsim"
    assert res["mode"] == mode
    assert res["machine"]["cores"] >= 1 and res["machine"]["python"]
    p = res["parameters"]
    assert (p["cards"], p["records"], p["time_scale"], p["runs"]) == ([1, 2], 10, 0.0, 1)
    assert "parallel_s" in res["units"] and "emulated" in res["units"]["parallel_emulated_s"]
    assert res["goal"]["cpu_s_per_card"] == 0.033
    assert res["reference"]["sysmosimbank_96"]["ratio_at_88"] == 1.55
    rows = res["results"]
    assert [(r["cards"], r["layout"]) for r in rows] == [(1, "fill"), (2, "fill")]
    one, two = rows
    for r in rows:
        for k in ("sequential_s", "parallel_s", "parallel_emulated_s",
                  "sequential_emulated_s", "cpu_s_per_card"):
            assert r[k] > 0, k
        assert r["runs"] == 1
        assert 0 < r["bus_occupancy"] < 1
        assert r["parallel_p95_s"] == r["parallel_s"]          # one run
    # ratios are the quotients of the times they come from
    assert one["ratio_to_one"] == 1.0 and one["ratio_to_one_emulated"] == 1.0
    assert two["ratio_to_one"] == pytest.approx(two["parallel_s"] / one["parallel_s"],
                                                rel=1e-3)
    assert two["ratio_to_one_emulated"] == pytest.approx(
        two["parallel_emulated_s"] / one["parallel_emulated_s"], rel=1e-3)
    # emulated time: two cards one after another take twice one card; at once,
    # the two slots overlap (8 slots may be busy together on the OCTSIM)
    assert two["sequential_emulated_s"] == pytest.approx(2 * one["sequential_emulated_s"],
                                                         rel=0.01)
    assert two["parallel_emulated_s"] == pytest.approx(one["parallel_emulated_s"], rel=0.02)
    assert one["sequential_emulated_s"] == pytest.approx(one["parallel_emulated_s"], rel=0.01)
    # 16 APDUs (6 for the SELECTs, 10 READ RECORDs) + power-on/PPS: 2 transfers each
    assert two["bus_transfers"] == 2 * one["bus_transfers"] >= 2 * 2 * 16
    assert res["calibration"]["apdus_per_card"] == 16
    assert res["summary"]["cpu_s_per_card_one"] == one["cpu_s_per_card"]


def test_smoke_remote_json(capsys):
    res = _smoke(capsys)
    _check_shape(res, "remote")
    for r in res["results"]:
        assert r["emulator_cpu_s_per_card"] > 0
        # scale 0: the wall figures come from the model pass itself
        assert r["emulator_cpu_s_per_card"] == r["emulator_cpu_s_per_card_unpaced"]
        assert r["cpu_s_per_card"] == r["cpu_s_per_card_unpaced"]


def test_smoke_in_process_json(capsys):
    res = _smoke(capsys, "--in-process")
    _check_shape(res, "in-process")
    assert res["results"][0]["emulator_cpu_s_per_card"] is None


def test_paced_wall_pass_beside_the_model_pass(capsys):
    # time scale 0.01: the wall pass sleeps 1/100 of the emulated time (~2 ms a card here)
    assert main(["bench", "slots", "--cards", "1,2", "--records", "3", "--runs", "2",
                 "--time-scale", "0.01", "--json"]) == 0
    res = json.loads(capsys.readouterr().out)
    assert res["parameters"]["time_scale"] == 0.01 and res["parameters"]["runs"] == 2
    one, two = res["results"]
    for r in (one, two):
        assert r["runs"] == 2
        assert r["parallel_p95_s"] >= r["parallel_s"] > 0
        assert r["sequential_s"] > 0 and r["sequential_emulated_s"] > 0
        assert r["cpu_s_per_card"] > 0 and r["cpu_s_per_card_unpaced"] > 0
    assert two["ratio_to_one"] == pytest.approx(two["parallel_s"] / one["parallel_s"], rel=1e-3)
    assert two["parallel_emulated_s"] == pytest.approx(one["parallel_emulated_s"], rel=0.02)
    assert res["calibration"]["apdus_per_card"] == 9


def test_smoke_plot_and_out(tmp_path, capsys):
    png = tmp_path / "s.png"
    assert main(["bench", "slots", "--smoke", "--plot", str(png),
                 "--out", str(tmp_path / "o")]) == 0
    assert png.read_bytes()[:4] == b"\x89PNG"
    out = tmp_path / "o"
    assert sorted(os.listdir(out)) == ["slots.json", "slots.md", "slots.png"]
    assert (out / "slots.png").read_bytes()[:4] == b"\x89PNG"
    res = json.loads((out / "slots.json").read_text())
    md = (out / "slots.md").read_text()
    assert md == slots.markdown(res)
    assert "| cards |" in md and "ratio N/1 at 96 (wall)" in md and "<= 1.15" in md
    capsys.readouterr()


def test_markdown_and_plot_of_a_bank_result(tmp_path):
    # a hand-made bank result: the first-slots row, no sequential figures
    def row(n, layout, par, em):
        return {"cards": n, "layout": layout, "parallel_s": par, "parallel_p95_s": par,
                "parallel_emulated_s": em, "cpu_s_per_card": 0.02, "bus_occupancy": 0.01,
                "bus_transfers": 10, "runs": 1, "sequential_s": None,
                "sequential_emulated_s": None, "ratio_to_one": par / 0.6,
                "ratio_to_one_emulated": em / 5.4, "emulator_cpu_s_per_card": 0.03}
    res = {"profile": "sysmosimbank-96", "mode": "remote",
           "parameters": {"records": 250, "time_scale": 0.1, "runs": 1},
           "results": [row(1, "fill", 0.6, 5.4), row(96, "fill", 0.66, 5.5),
                       row(12, "first-slots", 0.61, 5.41)],
           "summary": {"one_card_emulated_s": 5.4, "ratio_to_one_at_96": 1.1,
                       "cpu_s_per_card_max": 0.02},
           "goal": slots.GOAL, "reference": slots.REFERENCE}
    md = slots.markdown(res)
    assert "| 12 (first slots) | - | 0.610 |" in md
    assert "| ratio N/1 at 96 (wall) | 1.100 | <= 1.15 | 1.55 at 88 |" in md
    slots.plot(res, str(tmp_path / "b.png"))
    assert (tmp_path / "b.png").read_bytes()[:4] == b"\x89PNG"


def test_bad_arguments_exit_1(capsys):
    assert main(["bench", "slots", "--cards", "0", "--runs", "1"]) == 1
    assert "--cards" in capsys.readouterr().err
    assert main(["bench", "slots", "--profile", "sysmooctsim", "--cards", "9"]) == 1
    assert main(["bench", "slots", "--first-slots", "3", "--cards", "1"]) == 1
    assert main(["bench", "slots", "--records", "0", "--cards", "1"]) == 1
    capsys.readouterr()


def test_parse_cards_and_placement():
    assert slots.parse_cards("4, 1,2,2", 8) == [1, 2, 4]
    for bad in ("", "x", "0", "97", ","):
        with pytest.raises(BenchError):
            slots.parse_cards(bad, 96)
    assert slots.placement(10, "fill", 8, 12) == [(0, s) for s in range(8)] + [(1, 0), (1, 1)]
    assert slots.placement(3, "first-slots", 8, 12) == [(0, 0), (1, 0), (2, 0)]
    assert len(set(slots.placement(96, "fill", 8, 12))) == 96
    with pytest.raises(BenchError):
        slots.placement(13, "first-slots", 8, 12)
    with pytest.raises(BenchError):
        slots.placement(97, "fill", 8, 12)


def test_calibration_terms_add_up():
    c = slots.calibration_terms("sysmooctsim", 250)
    assert c["clock_hz"] == 2500000 and c["data_rate_bps"] == 156250
    assert c["char_us"] == pytest.approx(12 * 512 / (32 * 2.5), abs=0.01)   # 76.8 µs
    # READ RECORD of 30 bytes: 5 header + 1 procedure byte + 30 data + SW1 SW2
    assert c["read_record_line_us"] == pytest.approx(38 * 76.8, abs=0.1)
    assert c["usb_transfers_us"] == T.usb_bulk_us(15) + T.usb_bulk_us(42)
    per = c["usb_transfers_us"] + c["firmware_us"] + 38 * 76.8 + \
        c["card_processing_us"] + 500
    assert c["per_apdu_us"] == pytest.approx(per, abs=0.1)
    assert c["apdus_per_card"] == 256
    assert c["one_card_estimate_s"] == pytest.approx(per * 256 / 1e6, abs=0.001)
    # the calibrated model lands inside the published 5.1 .. 5.6 s
    assert 5.1 <= c["one_card_estimate_s"] <= 5.6


def test_one_card_phone_book_emulated_time_is_calibrated():
    # the whole model (power-on, PPS, SELECTs, 250 READ RECORDs) at time scale 0
    from ccidkit.emu.cards import make_card
    rs = create_readers("sysmooctsim", cards={0: make_card("usim")})
    reader = Reader(LocalTransport(rs[0])).open()
    t0 = rs[0].clock.now_us()
    assert slots.session(reader, 0, 250) > 0
    assert 5.1 <= (rs[0].clock.now_us() - t0) / 1e6 <= 5.6


def test_shared_clock_overlaps_taking_part_threads():
    c = T.SharedClock()
    order = []

    def worker(name, step):
        c.enter()
        try:
            for _ in range(10):
                c.advance(step)
                order.append((c.now_us(), name))
        finally:
            c.leave()

    c.add_participants(2)
    ts = [threading.Thread(target=worker, args=("a", 1000)),
          threading.Thread(target=worker, args=("b", 2500))]
    for t in ts:
        t.start()
    for t in ts:
        t.join(30)
    # side by side: the clock ends at the longer thread's 25 ms, not 10 + 25 ms
    assert c.now_us() == 25000
    # and every thread saw the clock at the time it asked for, in time order
    assert [t for t, n in order if n == "a"] == [1000 * k for k in range(1, 11)]
    assert [t for t, n in order if n == "b"] == [2500 * k for k in range(1, 11)]
    assert [t for t, _ in order] == sorted(t for t, _ in order)
    assert c.participants_running == 0


def test_shared_clock_alone_and_scaled_sleep_gathered():
    c = T.SharedClock()
    c.advance(700)
    c.advance_to(500)             # never backwards
    assert c.now_us() == 700
    s = T.SharedClock(time_scale=1e-3, min_sleep_s=10.0)
    for _ in range(100):
        s.advance(1000)           # 1 µs of sleep owed each time: gathered, not slept
    assert s.now_us() == 100000 and s.slept_s == 0.0
    s.flush()
    assert s.slept_s > 0
    with pytest.raises(ValueError):
        T.SharedClock(time_scale=-1)


def test_paced_clock_moves_forward_only():
    c = T.PacedClock(time_scale=1e-4)          # 10 000 emulated s per real s
    seen = [c.now_us()]
    for t in (1000, 500, 3000):
        got = c.advance_to(t)
        assert got >= t
        seen.append(c.now_us())
    assert seen == sorted(seen)
    assert c.advance(0) <= c.now_us()              # real time keeps running
    with pytest.raises(ValueError):
        T.PacedClock(0)
    assert isinstance(T.bench_clock(0), T.SharedClock)
    assert isinstance(T.bench_clock(0.1), T.PacedClock)


def test_shared_clock_bounds_a_wait_for_a_silent_participant():
    c = T.SharedClock(max_stall_s=0.2)
    c.add_participants(2)          # the second one never comes
    c.enter()
    with pytest.raises(TimeoutError):
        c.advance(10)
    c.leave()
    assert c.now_us() == 0


def test_remote_readers_speak_the_transport_interface():
    remote = RemoteReaders("sysmooctsim", records=3)
    try:
        t = remote.transports[0]
        local = create_readers("sysmooctsim")[0]
        want = identity(local)
        assert (t.vid, t.pid, t.product) == (want["vid"], want["pid"], want["product"])
        assert t.config_descriptor.hex() == want["config_descriptor"]
        assert t.has_interrupt is True
        with pytest.raises(TransportTimeout):
            t.bulk_in(64, 10)                     # nothing pending
        with pytest.raises(TransportTimeout):
            t.control(0xA1, 0x02, 0, 0, 64, 100)  # the OCTSIM leaves GET_CLOCK_FREQUENCIES
        with pytest.raises(TransportStall):
            t.control(0xA1, 0x7F, 0, 0, 1, 100)   # an unknown class request stalls
        assert t.control(0x80, 6, 0x0100, 0, 18, 100)[:2] == b"\x12\x01"
        assert t.interrupt_in(8, 10) is None      # no slot change pending
        reader = Reader(remote.transports[0]).open()
        assert slots.session(reader, 3, 3) == 3   # 3 records, all with contacts
        st = remote.stats()
        assert st["now_us"] > 0 and st["bus_transfers"] > 0 and st["cpu_s"] > 0
    finally:
        remote.close()
    assert remote.proc is None


def test_a_failing_parallel_session_is_reported_not_hung():
    rig = slots._LocalRig("sysmooctsim", 3, 0.0)
    readers = [Reader(t).open() for t in rig.transports]
    rig.emulated[0].remove_card(1)
    with pytest.raises(BenchError) as e:
        slots.run_parallel(rig, readers, [(0, 0), (0, 1), (0, 2)], 3)
    assert e.value.name == "SESSION_FAILED" and "(0, 1)" in str(e.value)
    assert "IFD_ICC_NOT_PRESENT" in str(e.value) or "no card" in str(e.value).lower()
    assert rig.clock.participants_running == 0
    # the other slots still work afterwards
    slots.run_parallel(rig, readers, [(0, 0), (0, 2)], 3)
