"""Property tests of T=1: decoder totality, round trips, CRC against an
independent formulation, and the reader engine never hanging or raising
anything but T1Error whatever the card sends."""

from hypothesis import given, strategies as st

from ccidkit.core.t1 import (
    T1Error, T1Reader, Block, decode_block, crc16, i_block, r_block, s_block,
)
from ccidkit.emu.card.t1 import T1Card
from ccidkit.emu.card.link import FaultLink, Fault

EDCS = st.sampled_from(["LRC", "CRC"])


def crc_reference(data):
    """ISO/IEC 13239 CRC written the other way round: bit-reverse every byte,
    run the MSB-first CCITT register, bit-reverse and complement the result."""
    def rev(v, bits):
        out = 0
        for _ in range(bits):
            out = (out << 1) | (v & 1)
            v >>= 1
        return out
    c = 0xFFFF
    for b in data:
        c ^= rev(b, 8) << 8
        for _ in range(8):
            c = ((c << 1) ^ 0x1021) & 0xFFFF if c & 0x8000 else (c << 1) & 0xFFFF
    return rev(c, 16) ^ 0xFFFF


@given(st.binary(max_size=300))
def test_crc_matches_independent_formulation(data):
    assert crc16(data) == crc_reference(data)


@given(st.binary(max_size=300), EDCS)
def test_decoder_gives_block_or_t1error(data, edc):
    try:
        b = decode_block(data, edc)
    except T1Error as e:
        assert e.name in ("T1_EDC_ERROR", "T1_BAD_LEN", "T1_BAD_PCB", "T1_BAD_NAD")
        return
    assert isinstance(b, Block)
    assert b.encode(edc) == bytes(data)


nads = st.integers(0, 0xFE)
blocks = st.one_of(
    st.builds(i_block, st.integers(0, 1), st.booleans(), st.binary(max_size=254), nads),
    st.builds(r_block, st.integers(0, 1), st.integers(0, 2), nads),
    st.builds(lambda t, resp, v, nad: s_block(t, resp, bytes([v]) if t in (1, 3) else b"", nad),
              st.integers(0, 3), st.booleans(), st.integers(0, 255), nads),
)


@given(blocks, EDCS)
def test_encode_decode_round_trip(block, edc):
    data = block.encode(edc)
    assert len(data) == 3 + len(block.inf) + (1 if edc == "LRC" else 2)
    assert decode_block(data, edc) == block


# What a card may send: valid blocks of every kind, or noise.
card_blocks = st.one_of(
    blocks.map(lambda b: ("block", b)),
    st.binary(max_size=12).map(lambda d: ("raw", d)),
    st.just(("timeout", None)),
)


@given(st.lists(card_blocks, min_size=1, max_size=24), st.binary(min_size=1, max_size=40),
       st.integers(1, 16), EDCS)
def test_reader_fed_anything_terminates_with_value_or_t1error(script, apdu, ifsc, edc):
    r = T1Reader(ifsc=ifsc, edc=edc, max_retries=2, max_resynch=2, max_wtx=3, max_response=64)
    r.start(apdu)
    # progress events: <= 40 chunks out (IFSC can drop to 1), <= 65 blocks in;
    # between two of them at most 2 + 2 failures, 3 S-requests; then resynch.
    bound = (40 + 65 + 2) * (2 + 2 + 1) * (3 + 1) + 10
    steps = 0
    while r.busy:
        assert steps < bound
        bytes(r.block_to_send())
        assert r.wait_time_us() >= r.bwt_us
        kind, item = script[steps % len(script)]
        steps += 1
        try:
            if kind == "timeout":
                r.timeout()
            elif kind == "raw":
                r.receive(item)
            else:
                r.receive(item.encode(edc))
        except T1Error as e:
            assert e.name in ("T1_RESYNCH_FAILED", "T1_CARD_MUTE", "T1_RESYNCHED", "T1_ABORTED",
                              "T1_TOO_LONG", "T1_WTX_LIMIT")
            assert not r.busy
            return
    assert r.done
    assert len(r.response()) <= 64


@given(st.lists(st.binary(max_size=40), max_size=30), EDCS)
def test_card_engine_never_raises(blocks_in, edc):
    class Echo:
        def process_apdu(self, apdu):
            return bytes(apdu) + b"\x90\x00"
    card = T1Card(Echo(), ifsc=8, edc=edc)
    for data in blocks_in:
        ans = card.receive_block(data)
        assert ans is None or decode_block(ans, edc) is not None


FAULT_KINDS = ("corrupt", "lose", "bad_ns", "nad", "duplicate", "wtx", "ifs")
faults = st.builds(
    lambda kind, at, to, v: Fault(kind, at=at, to=to, value=v),
    st.sampled_from(FAULT_KINDS), st.integers(0, 40), st.sampled_from(["card", "reader"]),
    st.integers(1, 20),
)


@given(st.lists(faults, max_size=6), st.integers(1, 120), EDCS)
def test_random_faults_give_the_response_or_t1error_and_run_once(fault_list, size, edc):
    runs = []

    class Echo:
        def process_apdu(self, apdu):
            runs.append(bytes(apdu))
            return bytes(apdu) + b"\x90\x00"
    card = T1Card(Echo(), ifsc=16, edc=edc)
    r = T1Reader(ifsc=16, edc=edc)
    apdu = bytes((i * 7) & 0xFF for i in range(size))
    link = FaultLink(card, fault_list)
    try:
        resp = r.transceive(apdu, link)
    except T1Error as e:
        assert e.name in ("T1_RESYNCH_FAILED", "T1_CARD_MUTE", "T1_RESYNCHED")
        assert len(runs) <= 1
        return
    assert resp == apdu + b"\x90\x00"
    assert runs == [apdu]


@given(st.lists(faults, max_size=2), st.integers(1, 120), EDCS)
def test_up_to_two_faults_always_recover(fault_list, size, edc):
    # two incidents never exhaust max_retries = 3: the exchange must succeed
    runs = []

    class Echo:
        def process_apdu(self, apdu):
            runs.append(bytes(apdu))
            return bytes(apdu) + b"\x90\x00"
    card = T1Card(Echo(), ifsc=16, edc=edc)
    r = T1Reader(ifsc=16, edc=edc)
    apdu = bytes((i * 5) & 0xFF for i in range(size))
    assert r.transceive(apdu, FaultLink(card, fault_list)) == apdu + b"\x90\x00"
    assert runs == [apdu]
    assert r.transceive(b"\x01\x02\x03\x04", FaultLink(card)) == b"\x01\x02\x03\x04\x90\x00"
