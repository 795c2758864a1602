"""The pyscard-compatible shim: activated only on demand, never shadowing the real
pyscard, answering pyscard's API over emulated readers, and `ccidkit pyscard-run`
running a plain pyscard script unchanged."""

import os
import subprocess
import sys
import threading
import time

import pytest

from ccidkit.core.host import shim_loader
from ccidkit.core.host import reader_options as ro
from ccidkit.core.host.emulated import emulated_manager
from ccidkit.emu.card.minicard import MiniCard
from ccidkit.emu.cards import make_card

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
SCRIPT = os.path.join(REPO, "tests", "host", "scripts", "usim_read_like.py")
CCIDKIT = os.path.join(os.path.dirname(sys.executable), "ccidkit")
SHIM_DIR = os.path.join(REPO, "core", "host", "pyscard_shim")
SELECT_AID = [0x00, 0xA4, 0x04, 0x00, 0x09, 0xF0, 0x63, 0x63, 0x69, 0x64, 0x6B, 0x69, 0x74,
              0x01, 0x00]
FCI = bytes.fromhex("6F168409F0636369646B697401A5095007636369646B6974")

USIM_RECORDS = [
    "record 1: Alice Martin +33612345678",
    "record 2: Bob 0612345678",
    "record 3: .mile Zola +33140000000",
    "record 5: Voicemail *86#",
    "record 10: Zo\u00eb +4915112345678",
]


class PhoneCard(MiniCard):
    """A small GSM-style test card: 3F00/7F10/6F3A in class A0 with two ADN records."""

    # TS 51.011 §10.5.1: 12 bytes alpha, length, TON/NPI, 10 bytes BCD, CCP, EXT
    RECORDS = [b"Ann" + b"\xFF" * 9 + bytes.fromhex("0491214365") + b"\xFF" * 9,
               b"\xFF" * 26,
               b"Tom" + b"\xFF" * 9 + bytes.fromhex("03811032") + b"\xFF" * 10]

    def __init__(self):
        MiniCard.__init__(self)
        self.pending = b""
        self.current = None

    def process_apdu(self, apdu):
        apdu = bytes(apdu)
        if apdu[:1] != b"\xA0":
            return MiniCard.process_apdu(self, apdu)
        ins = apdu[1]
        if ins == 0xA4 and apdu[4:5] == b"\x02":
            fid = apdu[5:7]
            self.current = fid
            n = len(self.RECORDS[0]) if fid == b"\x6F\x3A" else 0
            size = n * len(self.RECORDS)
            # TS 51.011 §9.2.1: bytes 3-4 file size, byte 14 record length (EF)
            self.pending = bytes([0, 0, size >> 8, size & 0xFF]) + fid + \
                bytes([4 if n else 2]) + b"\x00" * 7 + bytes([n])
            return bytes([0x9F, len(self.pending)])
        if ins == 0xC0:
            out = self.pending[:apdu[4]]
            return out + b"\x90\x00"
        if ins == 0xB2 and self.current == b"\x6F\x3A":
            n = apdu[2]
            if 1 <= n <= len(self.RECORDS):
                return self.RECORDS[n - 1] + b"\x90\x00"
            return b"\x94\x02"
        return b"\x6D\x00"


def _real_pyscard():
    import smartcard.System
    import smartcard.util
    return smartcard.System, smartcard.util


def test_shim_not_importable_as_smartcard_until_activated():
    real_system, real_util = _real_pyscard()
    assert not real_system.__file__.startswith(SHIM_DIR)
    assert not shim_loader.is_active()
    mgr = emulated_manager("gemalto-pctwin")
    with shim_loader.activated(mgr):
        import smartcard
        import smartcard.System
        import smartcard.util
        assert smartcard.__file__.startswith(SHIM_DIR)
        assert smartcard.System.__file__.startswith(SHIM_DIR)
        assert smartcard.System is not real_system
        names = [str(r) for r in smartcard.System.readers()]
        assert len(names) == 1 and names[0].startswith("Gemplus USB SmartCard Reader (")
        assert names[0].endswith(" 00 00")
        with pytest.raises(ImportError):
            import smartcard.wx            # noqa: F401  (not in the subset: never the real one)
    # the real pyscard is back, the very same module objects
    import smartcard
    import smartcard.System as again
    import smartcard.util as util_again
    assert again is real_system and util_again is real_util
    assert not smartcard.__file__.startswith(SHIM_DIR)
    assert not [m for m in sys.modules.values()
                if getattr(m, "__file__", None) and m.__file__.startswith(SHIM_DIR)
                and m.__name__.startswith("smartcard")]
    assert not shim_loader.is_active()
    assert shim_loader.SHIM_PACKAGE not in [getattr(f, "name", None) for f in sys.meta_path]


def test_activate_twice_is_refused_and_manager_needs_activation():
    with pytest.raises(shim_loader.ShimError) as e:
        shim_loader.manager()
    assert e.value.name == "SHIM_INACTIVE"
    mgr = emulated_manager("gemalto-pctwin")
    with shim_loader.activated(mgr):
        with pytest.raises(shim_loader.ShimError) as e:
            shim_loader.activate(mgr)
        assert e.value.name == "SHIM_ACTIVE"
        assert shim_loader.manager() is mgr
    shim_loader.deactivate()         # a second deactivation does nothing


def test_connection_transmit_atr_control_and_disconnect():
    mgr = emulated_manager("gemalto-pctwin", "pinpad")
    with shim_loader.activated(mgr):
        from smartcard.System import readers
        from smartcard.CardConnection import CardConnection
        from smartcard.util import toHexString
        from smartcard import scard
        r = readers()
        assert len(r) == 2 and r[0] == type(r[0])(str(r[0])) and r[0] != r[1]
        c = r[0].createConnection()
        assert c.getReader() == str(r[0])
        c.connect()
        assert c.getProtocol() == CardConnection.T0_protocol
        assert c.getATR() == list(MiniCard().atr)
        data, sw1, sw2 = c.transmit(SELECT_AID)
        assert (sw1, sw2) == (0x61, 0x18) and data == []
        data, sw1, sw2 = c.transmit([0x00, 0xC0, 0x00, 0x00, 0x18])
        assert bytes(data) == FCI and (sw1, sw2) == (0x90, 0x00)
        assert isinstance(data, list)
        assert toHexString(c.getATR()).startswith("3B ")
        feats = c.control(scard.CM_IOCTL_GET_FEATURE_REQUEST, [])
        assert isinstance(feats, list)
        c.disconnect()
        from smartcard.Exceptions import CardConnectionException
        with pytest.raises(CardConnectionException):
            c.getATR()
        # the PIN-pad reader lists its PIN features through SCardControl
        p = r[1].createConnection()
        p.connect(CardConnection.T0_protocol)
        tlv = bytes(p.control(scard.CM_IOCTL_GET_FEATURE_REQUEST, []))
        assert tlv[0] in (0x06, 0x07) and len(tlv) % 6 == 0
        p.disconnect()


def test_no_card_and_exceptions():
    mgr = emulated_manager("gemalto-pctwin", cards={})
    with shim_loader.activated(mgr):
        from smartcard.System import readers
        from smartcard.Exceptions import NoCardException, CardConnectionException
        from smartcard import scard
        c = readers()[0].createConnection()
        with pytest.raises(NoCardException) as e:
            c.connect()
        assert e.value.hresult == scard.SCARD_E_NO_SMARTCARD == 0x8010000C
        assert str(e.value).startswith("Unable to connect: ")
        assert str(e.value).endswith("(0x8010000C)")
        with pytest.raises(CardConnectionException) as e:
            c.transmit([0, 0xA4, 0, 0])
        # pyscard checks the protocol first: unconnected, it is still "T0 or T1"
        assert str(e.value).startswith("Invalid protocol in transmit")
        assert issubclass(NoCardException, type(e.value).__mro__[1])


def test_no_readers_gives_an_empty_list():
    from ccidkit.core import pcsc
    with shim_loader.activated(pcsc.ResourceManager([])):
        from smartcard.System import readers
        from smartcard import scard
        assert readers() == []
        hr, ctx = scard.SCardEstablishContext(scard.SCARD_SCOPE_USER)
        assert hr == 0
        hr, names = scard.SCardListReaders(ctx, [])
        assert hr == scard.SCARD_E_NO_READERS_AVAILABLE and names == []
        assert scard.SCardReleaseContext(ctx) == 0
        assert scard.SCardReleaseContext(ctx) == scard.SCARD_E_INVALID_HANDLE


def test_util_matches_pyscard():
    real = _real_pyscard()[1]
    mgr = emulated_manager("gemalto-pctwin")
    with shim_loader.activated(mgr):
        from smartcard import util
        vals = [0x3B, 0x65, 0x00, 0x00, 0x9C, 0x11, 0x01, 0x01, 0x03]
        for fmt in range(16):
            assert util.toHexString(vals, fmt) == real.toHexString(vals, fmt)
        assert util.toHexString([]) == "" and util.toHexString(None) == ""
        with pytest.raises(TypeError):
            util.toHexString(b"\x3B")
        for text in ("3B 65 00 00 9C 11 01 01 03", "3B6500009C11010103", "3B6500   009C1101  0103"):
            assert util.toBytes(text) == real.toBytes(text)
        with pytest.raises(TypeError):
            util.toBytes("3G")
        for bl in ([0x4E, 0x75, 0x6D, 0x62], [0x01, 0x20, 0x80, 0x7E, 0xF0, 0x7F]):
            assert util.toASCIIString(bl) == real.toASCIIString(bl)
        assert util.padd([1, 2], 4) == real.padd([1, 2], 4) == [1, 2, 0xFF, 0xFF]


def test_scard_layer_returns_status_first():
    mgr = emulated_manager("au9560")
    with shim_loader.activated(mgr):
        from smartcard import scard
        hr, ctx = scard.SCardEstablishContext(scard.SCARD_SCOPE_USER)
        hr, names = scard.SCardListReaders(ctx, [])
        assert hr == scard.SCARD_S_SUCCESS and len(names) == 1
        hr, h, proto = scard.SCardConnect(ctx, names[0], scard.SCARD_SHARE_SHARED,
                                          scard.SCARD_PROTOCOL_T0 | scard.SCARD_PROTOCOL_T1)
        assert hr == 0 and proto == scard.SCARD_PROTOCOL_T0
        hr, rsp = scard.SCardTransmit(h, scard.SCARD_PCI_T0, SELECT_AID)
        assert hr == 0 and bytes(rsp) == FCI + b"\x90\x00"   # short APDU level: GET RESPONSE done
        hr, rsp = scard.SCardTransmit(h, scard.SCARD_PCI_T1, SELECT_AID)
        assert hr == scard.SCARD_E_PROTO_MISMATCH and rsp == []
        hr, reader, state, p, atr = scard.SCardStatus(h)
        assert (hr, reader, p, atr) == (0, names[0], proto, list(MiniCard().atr))
        hr, st = scard.SCardGetStatusChange(ctx, 0, [(names[0], scard.SCARD_STATE_UNAWARE)])
        assert hr == 0 and st[0][1] & scard.SCARD_STATE_PRESENT and st[0][2] == atr
        cur = st[0][1] & ~scard.SCARD_STATE_CHANGED
        hr, st = scard.SCardGetStatusChange(ctx, 50, [(names[0], cur)])
        assert hr == scard.SCARD_E_TIMEOUT
        assert scard.SCardDisconnect(h, scard.SCARD_LEAVE_CARD) == 0
        assert scard.SCardGetErrorMessage(0) == "Command successful."
        assert "Smart Card" in scard.SCardGetErrorMessage(scard.SCARD_E_NO_SMARTCARD)
        hr, st = scard.SCardGetStatusChange(ctx, 0, [(names[0], cur)])
        assert hr == 0 and not st[0][1] & scard.SCARD_STATE_INUSE   # the handle is gone
        cur = st[0][1] & ~scard.SCARD_STATE_CHANGED
        box = {}

        def wait():
            box["r"] = scard.SCardGetStatusChange(ctx, scard.INFINITE, [(names[0], cur)])

        th = threading.Thread(target=wait)
        th.start()
        for _ in range(500):
            assert scard.SCardCancel(ctx) == 0
            th.join(0.01)
            if not th.is_alive():
                break
        th.join(5)
        assert box["r"][0] == scard.SCARD_E_CANCELLED
        assert scard.SCardReleaseContext(ctx) == 0


def test_card_request_and_monitor_see_a_card_arrive():
    mgr = emulated_manager("gemalto-pctwin", cards={})
    emu = mgr.emulated[0]
    with shim_loader.activated(mgr):
        from smartcard.CardRequest import CardRequest
        from smartcard.CardType import AnyCardType, ATRCardType
        from smartcard.CardMonitoring import CardMonitor, CardObserver
        from smartcard.Exceptions import CardRequestTimeoutException
        with pytest.raises(CardRequestTimeoutException):
            CardRequest(timeout=0.1, cardType=AnyCardType()).waitforcard()
        seen = []
        got = threading.Event()
        added_event = threading.Event()

        class Obs(CardObserver):
            def update(self, observable, handlers):
                added, removed = handlers
                seen.append(([repr(c) for c in added], [repr(c) for c in removed]))
                if len(seen) >= 2:
                    added_event.set()
                if len(seen) >= 3:
                    got.set()

        mon = CardMonitor()
        obs = Obs()
        mon.addObserver(obs)
        assert seen == [([], [])]
        emu.insert_card(0, MiniCard())
        service = CardRequest(timeout=5, cardType=ATRCardType(list(MiniCard().atr))).waitforcard()
        # LEAVE_CARD: ccidkit.core.pcsc forgets the ATR of an unpowered card (pcsc-lite keeps it)
        from smartcard.scard import SCARD_LEAVE_CARD
        service.connection.connect(disposition=SCARD_LEAVE_CARD)
        assert service.connection.getATR() == list(MiniCard().atr)
        service.connection.disconnect()
        assert added_event.wait(10)      # the monitor polls: let it see the card first
        emu.remove_card(0)
        assert got.wait(10)
        mon.deleteObserver(obs)
        atr_text = " ".join("%02X" % b for b in MiniCard().atr)
        assert seen[1][0] and seen[1][0][0].startswith(atr_text + " / Gemplus")
        assert seen[2] == ([], seen[1][0])


def test_console_observer_traces_commands(capsys):
    mgr = emulated_manager("gemalto-pctwin")
    with shim_loader.activated(mgr):
        from smartcard.System import readers
        from smartcard.CardConnectionObserver import ConsoleCardConnectionObserver
        c = readers()[0].createConnection()
        c.addObserver(ConsoleCardConnectionObserver())
        c.connect()
        c.transmit(SELECT_AID)
        c.disconnect()
    out = capsys.readouterr().out.splitlines()
    assert out[0].startswith("connecting to Gemplus")
    assert out[1] == "> 00 A4 04 00 09 F0 63 63 69 64 6B 69 74 01 00"
    assert out[2] == "< [] 61 18"
    assert out[3].startswith("disconnecting from Gemplus")


def test_plain_script_in_process_against_a_small_phone_card(capsys):
    import runpy
    cards = {(0, 0): PhoneCard()}
    mgr = emulated_manager("gemalto-pctwin", cards=cards)
    saved = sys.argv
    sys.argv = [SCRIPT]
    try:
        with shim_loader.activated(mgr):
            with pytest.raises(SystemExit) as e:
                runpy.run_path(SCRIPT, run_name="__main__")
    finally:
        sys.argv = saved
    assert e.value.code == 0
    out = capsys.readouterr().out.splitlines()
    assert "EF ADN: 3 records of 26 bytes" in out
    assert [x for x in out if x.startswith("record ")] == ["record 1: Ann +123456", "record 3: Tom 0123"]
    assert out[-1] == "used records: 2"


def _pyscard_run(*args):
    return subprocess.run([CCIDKIT, "pyscard-run"] + list(args), capture_output=True,
                          text=True, timeout=300, cwd=REPO)


def test_pyscard_run_reads_the_usim_phone_book():
    p = _pyscard_run("--emulated", "gemalto-pctwin", "--card", "usim", SCRIPT)
    assert p.returncode == 0, p.stderr
    out = p.stdout.splitlines()
    assert out[0] == "readers: 1"
    assert out[1].startswith("using: Gemplus USB SmartCard Reader (") and out[1].endswith(" 00 00")
    assert out[2] == "ATR: " + " ".join("%02X" % b for b in make_card("usim").atr)
    assert out[3] == "EF ADN: 250 records of 30 bytes"
    assert [x for x in out if x.startswith("record ")] == USIM_RECORDS
    assert out[-1] == "used records: 5"


def test_pyscard_run_passes_arguments_and_exit_status():
    # slot 5 of an octo reader holds the USIM, the script is told to use reader 5
    p = _pyscard_run("--emulated", "sysmooctsim", "--card", "none", "--card", "5:usim",
                     SCRIPT, "5")
    assert p.returncode == 0, p.stderr
    assert "readers: 8" in p.stdout and p.stdout.splitlines()[1].endswith(" 00 05")
    assert [x for x in p.stdout.splitlines() if x.startswith("record ")] == USIM_RECORDS
    p = _pyscard_run("--emulated", "sysmooctsim", "--card", "none", SCRIPT, "2")
    assert p.returncode == 1 and p.stdout.splitlines()[-1].startswith("no card in sysmocom")
    p = _pyscard_run("--emulated", "sysmooctsim", "--card", "bogus", SCRIPT)
    assert p.returncode == 2 and "bogus" in p.stderr
    p = _pyscard_run("--emulated", "sysmooctsim", "no_such_script.py")
    assert p.returncode == 2 and "no script" in p.stderr


def test_card_specs():
    assert ro.parse_card_spec("usim") == (None, "usim")
    assert ro.parse_card_spec("3:mini") == (3, "mini")
    for bad in ("x:mini", "1:", "-1:mini"):
        with pytest.raises(ro.ReaderOptionsError) as e:
            ro.parse_card_spec(bad)
        assert e.value.name == "BAD_CARD_SPEC"
    cards = ro.build_cards(["sysmooctsim"], ["none", "2:mini"])
    assert list(cards) == [(0, 2)]
    cards = ro.build_cards(["gemalto-pctwin", "gemalto-pctwin"], [])
    assert sorted(cards) == [(0, 0), (1, 0)] and cards[(0, 0)] is not cards[(1, 0)]
    with pytest.raises(ro.ReaderOptionsError) as e:
        ro.build_cards(["gemalto-pctwin"], ["nocard"])
    assert e.value.name == "UNKNOWN_CARD"
    with pytest.raises(ro.ReaderOptionsError) as e:
        ro.layout(["nope"])
    assert e.value.name == "UNKNOWN_PROFILE"
    names = ["A x 00 00", "B y 01 00", "B y 01 01"]
    assert ro.choose_reader(names, "1") == "B y 01 00"
    assert ro.choose_reader(names, "a X") == "A x 00 00"
    for bad in ("3", "B y", "zz"):
        with pytest.raises(ro.ReaderOptionsError) as e:
            ro.choose_reader(names, bad)
        assert e.value.name == "UNKNOWN_READER"


def test_reconnect_and_exclusive_mode():
    mgr = emulated_manager("gemalto-pctwin")
    with shim_loader.activated(mgr):
        from smartcard.System import readers
        from smartcard.CardConnection import CardConnection
        from smartcard.Exceptions import CardConnectionException
        from smartcard import scard
        r = readers()[0]
        a = r.createConnection()
        a.connect(mode=scard.SCARD_SHARE_EXCLUSIVE, disposition=scard.SCARD_LEAVE_CARD)
        b = r.createConnection()
        with pytest.raises(CardConnectionException) as e:
            b.connect()
        assert e.value.hresult == scard.SCARD_E_SHARING_VIOLATION
        assert "Unable to connect with protocol: T0 or T1." in str(e.value)
        a.reconnect(protocol=CardConnection.T0_protocol)       # warm reset, shared
        assert a.getProtocol() == CardConnection.T0_protocol
        b.connect()
        assert b.transmit(SELECT_AID)[1:] == (0x61, 0x18)
        b.release()
        assert b.hcard is None and b.hcontext is None
        a.disconnect()
        a.disconnect()                   # twice: nothing more to do, as pyscard


def test_pyscard_run_without_emulated_uses_libusb_and_warns(tmp_path):
    from ccidkit.core.host.pyusb_transport import find_readers
    if find_readers():
        pytest.skip("this machine has real CCID readers")
    script = tmp_path / "count.py"
    script.write_text("import sys\nfrom smartcard.System import readers\n"
                      "print('readers', len(readers()))\n"
                      "import smartcard\nprint(smartcard.__file__)\nsys.exit(3)\n")
    p = _pyscard_run(str(script))
    assert p.returncode == 3
    out = p.stdout.splitlines()
    assert out[0] == "readers 0" and out[1].startswith(SHIM_DIR)
    assert "warning: no reader" in p.stderr and "libusb" in p.stderr


from hypothesis import given, strategies as st   # noqa: E402


@given(st.lists(st.integers(0, 255), max_size=300))
def test_scard_transmit_any_apdu_gives_status_and_list(apdu):
    mgr = _HYP_MGR[0]
    with shim_loader.activated(mgr):
        from smartcard import scard
        hr, ctx = scard.SCardEstablishContext(scard.SCARD_SCOPE_USER)
        hr, names = scard.SCardListReaders(ctx, [])
        hr, h, proto = scard.SCardConnect(ctx, names[0], scard.SCARD_SHARE_SHARED,
                                          scard.SCARD_PROTOCOL_ANY)
        assert hr == 0
        hr, rsp = scard.SCardTransmit(h, scard.SCARD_PCI_T0, apdu)
        assert isinstance(hr, int) and isinstance(rsp, list)
        if hr == 0:
            assert len(rsp) >= 2
        else:
            assert rsp == [] and scard.SCardGetErrorMessage(hr)
        scard.SCardDisconnect(h, scard.SCARD_LEAVE_CARD)
        scard.SCardReleaseContext(ctx)


_HYP_MGR = [emulated_manager("gemalto-pctwin")]


@given(st.text(max_size=40))
def test_to_bytes_any_text(text):
    from ccidkit.core.host.pyscard_shim import util
    try:
        out = util.toBytes(text)
    except TypeError:
        return
    assert out == list(bytes.fromhex(text))


ATRS = [
    list(MiniCard().atr),
    list(make_card("usim").atr),
    [0x3B, 0xDC, 0x96, 0xFF, 0x81, 0x11, 0xFE, 0x80, 0x31, 0xC8, 0x54, 0x43, 0x56, 0x35, 0x07,
     0x73, 0xFF, 0xA1, 0xC0, 0x3C],
    [0x3B, 0x02, 0x14, 0x50],
    [0x3F, 0x65, 0x25, 0x08, 0x31, 0x04, 0x6C, 0x90, 0x00],
]


def test_atr_object_matches_pyscard():
    from smartcard.ATR import ATR as Real
    from ccidkit.core.host.pyscard_shim.ATR import ATR
    from ccidkit.core.host.pyscard_shim.Exceptions import SmartcardException
    for a in ATRS:
        r, s = Real(a), ATR(a)
        for name in ("TS", "T0", "K", "TA", "TB", "TC", "TD", "historicalBytes", "TCK", "FI",
                     "DI", "N", "PI1", "II", "interfaceBytesCount"):
            assert getattr(s, name) == getattr(r, name), (a, name)
        for name in ("getSupportedProtocols", "getBitRateFactor", "getClockRateConversion",
                     "isT0Supported", "isT1Supported", "isT15Supported", "getTA1", "getTD1",
                     "getHistoricalBytes", "getChecksum", "getProgrammingVoltage"):
            assert getattr(s, name)() == getattr(r, name)(), (a, name)
        assert str(s) == str(r)
        assert s.render().splitlines()[0].startswith("ATR: ")
    for bad in ([], [0x3B], [0x12, 0x00]):
        with pytest.raises(SmartcardException):
            ATR(bad)


@given(st.lists(st.integers(0, 255), max_size=40))
def test_atr_any_bytes(data):
    from ccidkit.core.host.pyscard_shim.ATR import ATR
    from ccidkit.core.host.pyscard_shim.Exceptions import SmartcardException
    try:
        a = ATR(data)
    except SmartcardException:
        return
    assert a.atr == data and isinstance(a.getSupportedProtocols(), dict)
    a.render()


from ccidkit.emu.pcscd import pcscd_vpcd  # noqa: E402,F401  (module fixture: a private pcscd)


def test_the_same_script_under_real_pyscard_and_pcscd(pcscd_vpcd):
    # the script is plain pyscard: the real one, through pcscd + vpcd, prints the same records
    vicc = pcscd_vpcd.vicc(make_card("usim"))
    try:
        p = None
        for _ in range(50):
            p = subprocess.run([sys.executable, SCRIPT], capture_output=True, text=True,
                               timeout=120, env=pcscd_vpcd.client_env())
            if "records" in p.stdout or p.returncode not in (0, 1):
                break
            time.sleep(0.2)              # the card is not in the reader yet
    finally:
        vicc.stop()
    assert p.returncode == 0, p.stdout + p.stderr
    out = p.stdout.splitlines()
    assert out[1] == "using: Virtual PCD 00 00"
    assert [x for x in out if x.startswith("record ")] == USIM_RECORDS
    assert out[-1] == "used records: 5"
