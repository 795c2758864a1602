"""The driver over pyusb and the emulated readers of emu/ (the path real readers take):
power-on, PPS, every exchange level, the AU9560 cap and fallback, eight busy slots,
removal and unplug mid-exchange, abort, secure PIN entry, NAD."""

import pytest

from ccidkit.core.driver import Reader, ReaderError, PROTOCOL_T0, PROTOCOL_T1
from ccidkit.core import part10
from ccidkit.core.host.emulated import open_emulated, emulated_readers
from ccidkit.emu.card.minicard import MiniCard

SELECT_AID = bytes.fromhex("00A4040009F063636964 6B69740100".replace(" ", ""))
FCI = bytes.fromhex("6F168409F0636369646B697401A5095007636369646B6974")


def reader_of(profile, cards=None, **kw):
    backend, ts = open_emulated(profile, cards=cards)
    lines = []
    r = Reader(ts[0], log=lines.append, **kw).open()
    r.lines = lines
    r.emulated = backend.readers[0] if hasattr(backend, "readers") and \
        not callable(backend.readers) else backend.readers()[0]
    return r


def echo(n, fill=0x5A):
    data = bytes([(fill + i) & 0xFF for i in range(n)])
    if n <= 255:
        return bytes((0x80, 0xEE, 0, 0, n)) + data + b"\x00", data
    return bytes((0x80, 0xEE, 0, 0, 0, n >> 8, n & 0xFF)) + data + b"\x00\x00", data


def test_tpdu_reader_t0_then_t1():
    r = reader_of("gemalto-pctwin")
    atr, proto = r.connect(0)
    assert atr == MiniCard().atr and proto == 0
    # T=0: the 61xx goes back to the caller as pcsc-lite does
    assert r.transmit(0, SELECT_AID) == bytes.fromhex("6118")
    assert r.transmit(0, bytes.fromhex("00C0000018")) == FCI + b"\x90\x00"
    r.reset(0)
    assert r.set_protocol(0, PROTOCOL_T1) == 1
    assert (r.slots[0].fi, r.slots[0].di) == (512, 32)
    assert r.slots[0].t1.ifsd == 254          # IFSD negotiated after the ATR
    apdu, data = echo(600)
    assert r.transmit(0, apdu) == data + b"\x90\x00"   # chained I-blocks both ways


def test_t0_only_card_refuses_t1():
    r = reader_of("gemalto-pctwin", cards={0: MiniCard(protocols=(0,))})
    r.power_on(0)
    with pytest.raises(ReaderError) as e:
        r.set_protocol(0, PROTOCOL_T1)
    assert e.value.name == "IFD_PROTOCOL_NOT_SUPPORTED"
    assert r.set_protocol(0, PROTOCOL_T0 | PROTOCOL_T1) == 0


def test_extended_apdu_level_chains_long_messages():
    r = reader_of("au9560")
    r.connect(0)
    assert r.transmit(0, SELECT_AID) == FCI + b"\x90\x00"
    apdu, data = echo(1000)
    assert r.transmit(0, apdu) == data + b"\x90\x00"


def test_au9560_capped_by_the_quirks_table():
    r = reader_of("au9560")
    r.connect(0)
    # 3.7 MHz: Fi 512 Di 32 would be 231 kbit/s; the cap keeps Di 16
    assert r.slots[0].pps_tries == [(512, 16, "ok")]
    assert r.quirks["max_baud"] == 200000


def test_au9560_fallback_when_the_fast_speed_fails():
    # without the cap the driver tries 231 kbit/s, which this reader cannot run
    # (SetParameters is accepted; the first exchange then fails with HW_ERROR)
    r = reader_of("au9560", quirks={"max_baud": None})
    r.connect(0)
    assert r.slots[0].pps_tries == [(512, 32, "ok")]
    assert r.transmit(0, SELECT_AID) == FCI + b"\x90\x00"
    assert r.slots[0].pps_tries == [(512, 32, "HW_ERROR"), (512, 16, "ok")]
    assert (r.slots[0].fi, r.slots[0].di) == (512, 16)
    assert any("lowering the speed" in l for l in r.lines)
    # proven now: a later failure is reported, not renegotiated
    assert r.slots[0].speed_proven


def test_eight_slots_busy_at_once():
    r = reader_of("sysmooctsim")
    assert r.max_busy == 8
    for i in range(8):
        r.connect(i)
    emu = r.emulated
    start = len(emu.log)
    reqs = {}
    for i in range(8):
        reqs[i] = echo(8, i * 16)[0]
    out = r.transmit_many(reqs)
    busy = peak = 0
    for entry in list(emu.log)[start:]:
        if entry[1] == "->" and entry[2] == 0x6F:
            busy += 1
            peak = max(peak, busy)
        elif entry[1] == "<-" and entry[2] == 0x80:
            busy -= 1
    assert peak == 8
    for i in range(8):
        # T=0 case 4: the data waits behind 61 08
        assert out[i] == b"\x61\x08", out[i]


def test_card_removed_mid_exchange():
    r = reader_of("gemalto-pctwin")
    r.connect(0)
    r.emulated.faults.remove_mid_exchange(0)
    with pytest.raises(ReaderError) as e:
        r.transmit(0, SELECT_AID)
    assert e.value.name == "IFD_ICC_NOT_PRESENT"
    assert not r.slots[0].present


def test_reader_unplugged_mid_exchange():
    r = reader_of("gemalto-pctwin")
    r.connect(0)
    r.emulated.faults.unplug_on_command(1)
    with pytest.raises(ReaderError) as e:
        r.transmit(0, SELECT_AID)
    assert e.value.name == "IFD_NO_SUCH_DEVICE"
    assert len([l for l in r.lines if "removed" in l and "I/O stopped" in l]) == 1
    with pytest.raises(ReaderError):
        r.transmit(0, SELECT_AID)


def test_abort_mid_exchange():
    r = reader_of("gemalto-pctwin")
    r.connect(0)
    r.emulated.faults.wtx_storm(0, 40)

    def on_wtx(rd, slot, n):
        if n == 2:
            rd.request_abort(slot)

    r.on_time_extension = on_wtx
    with pytest.raises(ReaderError) as e:
        r.transmit(0, SELECT_AID)
    assert e.value.name == "CANCELLED"
    r.on_time_extension = None
    assert r.transmit(0, SELECT_AID) == b"\x61\x18"


class PinCard(MiniCard):
    def process_apdu(self, apdu):
        apdu = bytes(apdu)
        if apdu[1:2] == b"\x20":
            return b"\x90\x00" if apdu[5:9] == b"1234" else b"\x63\xC2"
        return MiniCard.process_apdu(self, apdu)


def test_secure_pin_verify_on_the_pinpad():
    r = reader_of("pinpad", cards={0: PinCard()})
    r.connect(0)
    feats = part10.parse_feature_tlv(
        part10.control(r, 0, part10.CM_IOCTL_GET_FEATURE_REQUEST, b""))
    assert part10.FEATURE_VERIFY_PIN_DIRECT in feats
    assert part10.FEATURE_MODIFY_PIN_DIRECT in feats
    verify = part10.build_verify_structure(bytes.fromhex("0020000108") + b"\xFF" * 8)
    r.emulated.keypad(0, "1234")
    assert part10.control(r, 0, feats[part10.FEATURE_VERIFY_PIN_DIRECT], verify) == b"\x90\x00"
    r.emulated.keypad(0, "9999")
    assert part10.control(r, 0, feats[part10.FEATURE_VERIFY_PIN_DIRECT], verify) == b"\x63\xC2"
    r.emulated.keypad(0, "cancel")
    assert part10.control(r, 0, feats[part10.FEATURE_VERIFY_PIN_DIRECT], verify) == b"\x64\x01"


def test_nad_reaches_the_t1_blocks():
    r = reader_of("gemalto-pctwin", cards={0: MiniCard(protocols=(1,))})
    r.connect(0)
    code = part10.SCARD_CTL_CODE(3600)
    assert part10.control(r, 0, code, bytes.fromhex("3E000112")) == bytes.fromhex("3E000100")
    assert part10.control(r, 0, code, bytes.fromhex("3F0000")) == bytes.fromhex("3F00020012")
    assert r.transmit(0, SELECT_AID) == FCI + b"\x90\x00"
    t1card = r.emulated.slots[0].t1
    assert t1card.apdus_by_nad.get(0x12, 0) >= 1


def test_escape_on_the_twin():
    r = reader_of("gemalto-pctwin")
    assert r.escape(b"\x02") == b"GemTwin V1.10"


def test_no_interrupt_endpoint_polls_slot_status():
    r = reader_of("iccd-token")
    assert not r.transport.has_interrupt
    n = len(r.emulated.log)
    assert r.poll_events(10) == []
    assert any(e[2] == 0x65 for e in list(r.emulated.log)[n:])   # GetSlotStatus


def test_t1_blocks_corrupted_on_the_line_are_recovered():
    r = reader_of("gemalto-pctwin", cards={0: MiniCard(protocols=(1,))})
    r.connect(0)
    r.emulated.faults.corrupt_t1(0, "reader", 2)
    assert r.transmit(0, SELECT_AID) == FCI + b"\x90\x00"
    assert r.slots[0].t1.r_requests >= 1


def test_stale_bseq_answers_are_dropped():
    r = reader_of("gemalto-pctwin")
    r.connect(0)
    assert r.transmit(0, SELECT_AID) == b"\x61\x18"
    r.emulated.faults.stale_bseq(1, "duplicate")
    assert r.transmit(0, bytes.fromhex("00C0000018")) == FCI + b"\x90\x00"
    assert r.stale == 1


def test_secure_pin_verify_with_t1_at_tpdu_level():
    class T1PinCard(PinCard):
        pass

    r = reader_of("pinpad", cards={0: T1PinCard(protocols=(1,))})
    r.connect(0)
    assert r.slots[0].protocol == 1
    code = part10.feature_ioctl(part10.FEATURE_VERIFY_PIN_DIRECT)
    verify = part10.build_verify_structure(bytes.fromhex("0020000108") + b"\xFF" * 8)
    for pin, sw in (("1234", b"\x90\x00"), ("1111", b"\x63\xC2"), ("1234", b"\x90\x00")):
        r.emulated.keypad(0, pin)
        assert part10.control(r, 0, code, verify) == sw
        # the engine's sequence numbers moved on with the card's
        assert r.transmit(0, SELECT_AID) == FCI + b"\x90\x00"
    r.emulated.keypad(0, "cancel")
    assert part10.control(r, 0, code, verify) == b"\x64\x01"
    assert r.transmit(0, SELECT_AID) == FCI + b"\x90\x00"


def test_extended_apdu_over_t0_tpdu_goes_through_envelope():
    r = reader_of("gemalto-pctwin", cards={0: MiniCard(protocols=(0,))})
    r.connect(0)
    apdu, data = echo(600)
    assert r.transmit(0, apdu) == data + b"\x90\x00"
    assert r.slots[0].t0.tpdus > 3      # ENVELOPE segments, then GET RESPONSE rounds


def test_a_bank_of_96_slots():
    from ccidkit.core.host.emulated import open_emulated
    backend, ts = open_emulated("sysmosimbank-96")
    assert len(ts) == 12
    readers = [Reader(t).open() for t in ts]
    assert sum(len(r.slots) for r in readers) == 96
    r = readers[5]
    for i in range(8):
        r.connect(i)
    out = r.transmit_many(dict((i, SELECT_AID) for i in range(8)))
    assert all(out[i] == b"\x61\x18" for i in range(8))


def test_secure_pin_modify_on_the_pinpad():
    class ModCard(MiniCard):
        def process_apdu(self, apdu):
            apdu = bytes(apdu)
            if apdu[1:2] == b"\x24":
                ok = apdu[5:9] == b"1234" and apdu[13:17] == b"5678"
                return b"\x90\x00" if ok else b"\x63\xC1"
            return MiniCard.process_apdu(self, apdu)

    r = reader_of("pinpad", cards={0: ModCard()})
    r.connect(0)
    code = part10.parse_feature_tlv(part10.feature_tlv(r))[part10.FEATURE_MODIFY_PIN_DIRECT]
    modify = part10.build_modify_structure(bytes.fromhex("0024000110") + b"\xFF" * 16, 0, 8)
    r.emulated.keypad(0, "1234", "5678", "5678")
    assert part10.control(r, 0, code, modify) == b"\x90\x00"
    # the confirmation differs: the reader cancels (PIN_CANCELLED -> 64 01)
    r.emulated.keypad(0, "1234", "5678", "5679")
    assert part10.control(r, 0, code, modify) == b"\x64\x01"


def test_pyusb_transport_identity():
    from ccidkit.core.host.pyusb_transport import interface_string_index
    backend, ts = open_emulated("cherry-st")
    t = ts[0]
    assert (t.vid, t.pid, t.interface_number) == (0x046A, 0x0010, 1)
    assert t.manufacturer == "Cherry GmbH" and t.product == "SmartBoard XX44"
    assert t.has_interrupt and t.bcd_device == 0x0104
    assert interface_string_index(t.config_descriptor, 1) == 0
    assert interface_string_index(t.config_descriptor, 7) == 0
    r = Reader(t).open()
    assert r.interface_number == 1


def test_longest_extended_apdu_over_t0():
    r = reader_of("gemalto-pctwin", cards={0: MiniCard(protocols=(0,))})
    r.connect(0)
    apdu, data = echo(65535)
    assert r.transmit(0, apdu) == data + b"\x90\x00"
