"""The emulated reader's T=1 XfrBlock fast path answers exactly as its general
path: the same bulk-IN bytes, traffic log, emulated clock and bus figures,
whatever the driver sends, faults armed or not."""

from ccidkit.core.driver import Reader, ReaderError, PROTOCOL_T1
from ccidkit.emu.bench.remote_transport import LocalTransport
from ccidkit.emu.reader import EmulatedReader
from ccidkit.emu.card.minicard import MiniCard

SELECT = bytes.fromhex("00A4000C022F00")
READ5 = bytes.fromhex("00B0000005")
ECHO_DATA = bytes([i & 0xFF for i in range(255)])
ECHO = bytes((0x80, 0xEE, 0, 0, 255)) + ECHO_DATA + b"\xFF"
UNKNOWN = bytes.fromhex("00CA010000")


class _Recorder(LocalTransport):
    """The reader's own calls as a Transport, keeping every bulk-IN answer."""

    def __init__(self, er):
        LocalTransport.__init__(self, er)
        self.answers = []

    def bulk_in(self, max_len, timeout_ms):
        got = LocalTransport.bulk_in(self, max_len, timeout_ms)
        self.answers.append(bytes(got))
        return got


def _session(fast, arm=None):
    er = EmulatedReader("gemalto-pctwin", cards={0: MiniCard()}, serial="00000001")
    er.fast_paths = fast
    taken = []
    real = er._xfr_t1_fast

    def counting(*a):
        taken.append(1)
        return real(*a)

    er._xfr_t1_fast = counting
    t = _Recorder(er)
    r = Reader(t)
    r.open()
    r.power_on(0)
    assert r.set_protocol(0, PROTOCOL_T1) == 1
    out = []
    for apdu in (SELECT, READ5, ECHO, UNKNOWN, READ5, ECHO):
        if arm is not None:
            arm(er)
        try:
            out.append(r.transmit(0, apdu))
        except ReaderError as e:
            out.append((e.name, e.message))
    return out, t.answers, list(er.log), er.clock.now_us(), er.bus.transfers, \
        er.bus.busy_us, er.slots[0].busy_until, len(taken)


def test_fast_and_general_paths_agree_without_faults():
    fast = _session(True)
    slow = _session(False)
    assert slow[-1] == 0 and fast[-1] > 10
    assert fast[:-1] == slow[:-1]
    results = fast[0]
    assert results[1] == bytes(range(5)) + b"\x90\x00"
    assert results[2] == ECHO_DATA + b"\x90\x00"
    # the answers really went through the driver's T=1 engine over XfrBlock
    assert any(a[0] == 0x80 and len(a) > 10 for a in fast[1])


def test_fast_and_general_paths_agree_with_faults_armed():
    def corrupt(er):
        er.faults.corrupt_t1(0, to="reader", times=1)

    def wtx(er):
        er.faults.wtx_storm(0, count=2)

    def mute_once(er):
        if not er.faults.fired:
            er.faults.mute(0)
        else:
            er.faults.unmute(0)

    for arm in (corrupt, wtx, mute_once):
        fast = _session(True, arm)
        slow = _session(False, arm)
        assert fast[:-1] == slow[:-1], arm.__name__


def test_fast_path_taken_only_when_nothing_is_armed():
    er = EmulatedReader("gemalto-pctwin", cards={0: MiniCard()})
    r = Reader(_Recorder(er))
    r.open()
    r.power_on(0)
    r.set_protocol(0, PROTOCOL_T1)
    s = er.slots[0]
    block = bytes.fromhex("6F09000000000600000000400500B0000005F0")
    assert er._t1_fast_ok(s, block)
    for arm in (lambda: er.faults.mute(0), lambda: er.faults.wtx_storm(0, 1),
                lambda: er.faults.remove_mid_exchange(0),
                lambda: er.faults.lose_t1(0, to="card")):
        arm()
        assert not er._t1_fast_ok(s, block)
        er.faults.clear()
        assert er._t1_fast_ok(s, block)
    # a PPS right after the ATR goes the general way
    s.pps_allowed = True
    assert not er._t1_fast_ok(s, bytes.fromhex("6F0300000000070000 00 FF1190".replace(" ", "")))
    assert er._t1_fast_ok(s, block)
