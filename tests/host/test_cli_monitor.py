"""`ccidkit monitor`: the events of a scripted timeline, in order, as pcsc_scan shows them."""

import json
import os
import subprocess
import sys

import pytest

from ccidkit.scripts.main import main
from ccidkit.scripts.cmd_monitor import parse_timeline, TimelineError
from ccidkit.emu.card.minicard import MiniCard
from ccidkit.emu.cards import make_card

CCIDKIT = os.path.join(os.path.dirname(sys.executable), "ccidkit")
MINI_ATR = " ".join("%02X" % b for b in MiniCard().atr)
USIM_ATR = " ".join("%02X" % b for b in make_card("usim").atr)


def _skip_if_real_readers():
    from ccidkit.core.host.pyusb_transport import find_readers
    if find_readers():
        pytest.skip("this machine has real CCID readers")


def _lines(capsys):
    return capsys.readouterr().out.splitlines()


def _strip_serial(line):
    # "Gemplus USB SmartCard Reader (00000007) 00 00" -> "Gemplus ... (*) 00 00"
    head, _, tail = line.partition(" (")
    return head + " (*)" + tail.partition(")")[2] if tail else line


def test_timeline_events_in_order(tmp_path):
    timeline = tmp_path / "events.txt"
    timeline.write_text("# a card comes and goes, the reader is unplugged and back\n"
                        "insert 0:0 usim\n"
                        "wait 20; remove 0:0\n"
                        "insert 0 mini   # slot 0 by default\n"
                        "unplug 0\n"
                        "plug 0\n"
                        "add cherry-st\n"
                        "remove 0; unplug 1\n")
    p = subprocess.run([CCIDKIT, "monitor", "--emulated", "gemalto-pctwin", "--card", "none",
                        "--timeline", str(timeline)], capture_output=True, text=True,
                       timeout=300)
    assert p.returncode == 0, p.stderr
    g = "Gemplus USB SmartCard Reader (*) 00 00"
    c = "Cherry GmbH SmartBoard XX44 (*) 01 00"
    assert [_strip_serial(x) for x in p.stdout.splitlines()] == [
        "reader added: " + g,
        "card inserted: " + g + " ATR: " + USIM_ATR,
        "card removed: " + g,
        "card inserted: " + g + " ATR: " + MINI_ATR,
        "reader removed: " + g,
        "reader added: " + g,                          # back, with its card still in
        "card inserted: " + g + " ATR: " + MINI_ATR,
        "reader added: " + c,
        "card removed: " + g,
        "reader removed: " + c,
    ]


def test_initial_state_multi_slot_and_count(capsys):
    assert main(["monitor", "--emulated", "sysmooctsim", "--card", "none", "--card", "2:mini",
                 "--script", "insert 0:5 usim; remove 0:2; insert 0:2; remove 0:5",
                 "--count", "11"]) == 0
    out = _lines(capsys)
    names = [x.split(": ", 1)[1] for x in out[:8]]
    assert [x.split(": ")[0] for x in out[:8]] == ["reader added"] * 8
    assert [n[-5:] for n in names] == ["00 %02X" % s for s in range(8)]
    assert out[8] == "card inserted: %s ATR: %s" % (names[2], MINI_ATR)
    assert out[9] == "card inserted: %s ATR: %s" % (names[5], USIM_ATR)
    assert out[10] == "card removed: %s" % names[2]
    assert len(out) == 11            # --count stops before the rest of the timeline


def test_json_events_and_swap_seen_as_two(capsys):
    # a card swapped within one step: removed, then inserted (the event counter says 2)
    assert main(["monitor", "--emulated", "gemalto-pctwin", "--json",
                 "--script", "remove 0; insert 0 usim"]) == 0
    events = [json.loads(x) for x in _lines(capsys)]
    assert [e["event"] for e in events] == ["reader added", "card inserted", "card removed",
                                            "card inserted"]
    assert events[1]["atr"] == MINI_ATR and events[3]["atr"] == USIM_ATR
    assert events[2]["atr"] is None


def test_timeout_without_timeline_and_real_readers(capsys):
    assert main(["monitor", "--emulated", "cherry-st", "--timeout", "0.2"]) == 0
    out = _lines(capsys)
    assert len(out) == 2 and out[0].startswith("reader added: Cherry")
    _skip_if_real_readers()
    assert main(["monitor", "--timeout", "0.1"]) == 0
    err = capsys.readouterr().err
    assert "no reader" in err and "libusb" in err


def test_timeline_errors(capsys):
    assert main(["monitor", "--script", "insert 0:0"]) == 2
    assert "--emulated" in capsys.readouterr().err
    assert main(["monitor", "--emulated", "cherry-st", "--script", "insert 0:0"]) == 1
    assert "already holds a card" in capsys.readouterr().err
    assert main(["monitor", "--emulated", "cherry-st", "--script", "remove 3"]) == 1
    assert "no emulated reader 3" in capsys.readouterr().err
    assert main(["monitor", "--emulated", "cherry-st", "--script", "add nope"]) == 1
    assert main(["monitor", "--emulated", "cherry-st", "--timeline", "/nonexistent/x"]) == 2
    for bad in ("jump 1", "insert", "insert a:b", "wait x", "wait -1", "unplug 0:1",
                "remove 1:2:3", "insert -1"):
        with pytest.raises(TimelineError) as e:
            parse_timeline(bad)
        assert e.value.name == "BAD_STEP"
    assert parse_timeline("insert 1:2 usim;remove 1:2\n# x\nwait 5 ; plug 3\nadd pinpad") == [
        ("insert", (1, 2, "usim")), ("remove", (1, 2)), ("wait", (5,)), ("plug", (3,)),
        ("add", ("pinpad",))]


from hypothesis import given, strategies as st


@given(st.text(alphabet=st.sampled_from("insertmovuplgadw0123456789:; #\n-xyz"), max_size=60))
def test_parse_timeline_gives_steps_or_bad_step(text):
    try:
        steps = parse_timeline(text)
    except TimelineError as e:
        assert e.name == "BAD_STEP"
        return
    for op, args in steps:
        assert op in ("insert", "remove", "unplug", "plug", "add", "wait")
        assert isinstance(args, tuple)


@given(st.text(max_size=40))
def test_parse_timeline_any_text(text):
    try:
        parse_timeline(text)
    except TimelineError as e:
        assert e.name == "BAD_STEP"
