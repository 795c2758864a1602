"""A bulk-IN stall: the driver clears the halt (CLEAR_FEATURE(ENDPOINT_HALT),
USB 2.0 §9.4.1) and reads once more; a second failure is IFD_COMMUNICATION_ERROR."""

import pytest

from ccidkit.core.driver import Reader, ReaderError
from ccidkit.core.host.emulated import open_emulated
from ccidkit.emu.card.minicard import MiniCard
from ccidkit.emu.reader import EP_BULK_IN

ECHO = bytes.fromhex("80EE000003010203")


class Recording:
    """A transport wrapper that records control requests."""

    def __init__(self, t):
        self.t = t
        self.controls = []

    def __getattr__(self, name):
        return getattr(self.t, name)

    def control(self, bmRequestType, bRequest, wValue, wIndex, data, timeout_ms):
        self.controls.append((bmRequestType, bRequest, wValue, wIndex))
        return self.t.control(bmRequestType, bRequest, wValue, wIndex, data, timeout_ms)


def _reader(protocols=(0,)):
    backend, ts = open_emulated("gemalto-pctwin", cards={0: MiniCard(protocols=protocols)})
    em = backend.readers[0] if not callable(backend.readers) else backend.readers()[0]
    t = Recording(ts[0])
    lines = []
    r = Reader(t, log=lines.append).open()
    r.connect(0)
    return r, em, t, lines


@pytest.mark.parametrize("protocols", [(0,), (1,)])
def test_one_stall_is_cleared_and_the_answer_read(protocols):
    r, em, t, lines = _reader(protocols)
    before = len(t.controls)
    # T=0 answers 61 03 (the data waits for GET RESPONSE), T=1 the data
    want = bytes.fromhex("6103" if protocols == (0,) else "0102039000")
    em.faults.stall("bulk_in", 5)           # halted until the host clears it
    assert r.transmit(0, ECHO + b"\x00") == want
    assert t.controls[before:] == [(0x02, 0x01, 0x0000, EP_BULK_IN)]
    assert any("clearing the halt" in line for line in lines)
    assert em.faults.stalls.get("bulk_in", 0) == 0
    # the next exchange needs no clearing
    assert r.transmit(0, ECHO + b"\x00") == want
    assert len(t.controls) == before + 1


def test_a_refused_clear_feature_is_a_communication_error():
    r, em, t, lines = _reader()
    em.faults.stall("bulk_in", 1)
    em.faults.stall("control", 1)
    with pytest.raises(ReaderError) as e:
        r.transmit(0, ECHO + b"\x00")
    assert e.value.name == "IFD_COMMUNICATION_ERROR"


def test_a_stall_again_after_the_clear_is_bounded():
    r, em, t, lines = _reader()

    real = t.t.bulk_in
    calls = []

    def always_stalled(max_len, timeout_ms):
        calls.append(1)
        em.faults.stall("bulk_in", 1)
        return real(max_len, timeout_ms)
    t.t.bulk_in = always_stalled
    with pytest.raises(ReaderError) as e:
        r.transmit(0, ECHO + b"\x00")
    assert e.value.name == "IFD_COMMUNICATION_ERROR"
    assert "again" in str(e.value)
    assert len(calls) == 2                  # one read, one clear, one more read
