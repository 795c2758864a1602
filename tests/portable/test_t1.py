"""T=1 (ISO/IEC 7816-3 §11): block codec, reader engine rule by rule, card side.

Clause numbers are those of ISO/IEC 7816-3:2006 §11.6.3 as listed in the
docstring of core/t1.py.
"""

from support import h, raises

from ccidkit.core import iso7816
from ccidkit.core.t1 import (
    T1Error, T1Reader, Block, decode_block, check_block, lrc, crc16, put_edc,
    i_block, r_block, s_block, mirror_nad, make_nad,
    S_IFS, S_WTX, S_ABORT, S_RESYNCH, R_EDC_ERROR, R_OTHER_ERROR,
)
from ccidkit.emu.card.t1 import T1Card
from ccidkit.emu.card.link import FaultLink, Fault, direct_link


def blk(text, edc="LRC"):
    """A block from its prologue + INF in hex; the EDC is appended."""
    data = bytearray(h(text))
    data.extend(b"\x00\x00" if edc == "CRC" else b"\x00")
    put_edc(data, len(data) - (2 if edc == "CRC" else 1), edc)
    return bytes(data)


def sent(r):
    return bytes(r.block_to_send())


class Echo:
    """A tiny card: answers the data field of any case-3/4 APDU + 90 00."""

    def __init__(self):
        self.count = 0

    def process_apdu(self, apdu):
        self.count += 1
        if len(apdu) > 7 and apdu[4] == 0:
            n = (apdu[5] << 8) | apdu[6]
            return bytes(apdu[7:7 + n]) + b"\x90\x00"
        if len(apdu) > 5:
            return bytes(apdu[5:5 + apdu[4]]) + b"\x90\x00"
        return b"\x90\x00"


def echo_apdu(data):
    n = len(data)
    if n < 256:
        return b"\x80\xEE\x00\x00" + bytes((n,)) + data + b"\x00"
    return b"\x80\xEE\x00\x00\x00" + bytes((n >> 8, n & 0xFF)) + data + b"\x00\x00"


# --- EDC ---------------------------------------------------------------------------------

def test_lrc_is_xor_of_the_block():
    assert lrc(h("00 00 04 00 A4 04 00")) == 0xA4
    assert lrc(b"") == 0
    assert lrc(h("12 34 56"), 1) == 0x34 ^ 0x56


def test_crc_iso13239_known_vectors_and_byte_order():
    # CRC-16 of ISO/IEC 13239: reflected 0x8408, preset FFFF, complemented.
    assert crc16(b"123456789") == 0x906E
    assert crc16(h("00 00 00")) == 0xC6CC
    assert crc16(b"") == 0x0000
    # sent low byte first
    assert Block(0, 0, h("00 00 00")).encode("CRC")[-2:] == crc16(h("00 00 03 00 00 00")).to_bytes(2, "little")
    b = Block(0x00, 0x00, b"123456789")
    e = b.encode("CRC")
    assert len(e) == 3 + 9 + 2
    c = crc16(e, 0, 12)
    assert e[12] == c & 0xFF and e[13] == c >> 8
    assert decode_block(e, "CRC") == b
    # a single flipped bit anywhere is caught
    for i in range(len(e)):
        bad = bytearray(e)
        bad[i] ^= 0x01
        with raises(T1Error):
            decode_block(bytes(bad), "CRC")


# --- block codec -------------------------------------------------------------------------

def test_encode_exact_bytes():
    assert i_block(0, False, h("00 A4 04 00")).encode() == h("00 00 04 00 A4 04 00 A4")
    assert i_block(1, True, h("01")).encode() == h("00 60 01 01 60")
    assert r_block(1).encode() == h("00 90 00 90")
    assert r_block(0, R_EDC_ERROR).encode() == h("00 81 00 81")
    assert r_block(1, R_OTHER_ERROR).encode() == h("00 92 00 92")
    assert s_block(S_IFS, False, b"\xFE").encode() == h("00 C1 01 FE 3E")
    assert s_block(S_IFS, True, b"\x20").encode() == h("00 E1 01 20 C0")
    assert s_block(S_WTX, True, b"\x02").encode() == h("00 E3 01 02 E0")
    assert s_block(S_RESYNCH).encode() == h("00 C0 00 C0")
    assert s_block(S_ABORT, True).encode() == h("00 E2 00 E2")
    assert i_block(0, False, b"", nad=0x12).encode() == h("12 00 00 12")


def test_decode_fields_and_names():
    b = decode_block(blk("21 60 02 90 00"))
    assert b.kind == "I" and b.ns == 1 and b.more and b.nad == 0x21 and b.inf == h("90 00")
    assert b.name() == "I(1,1)"
    assert decode_block(h("00 91 00 91")).name() == "R(1)[EDC]"
    assert decode_block(h("00 82 00 82")).name() == "R(0)[OTHER]"
    w = decode_block(h("00 C3 01 05 C7"))
    assert w.kind == "S" and w.stype == S_WTX and not w.response and w.inf == b"\x05"
    assert w.name() == "S(WTX request)"
    assert decode_block(h("00 E0 00 E0")).name() == "S(RESYNCH response)"
    for b in (i_block(1, False, bytes(range(254))), r_block(0, R_OTHER_ERROR, 0x34),
              s_block(S_ABORT), s_block(S_IFS, True, b"\x80", 0x07)):
        for edc in ("LRC", "CRC"):
            assert decode_block(b.encode(edc), edc) == b


def test_decode_rejects_with_named_errors():
    cases = (
        (b"", "T1_BAD_LEN"),
        (h("00 00 00"), "T1_BAD_LEN"),
        (h("00 00 FF FF"), "T1_BAD_LEN"),                 # LEN FF (EDC fine)
        (blk("00 00 FF"), "T1_BAD_LEN"),
        (blk("00 00 03 01 02"), "T1_BAD_LEN"),            # LEN says 3, 2 follow
        (blk("00 00 01 01 02"), "T1_BAD_LEN"),            # LEN says 1, 2 follow
        (h("00 00 01 01 02"), "T1_EDC_ERROR"),            # wrong LRC
        (blk("FF 00 00"), "T1_BAD_NAD"),
        (blk("00 01 00"), "T1_BAD_PCB"),                  # I-block, reserved bit
        (blk("00 A0 00"), "T1_BAD_PCB"),                  # R-block, b6 set
        (blk("00 83 00"), "T1_BAD_PCB"),                  # R-block error code 3
        (blk("00 80 01 00"), "T1_BAD_LEN"),               # R-block with INF
        (blk("00 C4 00"), "T1_BAD_PCB"),                  # unknown S type
        (blk("00 C1 00"), "T1_BAD_LEN"),                  # S(IFS) without INF
        (blk("00 C0 01 00"), "T1_BAD_LEN"),               # S(RESYNCH) with INF
    )
    for data, name in cases:
        with raises(T1Error) as r:
            decode_block(data)
        assert r.value.name == name, (data, r.value.name)
    with raises(T1Error) as r:
        check_block(h("00 00 00 00 00"), "CRC")
    assert r.value.name == "T1_EDC_ERROR"
    with raises(T1Error):
        i_block(0, False, bytes(255)).encode()


def test_nad_helpers():
    assert make_nad(1, 2) == 0x12
    assert mirror_nad(0x12) == 0x21
    assert mirror_nad(0x89) == 0x10       # bits 8 and 4 are not addresses
    with raises(T1Error):
        make_nad(8, 0)


def test_waiting_times_from_iso7816():
    r = T1Reader(bwi=4, cwi=13, fi=372, di=1, clock_hz=4000000)
    assert r.bwt_us == int(iso7816.bwt_us(4, 372, 1, 4000000) + 0.999)
    assert 1428000 < r.bwt_us < 1430000
    assert r.cwt_us == int(iso7816.cwt_etu(13) * iso7816.etu_us(372, 1, 4000000) + 0.999)
    assert r.wait_time_us() == r.bwt_us
    r2 = T1Reader(bwi=1, cwi=5, fi=512, di=32, clock_hz=4000000)
    assert r2.bwt_us < r.bwt_us and r2.cwt_us == int(43 * 4 + 0.999)


# --- reader engine, rule by rule -----------------------------------------------------------

def test_rule_1_first_block_is_i0_or_s():
    # §11.6.3.1 rule 1
    r = T1Reader()
    r.start(h("00 A4 00 00"))
    assert sent(r) == h("00 00 04 00 A4 00 00 A0")
    r2 = T1Reader(ifsd=254)
    r2.start_ifsd()
    assert sent(r2) == h("00 C1 01 FE 3E")


def test_rule_2_i_blocks_alternate_and_acknowledge():
    # §11.6.3.1 rule 2
    r = T1Reader()
    r.start(h("00 B0 00 00 02"))
    assert sent(r)[1] == 0x00
    r.receive(blk("00 00 04 AA BB 90 00"))
    assert r.done and r.response() == h("AA BB 90 00")
    r.start(h("00 B0 00 00 02"))
    assert sent(r)[1] == 0x40                 # I(1,0)
    with raises(T1Error) as e:                # the card must now use N(S) = 1 ...
        for _ in range(8):
            r.receive(blk("00 00 02 90 00"))
            assert sent(r) == h("00 92 00 92") or sent(r) == h("00 C0 00 C0")
    assert e.value.name == "T1_RESYNCH_FAILED"
    r.reset()
    r.start(h("00 B0 00 00 02"))
    r.receive(blk("00 00 02 90 00"))
    r.start(h("00 B0 00 00 02"))
    r.receive(blk("00 40 02 90 00"))          # ... and it did
    assert r.response() == h("90 00") and r.ns == 0 and r.nr == 0


def test_rule_3_wtx_echoed_and_applies_to_next_block_only():
    # §11.6.3.1 rule 3
    r = T1Reader()
    bwt = r.bwt_us
    r.start(h("00 B0 00 00 00"))
    r.receive(blk("00 C3 01 05"))
    assert sent(r) == h("00 E3 01 05 E7")
    assert r.wait_time_us() == 5 * bwt
    r.receive(blk("00 C3 01 02"))
    assert sent(r) == h("00 E3 01 02 E0") and r.wait_time_us() == 2 * bwt
    r.receive(blk("00 00 02 90 00"))
    assert r.done and r.wtx_requests == 2
    r.start(h("00 B0 00 00 00"))
    assert r.wait_time_us() == bwt


def test_rule_3_wtx_storm_is_bounded():
    # §11.6.3.1 rule 3 with a bound of our own (libccid waits forever)
    r = T1Reader(max_wtx=4)
    r.start(h("00 B0 00 00 00"))
    for _ in range(4):
        r.receive(blk("00 C3 01 01"))
    with raises(T1Error) as e:
        r.receive(blk("00 C3 01 01"))
    assert e.value.name == "T1_WTX_LIMIT"
    assert not r.busy


def test_rule_4_ifsd_negotiation_and_ifsc_change_mid_chain():
    # §11.6.3.1 rule 4
    r = T1Reader(ifsc=32, ifsd=200)
    assert r.ifsd == 32
    r.start_ifsd()
    assert sent(r) == h("00 C1 01 C8 08")
    r.receive(blk("00 E1 01 C8"))
    assert r.done and r.ifsd == 200
    data = bytes(range(100))
    r.start(data)
    first = sent(r)
    assert first[1] == 0x20 and first[2] == 32            # I(0,1), 32 bytes
    r.receive(blk("00 C1 01 10"))                         # card: IFSC 16
    assert sent(r) == h("00 E1 01 10 F0") and r.ifsc == 16
    r.receive(blk("00 90 00"))                            # R(1): chunk 1 acknowledged
    nxt = sent(r)
    assert nxt[1] == 0x60 and nxt[2] == 16 and bytes(nxt[3:19]) == data[32:48]
    # an invalid IFSC offer is an invalid block
    r.receive(blk("00 C1 01 FF"))
    assert sent(r) == h("00 82 00 82")


def test_rule_4_ifs_response_must_echo():
    # §11.6.3.1 rule 4, §11.6.3.2 rule 7.3
    r = T1Reader(ifsd=254)
    r.start_ifsd()
    r.receive(blk("00 E1 01 20"))                         # wrong value
    assert sent(r) == h("00 C1 01 FE 3E")
    r.receive(blk("00 E1 01 FE"))
    assert r.ifsd == 254


def test_rule_5_chaining_both_directions():
    # §11.6.3.1 rule 5
    r = T1Reader(ifsc=10)
    r.ifsd = 4
    apdu = bytes(range(25))
    r.start(apdu)
    got = []
    b = sent(r)
    got.append(b)
    assert b[1] == 0x20 and b[2] == 10
    r.receive(blk("00 90 00"))
    b = sent(r)
    got.append(b)
    assert b[1] == 0x60 and b[2] == 10
    r.receive(blk("00 80 00"))
    b = sent(r)
    got.append(b)
    assert b[1] == 0x00 and b[2] == 5                    # last: M = 0
    assert b"".join(bytes(g[3:3 + g[2]]) for g in got) == apdu
    r.receive(blk("00 20 04 01 02 03 04"))               # card chains: I(0,1)
    assert sent(r) == h("00 90 00 90")                   # R(1)
    r.receive(blk("00 60 04 05 06 07 08"))
    assert sent(r) == h("00 80 00 80")                   # R(0)
    r.receive(blk("00 00 02 90 00"))
    assert r.response() == h("01 02 03 04 05 06 07 08 90 00")
    # a card I-block longer than IFSD is invalid
    r.start(b"\x00")
    r.receive(blk("00 40 05 01 02 03 04 05"))
    assert sent(r) == h("00 92 00 92")


def test_rule_6_resynch_resets_both_ends():
    # §11.6.3.2 rule 6: after S(RESYNCH response) N(S) = 0, IFSC from ATR, IFSD 32
    r = T1Reader(ifsc=40, ifsd=254, max_retries=1)
    r.start_ifsd()
    r.receive(blk("00 E1 01 FE"))
    r.start(h("00 B0 00 00 00"))
    r.receive(blk("00 C1 01 10"))
    r.receive(blk("00 00 02 90 00"))
    assert r.ifsc == 16 and r.ifsd == 254 and r.ns == 1 and r.nr == 1
    r.start(h("00 B0 00 00 00"))
    r.timeout()
    assert sent(r) == h("00 92 00 92")                    # R(1), other error
    r.timeout()
    assert sent(r) == h("00 C0 00 C0")                    # S(RESYNCH request)
    with raises(T1Error) as e:
        r.receive(blk("00 E0 00"))
    assert e.value.name == "T1_RESYNCHED"
    assert r.ns == 0 and r.nr == 0 and r.ifsc == 40 and r.ifsd == 32
    # on purpose, through a card engine
    card = T1Card(Echo(), ifsc=40)
    card.ifsd = 254
    card.queue_wtx(3)
    r.resynch(direct_link(card))
    assert card.resynchs == 1 and card.ifsd == 32 and card._queue == []


def test_rule_6_resynch_failure_gives_up():
    # §11.6.3.2 rule 6 (bounded S(RESYNCH request)s, then warm reset)
    r = T1Reader(max_retries=2, max_resynch=3)
    r.start(h("00 B0 00 00 00"))
    blocks = []
    with raises(T1Error) as e:
        for _ in range(20):
            blocks.append(sent(r))
            r.receive(h("00 00 02 90 00 00"))            # always a bad LRC
    assert e.value.name == "T1_RESYNCH_FAILED"
    assert blocks[1:3] == [h("00 81 00 81")] * 2
    assert blocks[3:] == [h("00 C0 00 C0")] * 3
    assert not r.busy
    with raises(T1Error) as u:
        r.block_to_send()
    assert u.value.name == "T1_USAGE"


def test_rule_7_1_invalid_block_gets_r_block_with_error_bits():
    # §11.6.3.2 rule 7.1
    for bad, want in ((h("00 00 02 90 00 00"), h("00 81 00 81")),    # EDC
                      (blk("00 00 FF"), h("00 82 00 82")),           # LEN FF
                      (blk("00 00 05 90 00"), h("00 82 00 82")),     # LEN mismatch
                      (blk("00 1F 00"), h("00 82 00 82")),           # bad PCB
                      (blk("21 00 02 90 00"), h("00 82 00 82"))):    # NAD not mirrored
        r = T1Reader()
        r.start(h("00 B0 00 00 00"))
        r.receive(bad)
        assert sent(r) == want, bad
        r.receive(blk("00 00 02 90 00"))
        assert r.response() == h("90 00")


def test_rule_7_2_invalid_after_r_block_resends_it():
    # §11.6.3.2 rule 7.2
    r = T1Reader()
    r.start(h("00 B0 00 00 00"))
    r.receive(blk("00 20 01 AA"))
    ack = sent(r)
    assert ack == h("00 90 00 90")
    r.receive(h("00 40 01 BB 00"))                       # corrupted
    assert sent(r) == h("00 91 00 91")                   # R(1) again, EDC error noted
    r.receive(blk("00 80 00"))                           # an R-block where I was due
    assert sent(r) == h("00 92 00 92")
    r.receive(blk("00 40 03 BB 90 00"))
    assert r.response() == h("AA BB 90 00")


def test_rule_7_3_invalid_after_s_request_resends_it():
    # §11.6.3.2 rule 7.3
    r = T1Reader(ifsd=100)
    r.start_ifsd()
    req = sent(r)
    r.timeout()
    assert sent(r) == req
    r.receive(blk("00 00 00"))
    assert sent(r) == req
    r.receive(blk("00 E1 01 64"))
    assert r.ifsd == 100 and r.retransmissions == 2


def test_rule_7_4_bounded_retries_then_resynch():
    # §11.6.3.2 rule 7.4
    r = T1Reader(max_retries=3)
    r.start(h("00 B0 00 00 00"))
    seen = []
    for _ in range(4):
        r.timeout()
        seen.append(sent(r))
    assert seen == [h("00 82 00 82")] * 3 + [h("00 C0 00 C0")]
    assert r.resynchs == 1


def test_rule_7_5_r_block_asking_for_last_i_block_retransmits_it():
    # §11.6.3.2 rule 7.5
    r = T1Reader()
    r.start(h("00 A4 04 00 02 3F 00"))
    first = sent(r)
    r.receive(blk("00 81 00"))                            # R(0) with EDC error
    assert sent(r) == first and r.retransmissions == 1
    r.receive(blk("00 80 00"))                            # R(0) without error bits
    assert sent(r) == first
    r.receive(blk("00 00 02 90 00"))
    assert r.done


def test_rule_7_6_timeout_is_an_invalid_block():
    # §11.6.3.2 rule 7.6
    r = T1Reader()
    r.start(h("00 B0 00 00 00"))
    r.timeout()
    assert sent(r) == h("00 82 00 82") and r.timeouts == 1
    r.receive(blk("00 00 02 90 00"))
    assert r.response() == h("90 00")


def test_rule_8_resynch_request_from_the_card_is_invalid():
    # §11.6.3.2 rule 8
    r = T1Reader()
    r.start(h("00 B0 00 00 00"))
    r.receive(blk("00 C0 00"))
    assert sent(r) == h("00 82 00 82")


def test_rule_9_abort_by_card_by_reader_and_too_long():
    # §11.6.3.2 rule 9
    r = T1Reader(ifsc=4)
    r.start(bytes(10))
    r.receive(blk("00 90 00"))
    r.receive(blk("00 C2 00"))                            # card: S(ABORT request)
    assert sent(r) == h("00 E2 00 E2")
    with raises(T1Error) as e:
        r.receive(blk("00 90 00"))
    assert e.value.name == "T1_ABORTED"
    # reader-initiated
    r = T1Reader(ifsc=4)
    r.start(bytes(10))
    r.start_abort()
    assert sent(r) == h("00 C2 00 C2")
    with raises(T1Error) as e:
        r.receive(blk("00 E2 00"))
    assert e.value.name == "T1_ABORTED"
    # a response longer than allowed
    r = T1Reader(max_response=3)
    r.start(h("00 B0 00 00 00"))
    r.receive(blk("00 20 02 01 02"))
    r.receive(blk("00 60 02 03 04"))
    assert sent(r) == h("00 C2 00 C2")
    with raises(T1Error) as e:
        r.receive(blk("00 E2 00"))
    assert e.value.name == "T1_TOO_LONG"


def test_rule_10_unexpected_blocks_are_invalid():
    # §11.6.3.2 rule 10 (and rule 7.1 for the answer)
    r = T1Reader()
    r.start(h("00 B0 00 00 00"))
    r.receive(blk("00 40 02 90 00"))                      # N(S) 1, expected 0
    assert sent(r) == h("00 82 00 82")
    r.receive(blk("00 90 00"))                            # acknowledges an unchained block
    assert sent(r) == h("00 82 00 82")
    r.receive(blk("00 E3 01 01"))                         # unsolicited S(WTX response)
    assert sent(r) == h("00 82 00 82")
    r.timeout()
    assert sent(r) == h("00 C0 00 C0")                    # 4th failure: resynch (rule 7.4)
    r = T1Reader(ifsc=4)
    r.start(bytes(10))
    r.receive(blk("00 00 02 90 00"))                      # I-block where R(1) was due
    assert sent(r) == h("00 82 00 82")


def test_usage_errors():
    r = T1Reader()
    with raises(T1Error) as e:
        r.start(b"")
    assert e.value.name == "T1_USAGE"
    with raises(T1Error):
        r.response()
    with raises(T1Error):
        r.timeout()
    r.start(b"\x00\x00\x00\x00")
    with raises(T1Error):
        r.start(b"\x00\x00\x00\x00")
    with raises(T1Error):
        T1Reader(edc="XOR")
    with raises(T1Error):
        T1Reader(ifsc=255)


# --- the reader against the card engine ------------------------------------------------------

def test_exchange_with_card_engine_lrc_and_crc():
    for edc in ("LRC", "CRC"):
        echo = Echo()
        card = T1Card(echo, ifsc=32, edc=edc)
        link = FaultLink(card, record=True)
        r = T1Reader(ifsc=32, edc=edc)
        data = bytes(range(200))
        assert r.transceive(echo_apdu(data), link) == data + h("90 00")
        assert echo.count == 1 and card.apdus == 1
        # 206 bytes out at IFSC 32: 7 blocks, 200 + 2 back at IFSD 32: 7 blocks
        assert link.calls == 7 + 6
        sizes = [b[2] for d, b in link.log if d == "->"]
        assert sizes == [32] * 6 + [14] + [0] * 6
        assert r.negotiate_ifsd(link) == 254 and card.ifsd == 254
        link.log = []
        assert r.transceive(echo_apdu(data), link) == data + h("90 00")
        assert [b[2] for d, b in link.log if d == "<-"] == [0] * 6 + [202]


def test_card_side_blocks():
    echo = Echo()
    card = T1Card(echo, ifsc=8)
    # chained command: acknowledged with R(N(R)) (rule 5)
    assert card.receive_block(blk("00 20 08 80 EE 00 00 05 01 02 03")) == h("00 90 00 90")
    # a repeat of that block (N(S) 0 again) is a bad N(S): R(1) other error
    assert card.receive_block(blk("00 20 08 80 EE 00 00 05 01 02 03")) == h("00 92 00 92")
    # an I-block over IFSC is refused
    assert card.receive_block(blk("00 40 09 00 00 00 00 00 00 00 00 00")) == h("00 92 00 92")
    ans = card.receive_block(blk("00 40 03 04 05 00"))
    assert ans == blk("00 00 07 01 02 03 04 05 90 00") and echo.count == 1
    # the reader did not get it: R(0) -> the same block again (rule 7.5)
    assert card.receive_block(blk("00 80 00")) == ans and card.retransmitted == 1
    # corrupted block from the reader -> R-block with EDC error (rule 7.1)
    assert card.receive_block(h("00 00 01 00 00")) == h("00 81 00 81")
    # S(IFS request) from the reader
    assert card.receive_block(blk("00 C1 01 03")) == h("00 E1 01 03 E3")
    ans = card.receive_block(blk("00 00 06 80 EE 00 00 01 09"))
    assert ans == blk("00 40 03 09 90 00")
    # S(WTX request) from the reader is not allowed
    assert card.receive_block(blk("00 C3 01 01")) == h("00 92 00 92")
    # S(RESYNCH request)
    assert card.receive_block(blk("00 C0 00")) == h("00 E0 00 E0") and card.ifsd == 32


def test_card_side_scripted_s_requests():
    echo = Echo()
    card = T1Card(echo)
    card.queue_wtx(4, 2)
    card.queue_ifs(20)
    assert card.receive_block(blk("00 00 05 00 B0 00 00 00")) == h("00 C3 01 04 C6")
    assert card.receive_block(blk("00 80 00")) == h("00 C3 01 04 C6")     # rule 7.3 at the card
    assert card.receive_block(blk("00 E3 01 04")) == h("00 C3 01 04 C6")
    assert card.receive_block(blk("00 E3 01 04")) == h("00 C1 01 14 D4")
    assert card.receive_block(blk("00 E1 01 14")) == h("00 00 02 90 00 92")
    assert card.ifsc == 20 and card.wtx_sent == 2 and card.ifs_sent == 1


def test_nad_addressing_and_routing():
    a = Echo()
    b = Echo()
    card = T1Card({0x12: a, 0x13: b})
    r = T1Reader(nad=0x12)
    link = FaultLink(card, record=True)
    assert r.transceive(echo_apdu(b"\x01\x02"), link) == h("01 02 90 00")
    assert link.log[0][1][0] == 0x12 and link.log[1][1][0] == 0x21
    assert r.transceive(echo_apdu(b"\x03"), link, nad=0x13) == h("03 90 00")
    assert link.log[3][1][0] == 0x31
    assert a.count == 1 and b.count == 1 and card.apdus_by_nad == {0x12: 1, 0x13: 1}
    # nobody behind NAD 0x14: the card stays silent, the reader gives up
    with raises(T1Error) as e:
        r.transceive(echo_apdu(b"\x04"), link, nad=0x14)
    assert e.value.name == "T1_CARD_MUTE" and card.silent > 0


def test_minicard_echo_over_t1():
    from ccidkit.emu.card.minicard import MiniCard
    mc = MiniCard()
    card = T1Card(mc, ifsc=32)
    r = T1Reader(ifsc=32)
    link = direct_link(card)
    assert r.negotiate_ifsd(link) == 254
    data = bytes((i * 13) & 0xFF for i in range(300))
    assert r.transceive(echo_apdu(data), link) == data + h("90 00")
    assert r.transceive(h("00 A4 00 0C 02 2F 00"), link) == h("90 00")
    assert r.transceive(h("00 B0 00 00 04"), link) == h("00 01 02 03 90 00")
    assert mc.count(0xEE) == 1 and card.apdus == 3
