from support import h, raises

from ccidkit.core.apdu import CommandAPDU, chain
from ccidkit.core.t0 import DEFAULT_WT_US, ProcedureEngine, T0Error, T0Reader
from ccidkit.emu.card.minicard import MiniCard, ef_content
from ccidkit.emu.card.t0 import T0Card

EF1K = ef_content(0x2F00)
EF4K = ef_content(0x2F01)
DATA4K = bytes([(i * 13 + 5) & 0xFF for i in range(4096)])


class Peer:
    """A MiniCard behind T0Card, reachable through a TPDU link and a character link.

    Both links record what went to the card: ``tpdus`` (TPDU level) and
    ``chars`` (every chunk the reader sent at character level).
    """

    def __init__(self, **options):
        self.card = MiniCard()
        self.t0 = T0Card(self.card, **options)
        self.tpdus = []
        self.chars = []
        self.timeouts = []

    def tpdu_link(self, tpdu, timeout_us):
        self.tpdus.append(bytes(tpdu))
        self.timeouts.append(timeout_us)
        return self.t0.process_tpdu(tpdu)

    def char_link(self, data, timeout_us):
        if data:
            self.chars.append(bytes(data))
            self.t0.feed(data)
        out = self.t0.data_to_send()
        return out if out else None


def both(apdu, auto=False, **options):
    """Run one APDU at TPDU level and at character level; both must agree."""
    p1 = Peer(**options)
    p2 = Peer(**options)
    r = T0Reader(auto_get_response=auto)
    a = r.transceive(apdu, p1.tpdu_link)
    b = r.transceive_chars(apdu, p2.char_link)
    assert a == b, (a, b)
    return a, p1


# --- the procedure-byte engine ---------------------------------------------------------------

def test_engine_incoming_ack():
    e = ProcedureEngine(h("00 B0 00 00 04"))
    assert e.data_to_send() == h("00 B0 00 00 04") and e.wanted() == 1
    e.feed(h("B0"))
    assert e.wanted() == 4
    e.feed(h("01 02"))
    assert not e.done
    e.feed(h("03 04 90"))
    assert not e.done and e.wanted() == 1
    e.feed(h("00"))
    assert e.done and e.result == h("01 02 03 04 90 00") and e.wanted() == 0
    assert e.data_to_send() == b""


def test_engine_outgoing_ack_and_sw():
    e = ProcedureEngine(h("00 A4 00 0C 02 2F 00"))
    assert e.data_to_send() == h("00 A4 00 0C 02")
    e.feed(h("A4"))
    assert e.data_to_send() == h("2F 00")
    e.feed(h("90 00"))
    assert e.result == h("90 00")


def test_engine_byte_by_byte_both_ways():
    e = ProcedureEngine(h("00 D6 00 00 03 0A 0B 0C"))
    assert e.data_to_send() == h("00 D6 00 00 03")
    e.feed(h("29"))  # ~INS
    assert e.data_to_send() == h("0A")
    e.feed(h("60 29"))  # NULL, ~INS
    assert e.data_to_send() == h("0B")
    e.feed(h("D6"))  # ACK: the rest
    assert e.data_to_send() == h("0C")
    e.feed(h("60 60 90 00"))
    assert e.result == h("90 00") and e.null_count == 3
    e = ProcedureEngine(h("00 B0 00 00 03"))
    e.data_to_send()
    e.feed(h("4F 01 4F 02 B0 03 62 82"))
    assert e.result == h("01 02 03 62 82")


def test_engine_case1_and_early_status():
    e = ProcedureEngine(h("00 A4 00 00 00"))
    e.data_to_send()
    e.feed(h("90 00"))
    assert e.result == h("90 00")
    # the card may end an outgoing TPDU before taking its data
    e = ProcedureEngine(h("00 A4 00 0C 02 2F 00"))
    e.data_to_send()
    e.feed(h("6A 82"))
    assert e.result == h("6A 82")


def test_engine_refuses_invalid_sequences():
    table = (
        ("00 B0 00 00 04", "42", "INVALID_PROCEDURE_BYTE"),
        ("00 B0 00 00 04", "00", "INVALID_PROCEDURE_BYTE"),
        ("00 B0 00 00 02", "B0 01 02 B0", "PROTOCOL"),     # ACK with nothing left
        ("00 B0 00 00 01", "4F 01 4F", "PROTOCOL"),        # ~INS with nothing left
        ("00 A4 00 0C 01 3F", "A4 A4", "PROTOCOL"),
        ("00 A4 00 0C 01 3F", "5B 5B", "PROTOCOL"),
        ("00 B0 00 00 00", "90 00 90", "UNEXPECTED_BYTES"),
    )
    for tpdu, card_bytes, name in table:
        e = ProcedureEngine(h(tpdu))
        e.data_to_send()
        with raises(T0Error) as r:
            e.feed(h(card_bytes))
        assert r.value.name == name, (tpdu, card_bytes)
        assert e.done and e.result is None
    e = ProcedureEngine(h("00 B0 00 00 00"), max_null=3)
    e.data_to_send()
    e.feed(h("60 60 60"))
    with raises(T0Error) as r:
        e.feed(h("60"))
    assert r.value.name == "TOO_MANY_NULL" and r.value.code == 0x60
    e = ProcedureEngine(h("00 B0 00 00 00"))
    with raises(T0Error) as r:
        e.feed(h("B0"))
    assert r.value.name == "PROTOCOL"


def test_engine_refuses_bad_tpdus():
    table = (
        ("00 B0 00", "BAD_TPDU"),
        ("00 A4 00 00 03 01 02", "BAD_TPDU"),
        ("FF A4 00 00 00", "BAD_TPDU"),
        ("00 6A 00 00 00", "INVALID_INS"),
        ("00 9F 00 00 00", "INVALID_INS"),
    )
    for tpdu, name in table:
        with raises(T0Error) as r:
            ProcedureEngine(h(tpdu))
        assert r.value.name == name, tpdu


# --- the card side, at character level ---------------------------------------------------------

def test_card_procedure_bytes():
    t0 = T0Card(MiniCard())
    t0.feed(h("00 A4 00 0C 02"))
    assert t0.data_to_send() == h("A4")
    t0.feed(h("2F 00"))
    assert t0.data_to_send() == h("90 00")
    t0.feed(h("00 B0 00 00 04"))
    assert t0.data_to_send() == h("B0 00 01 02 03 90 00")
    t0.feed(h("00 B0 03 FC 10"))
    assert t0.data_to_send() == h("6C 04")
    t0.feed(h("00 B0 03 FC 04"))
    assert t0.data_to_send() == h("B0 FC FD FE FF 90 00")
    # invalid INS: 6D00 on the header; unknown INS (no ACK): 6D00
    t0.feed(h("00 65 00 00 00"))
    assert t0.data_to_send() == h("6D 00")
    t0.feed(h("00 12 00 00 10"))
    assert t0.data_to_send() == h("6D 00")
    t0.feed(h("FF 10 00 00 00"))
    assert t0.data_to_send() == h("6E 00")


def test_card_busy_and_byte_by_byte():
    t0 = T0Card(MiniCard(), byte_by_byte=True, null_bytes=2)
    t0.feed(h("80 EE 00 00 02"))
    assert t0.data_to_send() == h("60 60 11")
    t0.feed(h("AA"))
    assert t0.data_to_send() == h("11")
    t0.feed(h("BB"))
    assert t0.data_to_send() == h("60 60 61 02")
    t0.feed(h("00 C0 00 00 02"))
    assert t0.data_to_send() == h("60 60 3F AA 3F BB 90 00")
    # mixed: the first byte behind ~INS, then ACK
    t0 = T0Card(MiniCard(), byte_by_byte=1)
    t0.feed(h("80 EE 00 00 03"))
    assert t0.data_to_send() == h("11")
    t0.feed(h("01"))
    assert t0.data_to_send() == h("EE")
    t0.feed(h("02 03"))
    assert t0.data_to_send() == h("61 03")
    t0.feed(h("00 C0 00 00 03"))
    assert t0.data_to_send() == h("3F 01 C0 02 03 90 00")


def test_card_get_response_with_wrong_le_keeps_the_data():
    t0 = T0Card(MiniCard())
    assert t0.process_tpdu(h("80 EE 00 00 05 01 02 03 04 05")) == h("61 05")
    assert t0.process_tpdu(h("00 C0 00 00 08")) == h("6C 05")
    assert t0.process_tpdu(h("00 C0 00 00 02")) == h("01 02 61 03")
    assert t0.process_tpdu(h("00 C0 00 00 03")) == h("03 04 05 90 00")
    # nothing left: the card itself answers
    assert t0.process_tpdu(h("00 C0 00 00 03")) == h("69 85")
    assert t0.card.count(0xEE) == 1 and t0.card.count(0xC0) == 1
    # the card's own GET RESPONSE data is not lost to a 6Cxx either
    card = MiniCard()
    t0 = T0Card(card)
    card.process_apdu(h("80 EE 00 00 0A") + bytes(range(10)) + h("02"))
    assert t0.process_tpdu(h("00 C0 00 00 00")) == h("6C 08")
    assert t0.process_tpdu(h("00 C0 00 00 08")) == bytes(range(2, 10)) + h("90 00")


def test_card_tpdu_level_mute_and_length_errors():
    t0 = T0Card(MiniCard())
    assert t0.process_tpdu(h("00 A4 00")) is None
    # SELECT takes data: a header alone leaves the card waiting for it
    assert t0.process_tpdu(h("00 A4 00 00 02")) is None
    assert t0.process_tpdu(h("00 A4 00 0C 02 2F 00 00")) == h("67 00")
    assert t0.process_tpdu(h("00 B0 00 00 02 01 02")) == h("67 00")
    # case 1: SELECT MF, no data either way
    assert t0.process_tpdu(h("00 A4 00 00 00")) == h("90 00")


# --- the reader mapping against the card, TPDU and character level -----------------------------

def test_case1_and_case3():
    resp, peer = both(h("00 A4 00 00"))
    assert resp == h("90 00") and peer.tpdus == [h("00 A4 00 00 00")]
    assert peer.timeouts == [DEFAULT_WT_US]
    resp, peer = both(h("00 A4 00 0C 02 2F 00"))
    assert resp == h("90 00") and peer.tpdus == [h("00 A4 00 0C 02 2F 00")]
    # case 3 answered 61xx (a SELECT with FCP): returned as such unless auto
    resp, peer = both(h("00 A4 00 00 02 2F 00"))
    assert resp == h("61 0D")
    resp, peer = both(h("00 A4 00 00 02 2F 00"), auto=True)
    assert resp == h("62 0B 80 02 04 00 82 01 01 83 02 2F 00 90 00")
    assert peer.tpdus == [h("00 A4 00 00 02 2F 00"), h("00 C0 00 00 0D")]


def test_case2_and_6cxx():
    p = Peer()
    r = T0Reader()
    p.t0.process_tpdu(h("00 A4 00 0C 02 2F 00"))
    assert r.transceive(h("00 B0 00 10 08"), p.tpdu_link) == EF1K[16:24] + h("90 00")
    assert r.transceive(h("00 B0 00 00 00"), p.tpdu_link) == EF1K[:256] + h("90 00")
    assert p.tpdus[-1] == h("00 B0 00 00 00")
    # pcsc-lite behaviour: 6Cxx goes back to the caller
    assert r.transceive(h("00 B0 03 F8 10"), p.tpdu_link) == h("6C 08")
    ra = T0Reader(auto_get_response=True)
    p.tpdus = []
    assert ra.transceive(h("00 B0 03 F8 10"), p.tpdu_link) == EF1K[1016:] + h("90 00")
    assert p.tpdus == [h("00 B0 03 F8 10"), h("00 B0 03 F8 08")] and ra.tpdus == 2
    # Le 00 near the end of the file: 6C with the exact length, then the rest
    assert ra.transceive(h("00 B0 03 E8 00"), p.tpdu_link) == EF1K[1000:] + h("90 00")
    # at character level too
    for options in ({}, {"byte_by_byte": True}, {"null_bytes": 3}):
        p = Peer(**options)
        ra.transceive_chars(h("00 A4 00 0C 02 2F 00"), p.char_link)
        assert ra.transceive_chars(h("00 B0 03 F8 10"), p.char_link) == EF1K[1016:] + h("90 00")
        assert ra.transceive_chars(h("00 B0 00 00 00"), p.char_link) == EF1K[:256] + h("90 00")


def test_case4_with_auto_off_and_on():
    apdu = h("80 EE 00 00 05 01 02 03 04 05 00")
    resp, peer = both(apdu)
    assert resp == h("61 05") and peer.tpdus == [h("80 EE 00 00 05 01 02 03 04 05")]
    resp, peer = both(apdu, auto=True)
    assert resp == h("01 02 03 04 05 90 00")
    assert peer.tpdus == [h("80 EE 00 00 05 01 02 03 04 05"), h("00 C0 00 00 05")]
    # the echo ran exactly once; GET RESPONSE was served by the T=0 layer
    assert peer.card.count(0xEE) == 1 and peer.card.count(0xC0) == 0
    # Le smaller than the data: Ne bytes, and 61xx tells what is left
    resp, peer = both(h("80 EE 00 00 05 01 02 03 04 05 02"), auto=True)
    assert resp == h("01 02 61 03") and peer.tpdus[-1] == h("00 C0 00 00 02")
    # 255 bytes each way
    data = bytes(range(255))
    resp, peer = both(h("80 EE 00 00 FF") + data + h("00"), auto=True)
    assert resp == data + h("90 00") and peer.tpdus[-1] == h("00 C0 00 00 FF")
    # a case-4 command that fails: its status word, no GET RESPONSE
    resp, peer = both(h("00 A4 00 00 02 2F 09 00"), auto=True)
    assert resp == h("6A 82") and len(peer.tpdus) == 1


def test_case4_options_at_character_level():
    r = T0Reader(auto_get_response=True)
    for options in ({"byte_by_byte": True}, {"byte_by_byte": 2, "null_bytes": 1}, {"null_bytes": 5}):
        p = Peer(**options)
        assert r.transceive_chars(h("80 EE 00 00 04 0A 0B 0C 0D 00"), p.char_link) == h("0A 0B 0C 0D 90 00")
    p = Peer(byte_by_byte=True)
    r.transceive_chars(h("80 EE 00 00 02 0A 0B 00"), p.char_link)
    # header, then one data byte after each ~INS, then the GET RESPONSE header
    assert p.chars == [h("80 EE 00 00 02"), h("0A"), h("0B"), h("00 C0 00 00 02")]


def test_extended_apdus_via_envelope():
    # 4E: a 4 KiB echo
    apdu = CommandAPDU(0x80, 0xEE, 0, 0, DATA4K, ne=65536).to_bytes()
    resp, peer = both(apdu)
    assert resp == DATA4K + h("90 00")
    # 4 + 3 + 4096 + 2 = 4105 bytes: 16 chained segments of 255 and a last one of 25
    envelopes = peer.tpdus[:17]
    for t in envelopes[:16]:
        assert t[:5] == h("10 C2 00 00 FF")
    assert envelopes[16][:5] == h("00 C2 00 00 19")
    joined = b""
    for t in envelopes:
        joined += t[5:]
    assert joined == apdu
    assert peer.tpdus[17:] == [h("00 C0 00 00 00")] * 16
    assert peer.card.count(0xEE) == 1
    # 2E: READ BINARY of the 4 KiB EF in one command
    p = Peer()
    r = T0Reader()
    assert r.transceive(h("00 A4 00 0C 02 2F 01"), p.tpdu_link) == h("90 00")
    assert r.transceive(h("00 B0 00 00 00 00 00"), p.tpdu_link) == EF4K + h("90 00")
    assert p.tpdus[1] == h("00 C2 00 00 07 00 B0 00 00 00 00 00")
    # 2E with an Ne that is not a multiple of 256: the last GET RESPONSE asks for the rest
    p.tpdus = []
    assert r.transceive(h("00 B0 00 00 00 01 2C"), p.tpdu_link) == EF4K[:300] + h("90 00")
    assert p.tpdus[1:] == [h("00 C0 00 00 00"), h("00 C0 00 00 2C")]
    # 3E: no response data
    resp, peer = both(CommandAPDU(0x80, 0xEE, 0, 0, bytes(300)).to_bytes())
    assert resp == h("90 00") and len(peer.tpdus) == 2
    # a card without ENVELOPE refuses the first segment
    resp, peer = both(apdu, envelope=False)
    assert resp == h("6D 00") and len(peer.tpdus) == 1


def test_extended_at_character_level_with_procedure_options():
    apdu = CommandAPDU(0x80, 0xEE, 0, 0, DATA4K[:600], ne=600).to_bytes()
    for options in ({"null_bytes": 1}, {"byte_by_byte": 3}):
        p = Peer(**options)
        assert T0Reader().transceive_chars(apdu, p.char_link) == DATA4K[:600] + h("90 00")


def test_command_chaining_through_t0():
    p = Peer()
    r = T0Reader(auto_get_response=True)
    resp = None
    for piece in chain(CommandAPDU(0x80, 0xEE, 0, 0, DATA4K[:300], ne=300)):
        resp = r.transceive(piece, p.tpdu_link)
    assert resp == DATA4K[:256] + h("61 2C")
    assert r.transceive(h("00 C0 00 00 2C"), p.tpdu_link) == DATA4K[256:300] + h("90 00")


def test_reader_errors():
    r = T0Reader(auto_get_response=True, max_rounds=4, wt_us=1000)
    table = (
        (lambda t, us: None, "TIMEOUT"),
        (lambda t, us: h("90"), "BAD_RESPONSE"),
        (lambda t, us: h("01 02 03"), "BAD_RESPONSE"),
        (lambda t, us: h("6C 00"), "TOO_MANY_ROUNDS"),
        (lambda t, us: h("01 61 01"), "TOO_MANY_ROUNDS"),
    )
    for link, name in table:
        with raises(T0Error) as e:
            r.transceive(h("00 B0 00 00 00"), link)
        assert e.value.name == name, name
    # 61xx rounds are bounded even when the card keeps sending data
    assert r.tpdus == 5
    with raises(T0Error) as e:
        r.transceive(h("00 6A 00 00"), lambda t, us: h("90 00"))
    assert e.value.name == "INVALID_INS"
    with raises(T0Error) as e:
        r.transceive(h("00 A4 00 00 05 01"), lambda t, us: h("90 00"))
    assert e.value.name == "BAD_APDU"
    # character level: a card waiting for data the reader will not send
    p = Peer()
    with raises(T0Error) as e:
        T0Reader().transceive_chars(h("00 A4 00 00 02"), p.char_link)
    assert e.value.name == "TIMEOUT"
    # and at TPDU level the same card is mute
    with raises(T0Error) as e:
        T0Reader().transceive(h("00 A4 00 00 02"), Peer().tpdu_link)
    assert e.value.name == "TIMEOUT"
    # a card sending garbage procedure bytes
    with raises(T0Error) as e:
        T0Reader().transceive_chars(h("00 B0 00 00 02"), lambda d, us: h("42"))
    assert e.value.name == "INVALID_PROCEDURE_BYTE" and e.value.code == 0x42
    # endless NULL bytes end with TOO_MANY_NULL
    with raises(T0Error) as e:
        T0Reader(max_null=10).transceive_chars(h("00 B0 00 00 02"), lambda d, us: h("60 60 60"))
    assert e.value.name == "TOO_MANY_NULL"
