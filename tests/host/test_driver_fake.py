"""The driver against the fake reader of tests/portable/test_driver.py: speed cap and
fallback, many slots busy at once, removal mid-exchange, time extensions, abort,
secure PIN entry, NAD."""

import os
import sys

from hypothesis import given, strategies as st

sys.path.insert(0, os.path.join(os.path.dirname(os.path.dirname(__file__)), "portable"))

from test_driver import FakeReader, FakeSlot, SELECT_AID, h  # noqa: E402

from ccidkit.core.driver import Reader, ReaderError, PROTOCOL_T1, CLASS_ORDER_5V_FIRST  # noqa: E402
from ccidkit.core import part10  # noqa: E402
from ccidkit.emu.card.minicard import MiniCard  # noqa: E402

import pytest  # noqa: E402


def open_reader(fake, **kw):
    return Reader(fake, **kw).open()


def pps_sent(fake, slot=0):
    return [b[1] for b in fake.fslots[slot].blocks if isinstance(b, tuple) and b[0] == "PPS"]


def test_au9560_speed_cap_through_the_quirks_table():
    # TA1 96: Fi 512, Di 32 = 250 kbit/s at 4 MHz; the reader lists up to 600 kbit/s
    def run(vid, pid):
        f = FakeReader(vid=vid, pid=pid)
        f.config_descriptor = f.config_descriptor  # descriptor built with max 344 kbit/s
        r = open_reader(f)
        r.connect(0)
        return f, r

    f, r = run(0x1234, 0x5678)
    assert pps_sent(f) == [h("FF 10 96 79")]
    assert (r.slots[0].fi, r.slots[0].di) == (512, 32)
    f, r = run(0x058F, 0x9540)
    # capped at ~200 kbit/s: Di 16 (125 kbit/s) is the fastest allowed
    assert pps_sent(f) == [h("FF 10 95 7A")]
    assert (r.slots[0].fi, r.slots[0].di) == (512, 16)
    assert r.quirks["name"] == "Alcor Micro AU9560"


def test_fallback_to_a_lower_speed_when_pps_fails():
    # an Acos-ID-like card on the AU9560: mute on a PPS above 70 kbit/s
    slot = FakeSlot(MiniCard(), max_baud=70000)
    f = FakeReader([slot], vid=0x058F, pid=0x9540)
    lines = []
    r = open_reader(f, log=lines.append)
    r.connect(0)
    assert pps_sent(f) == [h("FF 10 95 7A"), h("FF 10 94 7B")]
    assert r.slots[0].pps_tries == [(512, 16, "IFD_RESPONSE_TIMEOUT"), (512, 8, "ok")]
    # the card was reset between the tries (§9.3)
    assert [m.bMessageType for m in f.log].count(0x62) == 2
    assert any("trying a lower speed" in l for l in lines)
    assert r.transmit(0, SELECT_AID)[-2:] in (h("90 00"), h("61 18"))


def test_fallback_with_set_parameters_on_an_auto_pps_reader():
    slot = FakeSlot(MiniCard(), max_baud=70000)
    f = FakeReader([slot], level="short")
    assert f.features & 0x80
    r = open_reader(f)
    r.connect(0)
    sp = [m for m in f.log if m.bMessageType == 0x61]
    assert [m.abProtocolDataStructure.bmFindexDindex for m in sp] == [0x96, 0x95, 0x94]
    assert pps_sent(f) == []
    assert r.transmit(0, SELECT_AID)[-2:] == h("90 00")


def test_class_order_and_auto_voltage():
    f = FakeReader([FakeSlot(MiniCard(), classes="B")])
    r = open_reader(f, class_order=CLASS_ORDER_5V_FIRST)
    r.power_on(0)
    assert [m.bPowerSelect for m in f.log if m.bMessageType == 0x62] == [1, 2]
    assert r.slots[0].card_class == "B"
    f = FakeReader(features=0x00010238)   # auto voltage
    r = open_reader(f)
    r.power_on(0)
    assert [m.bPowerSelect for m in f.log if m.bMessageType == 0x62] == [0]


def test_eight_slots_busy_at_once_tpdu_t1():
    slots = [FakeSlot(MiniCard(protocols=(1,))) for _ in range(8)]
    f = FakeReader(slots, busy=8, reorder=True)
    r = open_reader(f)
    for i in range(8):
        r.connect(i)
    f.max_unread = 0
    reqs = {}
    for i in range(8):
        reqs[i] = h("80 EE 00 00 03") + bytes((i, i, i)) + h("00")
    out = r.transmit_many(reqs)
    for i in range(8):
        assert out[i] == bytes((i, i, i)) + h("90 00"), (i, out[i])
    assert f.max_unread == 8


def test_busy_slots_limited_by_bMaxCCIDBusySlots():
    slots = [FakeSlot(MiniCard()) for _ in range(8)]
    f = FakeReader(slots, level="short", busy=3, reorder=True)
    r = open_reader(f)
    for i in range(8):
        r.connect(i)
    f.max_unread = 0
    out = r.transmit_many(dict((i, h("80 EE 00 00 01") + bytes((i,)) + h("00")) for i in range(8)))
    assert all(out[i] == bytes((i,)) + h("90 00") for i in range(8))
    assert f.max_unread == 3
    # nothing was refused with CMD_SLOT_BUSY
    assert r.stale == 0


def test_card_removed_mid_exchange():
    f = FakeReader(level="short")
    r = open_reader(f)
    r.connect(0)
    f.fslots[0].remove_on_xfr = True
    with pytest.raises(ReaderError) as e:
        r.transmit(0, SELECT_AID)
    assert e.value.name == "IFD_ICC_NOT_PRESENT"
    assert not r.slots[0].present and r.slots[0].atr is None
    # the NotifySlotChange that follows reports nothing new
    assert r.poll_events(0) == []


def test_reader_unplugged_mid_exchange():
    lines = []
    f = FakeReader(level="short")
    r = open_reader(f, log=lines.append)
    r.connect(0)
    f.gone_on_xfr = True
    with pytest.raises(ReaderError) as e:
        r.transmit(0, SELECT_AID)
    assert e.value.name == "IFD_NO_SUCH_DEVICE"
    assert r.gone
    assert len([l for l in lines if "removed" in l]) == 1
    assert r.poll_events(10) == []


def test_time_extensions_then_answer():
    seen = []
    f = FakeReader([FakeSlot(MiniCard(), wtx=5)], level="short")
    r = open_reader(f)
    r.on_time_extension = lambda rd, slot, n: seen.append(n)
    r.connect(0)
    assert r.transmit(0, SELECT_AID)[-2:] == h("90 00")
    assert seen == [1, 2, 3, 4, 5]


def test_abort_mid_exchange():
    f = FakeReader([FakeSlot(MiniCard(), wtx=50)], level="short")
    r = open_reader(f)
    r.connect(0)
    f.fslots[0].mute = True

    def on_wtx(rd, slot, n):
        if n == 3:
            rd.request_abort(slot)

    r.on_time_extension = on_wtx
    with pytest.raises(ReaderError) as e:
        r.transmit(0, SELECT_AID)
    assert e.value.name == "CANCELLED"
    xfr = [m for m in f.log if m.bMessageType == 0x6F][-1]
    ab = [m for m in f.log if m.bMessageType == 0x72]
    assert len(ab) == 1 and (ab[0].bSlot, ab[0].bSeq) == (0, xfr.bSeq)
    # CCID §5.3.1: the ABORT class request carries the same bSeq:bSlot
    assert f.controls[-1] == (0x21, 0x01, (xfr.bSeq << 8) | 0, 0)
    # the slot works again afterwards; the leftover time extensions are dropped
    f.fslots[0].mute = False
    f.fslots[0].wtx = 0
    r.on_time_extension = None
    assert r.transmit(0, SELECT_AID)[-2:] == h("90 00")


def test_time_extension_storm_is_bounded():
    f = FakeReader([FakeSlot(MiniCard(), wtx=30)], level="short")
    r = open_reader(f, max_time_extensions=10)
    r.connect(0)
    f.fslots[0].mute = True
    with pytest.raises(ReaderError) as e:
        r.transmit(0, SELECT_AID)
    assert e.value.name == "IFD_RESPONSE_TIMEOUT"
    assert [m.bMessageType for m in f.log].count(0x72) == 1


class PinCard(MiniCard):
    def process_apdu(self, apdu):
        apdu = bytes(apdu)
        if apdu[1:2] == b"\x20":
            return h("90 00") if apdu[5:9] == b"1234" else h("63 C2")
        if apdu[1:2] == b"\x24":
            return h("90 00") if apdu[5:9] == b"1234" and apdu[13:17] == b"5678" else h("63 C2")
        return MiniCard.process_apdu(self, apdu)


def test_secure_pin_verify_and_modify_through_features():
    f = FakeReader([FakeSlot(PinCard())], level="short", pin=3)
    r = open_reader(f)
    r.connect(0)
    feats = part10.parse_feature_tlv(part10.control(r, 0, part10.CM_IOCTL_GET_FEATURE_REQUEST, b""))
    assert sorted(feats) == [0x06, 0x07, 0x0A, 0x12, 0x13]
    assert feats[0x06] == 0x42000000 + 0x330000 + 6
    verify = part10.build_verify_structure(h("00 20 00 01 08 FF FF FF FF FF FF FF FF"))
    assert part10.control(r, 0, feats[0x06], verify) == h("90 00")
    sec = [m for m in f.log if m.bMessageType == 0x69][-1]
    assert sec.bPINOperation == 0 and sec.abPINDataStructure.bTimeOut == 30
    assert sec.abPINDataStructure.abPINApdu == h("00 20 00 01 08 FF FF FF FF FF FF FF FF")
    assert f.fslots[0].blocks[-1] == ("SECURE", h("00 20 00 01 08 31 32 33 34 FF FF FF FF"))
    modify = part10.build_modify_structure(h("00 24 00 01 10") + b"\xFF" * 16, 0, 8)
    assert part10.control(r, 0, feats[0x07], modify) == h("90 00")
    sec = [m for m in f.log if m.bMessageType == 0x69][-1]
    assert sec.bPINOperation == 1 and sec.abPINDataStructure.bInsertionOffsetNew == 8
    # a reader without PIN pad offers no PIN features
    f2 = FakeReader(level="short")
    r2 = open_reader(f2)
    assert sorted(part10.parse_feature_tlv(part10.feature_tlv(r2))) == [0x12, 0x13]
    with pytest.raises(part10.Part10Error):
        part10.control(r2, 0, feats[0x06], verify)


def test_nad_get_set_reaches_t1_blocks():
    f = FakeReader([FakeSlot(MiniCard(protocols=(1,)))])
    r = open_reader(f)
    r.connect(0)
    code = part10.SCARD_CTL_CODE(3600)
    assert part10.control(r, 0, code, h("3F 00 00")) == h("3F 00 02 00 00")
    assert part10.control(r, 0, code, h("3E 00 01 12")) == h("3E 00 01 00")
    assert part10.control(r, 0, code, h("3F 00 00")) == h("3F 00 02 00 12")
    assert r.transmit(0, SELECT_AID)[-2:] == h("90 00")
    blk = f.fslots[0].blocks[-1]
    assert blk[0] == 0x12 and blk[3:5] == h("00 A4")
    # NAD bits 8 and 4 are not addresses: refused with status 01
    assert part10.control(r, 0, code, h("3E 00 01 88")) == h("3E 00 01 01")


def test_escape_and_parameters():
    f = FakeReader(level="short")
    r = open_reader(f)
    assert r.escape(b"\x01\x02") == b"ESC\x01\x02"
    r.connect(0)
    p = r.get_parameters(0)
    assert p is not None and p.bmFindexDindex == 0x96


@given(st.binary(max_size=40))
def test_feature_tlv_parser_on_any_bytes(data):
    try:
        out = part10.parse_feature_tlv(data)
    except part10.Part10Error:
        return
    assert isinstance(out, dict)


@given(st.binary(max_size=60))
def test_pin_structures_on_any_bytes(data):
    for fn in (part10.verify_structure_to_ccid, part10.modify_structure_to_ccid):
        try:
            out = fn(data)
        except part10.Part10Error:
            continue
        assert out[0] in (0, 1)


def test_reader_refusing_busy_slots_gets_fewer_at_once():
    # the descriptor says 8, the firmware takes 2: CMD_SLOT_BUSY, then serialised to 2
    slots = [FakeSlot(MiniCard()) for _ in range(8)]
    lines = []
    f = FakeReader(slots, level="short", busy=8, accept_busy=2)
    r = open_reader(f, log=lines.append)
    for i in range(8):
        r.connect(i)
    out = r.transmit_many(dict((i, h("80 EE 00 00 01") + bytes((i,)) + h("00")) for i in range(8)))
    assert all(out[i] == bytes((i,)) + h("90 00") for i in range(8))
    assert r.max_busy == 2
    assert any("CMD_SLOT_BUSY" in l for l in lines)


def test_silent_reader_times_out_and_is_told_to_abort():
    f = FakeReader(level="short")
    r = open_reader(f)
    r.connect(0)
    f.fslots[0].mute = True
    with pytest.raises(ReaderError) as e:
        r.transmit(0, SELECT_AID)
    assert e.value.name == "IFD_RESPONSE_TIMEOUT"
    xfr = [m for m in f.log if m.bMessageType == 0x6F][-1]
    ab = [m for m in f.log if m.bMessageType == 0x72]
    assert [(m.bSlot, m.bSeq) for m in ab] == [(0, xfr.bSeq)]
    f.fslots[0].mute = False
    # the abort's late answers are dropped as stale; the slot works again
    assert r.transmit(0, SELECT_AID)[-2:] == h("90 00")


class GarbageTransport(FakeReader):
    """A reader whose bulk-IN answers are arbitrary bytes."""

    def __init__(self, answers):
        FakeReader.__init__(self, level="short")
        self.answers = list(answers)

    def bulk_out(self, data, timeout_ms):
        self.log.append(data)

    def bulk_in(self, max_len, timeout_ms):
        if not self.answers:
            raise TransportTimeout()
        return self.answers.pop(0)


from ccidkit.core.transport import TransportTimeout  # noqa: E402


@given(st.lists(st.binary(max_size=300), max_size=6))
def test_driver_on_arbitrary_reader_answers(answers):
    r = Reader(GarbageTransport(answers))
    r.slots[0].present = True
    r.slots[0].powered = True
    for op in (lambda: r.get_slot_status(0), lambda: r.power_on(0),
               lambda: r.transmit(0, SELECT_AID)):
        try:
            op()
        except ReaderError:
            pass


def test_info_and_custom_jobs():
    f = FakeReader([FakeSlot(MiniCard()), FakeSlot(MiniCard())], level="short", busy=2,
                   vid=0x058F, pid=0x9540)
    r = open_reader(f)
    r.connect(0)
    info = r.info()
    assert info["exchange_level"] == "short APDU" and info["max_busy_slots"] == 2
    assert "max_baud" in info["quirks"]
    assert info["slots"][0]["powered"] and not info["slots"][1]["powered"]
    # power slot 1 up while slot 0 exchanges an APDU, in one run
    res = r.run([(0, r.transmit_job(0, SELECT_AID)),
                 (1, r.power_on_job(1))])
    assert res[0][-2:] == h("90 00") and res[1] == MiniCard().atr


class ChaosReader(FakeReader):
    """Answers every command with the right message type, slot and bSeq, and
    whatever status, error and data the test draws."""

    def __init__(self, draw, level):
        FakeReader.__init__(self, [FakeSlot(MiniCard()), FakeSlot(MiniCard())], level=level,
                            busy=2)
        self.draw = draw
        self.count = 0

    def bulk_out(self, data, timeout_ms):
        from ccidkit.core.ccid import decode_bulk_out, RESPONSE_TYPE, CCIDMessage, CCIDError
        msg = decode_bulk_out(bytes(data))
        self.count += 1
        if self.count > 60:
            return          # then silence: the driver times out
        t = RESPONSE_TYPE[msg.bMessageType]
        m = CCIDMessage(t, msg.bSlot, msg.bSeq)
        m.bStatus = self.draw(st.sampled_from([0x00, 0x01, 0x02, 0x40, 0x41, 0x42, 0x80]))
        m.bError = self.draw(st.sampled_from([0x00, 0x01, 0xFE, 0xFB, 0xE0, 0xEF, 0xF0, 0x0A]))
        payload = self.draw(st.one_of(
            st.just(MiniCard().atr), st.binary(max_size=40),
            st.sampled_from([h("90 00"), h("61 10"), h("FF 10 96 79"), h("00 E1 01 FE 1E"),
                             h("00 00 02 90 00 92"), h("00 C3 01 02 C0")])))
        if t == 0x82:
            m.bProtocolNum = 0
            payload = b""
        if t == 0x81 or t == 0x84:
            payload = b""
        try:
            m.abData = payload
        except CCIDError:       # a structure this message type cannot carry
            m.abData = b""
        self.out.append(m.to_bytes())


@given(st.data(), st.sampled_from(["TPDU", "short", "extended"]))
def test_driver_on_well_formed_but_arbitrary_answers(data, level):
    f = ChaosReader(data.draw, level)
    r = Reader(f, max_time_extensions=5)
    steps = (lambda: r.open(), lambda: r.power_on(0), lambda: r.set_protocol(0),
             lambda: r.transmit(0, SELECT_AID),
             lambda: r.transmit_many({0: SELECT_AID, 1: h("80 EE 00 00 01 AA 00")}),
             lambda: r.secure(0, b"\x00" + bytes(14) + h("00 20 00 01 08") + bytes(8)),
             lambda: r.escape(b"\x01"), lambda: r.poll_events(0), lambda: r.abort(1))
    for op in steps:
        try:
            op()
        except ReaderError:
            pass


def test_specific_mode_card_gets_no_pps():
    # TA2 = 01: specific mode, T=1, the TA1 values apply at once
    atr = h("3B 96 96 11 01 80 57 63 63 69 64")
    tck = 0
    for b in atr[1:]:
        tck ^= b
    card = MiniCard(atr=atr + bytes((tck,)), protocols=(1,))
    f = FakeReader([FakeSlot(card)])
    r = open_reader(f)
    r.power_on(0)
    assert r.slots[0].parsed_atr.specific_mode["protocol"] == 1
    assert r.set_protocol(0) == 1
    assert pps_sent(f) == []
    sp = [m for m in f.log if m.bMessageType == 0x61][-1]
    assert sp.bProtocolNum == 1 and sp.abProtocolDataStructure.bmFindexDindex == 0x96


def test_card_class_indicator_moves_power_on_to_its_class():
    # T=15 TA: class A only (ISO/IEC 7816-3 §6.2.4); the card answers at every class
    atr = h("3B 80 80 1F 01")
    tck = 0
    for b in atr[1:]:
        tck ^= b
    card = MiniCard(atr=atr + bytes((tck,)), protocols=(0,))
    f = FakeReader([FakeSlot(card, classes="ABC")])
    lines = []
    r = open_reader(f, log=lines.append)
    r.power_on(0)
    assert [m.bPowerSelect for m in f.log if m.bMessageType == 0x62] == [3, 2, 1]
    assert r.slots[0].card_class == "A"
    assert any("refuses class C" in l for l in lines)
