"""Properties of the APDU codec and the T=0 engines on arbitrary input."""

from hypothesis import given, strategies as st

from ccidkit.core.apdu import (APDUError, CommandAPDU, ResponseAPDU, explain_sw,
                               transmit_with_auto_response)
from ccidkit.core.t0 import ProcedureEngine, T0Error, T0Reader
from ccidkit.emu.card.minicard import MiniCard
from ccidkit.emu.card.t0 import T0Card

byte = st.integers(0, 255)


def apdu_like():
    """Bytes near the APDU encodings, so that parse sees valid and broken ones."""
    head = st.binary(min_size=4, max_size=4)
    tails = st.one_of(
        st.binary(max_size=12),
        st.tuples(byte, st.binary(max_size=260)).map(lambda t: bytes([t[0]]) + t[1]),
        st.tuples(st.integers(0, 300), st.binary(max_size=300), st.binary(max_size=3)).map(
            lambda t: b"\x00" + t[0].to_bytes(2, "big") + t[1] + t[2]),
        st.tuples(st.integers(1, 255), st.integers(-1, 2)).map(
            lambda t: bytes([t[0]]) + bytes(max(0, t[0] + t[1])) + b"\x00"),
    )
    return st.tuples(head, tails).map(lambda t: t[0] + t[1])


@given(st.one_of(st.binary(max_size=300), apdu_like()))
def test_command_parse_is_total_and_canonical(raw):
    try:
        cmd = CommandAPDU.parse(raw)
    except APDUError as e:
        assert e.name in ("APDU_TOO_SHORT", "BAD_LENGTH")
        return
    assert cmd.to_bytes() == raw
    assert cmd.case in (1, 2, 3, 4)


@given(st.binary(max_size=40))
def test_response_parse_is_total(raw):
    try:
        r = ResponseAPDU.parse(raw)
    except APDUError as e:
        assert len(raw) < 2 and e.name == "RESPONSE_TOO_SHORT"
        return
    assert r.to_bytes() == raw and r.sw == (raw[-2] << 8) | raw[-1]
    assert explain_sw(r.sw1, r.sw2).startswith("%02X %02X: " % (r.sw1, r.sw2))


@given(byte, byte, byte, byte,
       st.one_of(st.binary(max_size=300), st.integers(250, 70000).map(lambda n: bytes(n % 65536))),
       st.one_of(st.none(), st.integers(1, 65536), st.sampled_from((1, 255, 256, 257, 65535, 65536))),
       st.sampled_from((None, True, False)))
def test_build_then_parse_round_trips(cla, ins, p1, p2, data, ne, extended):
    try:
        cmd = CommandAPDU(cla, ins, p1, p2, data, ne=ne, extended=extended)
    except APDUError as e:
        assert e.name == "NOT_SHORT" and extended is False
        assert len(data) > 255 or ne > 256
        return
    raw = cmd.to_bytes()
    back = CommandAPDU.parse(raw)
    assert back == cmd
    assert back.data == data and back.ne == ne
    if extended is None:
        assert back.extended == (len(data) > 255 or (ne is not None and ne > 256))


@given(st.binary(min_size=0, max_size=12), st.one_of(st.none(), st.integers(0, 300)),
       st.lists(st.binary(max_size=20), max_size=30))
def test_procedure_engine_on_arbitrary_bytes(tpdu, ne, chunks):
    try:
        engine = ProcedureEngine(tpdu, ne=ne, max_null=20)
    except T0Error as e:
        assert e.name in ("BAD_TPDU", "INVALID_INS")
        return
    assert engine.data_to_send() == tpdu[:5]
    try:
        for chunk in chunks:
            engine.feed(chunk)
            engine.data_to_send()
    except T0Error as e:
        assert e.name in ("INVALID_PROCEDURE_BYTE", "TOO_MANY_NULL", "PROTOCOL", "UNEXPECTED_BYTES")
        assert engine.done and engine.result is None
        return
    if engine.done:
        sw1 = engine.result[-2]
        assert (sw1 & 0xF0) in (0x60, 0x90) and sw1 != 0x60


@given(st.binary(min_size=4, max_size=20), st.lists(st.binary(max_size=8), max_size=12),
       st.booleans())
def test_reader_on_arbitrary_answers(apdu, answers, auto):
    answers = list(answers)

    def link(tpdu, timeout_us):
        return answers.pop(0) if answers else None

    def char_link(data, timeout_us):
        return answers.pop(0) if answers else None

    reader = T0Reader(auto_get_response=auto, max_rounds=6, max_null=10)
    for run in (reader.transceive, reader.transceive_chars):
        try:
            resp = run(apdu, link if run == reader.transceive else char_link)
        except T0Error:
            continue
        assert len(resp) >= 2


@given(st.lists(st.binary(max_size=12), max_size=20))
def test_auto_response_helper_on_arbitrary_answers(answers):
    answers = list(answers)

    def transmit(cmd):
        return answers.pop(0) if answers else b"\x90\x00"

    try:
        resp = transmit_with_auto_response(b"\x00\xB0\x00\x00\x00", transmit, max_rounds=8)
    except APDUError as e:
        assert e.name in ("RESPONSE_TOO_SHORT", "TOO_MANY_ROUNDS")
        return
    assert len(resp) >= 2


@given(st.binary(max_size=300))
def test_minicard_never_raises(raw):
    card = MiniCard()
    resp = card.process_apdu(raw)
    assert len(resp) >= 2 and (resp[-2] & 0xF0) in (0x60, 0x90)


@given(st.lists(st.binary(max_size=270), max_size=6), st.booleans(),
       st.sampled_from((False, True, 2)), st.integers(0, 2))
def test_card_side_never_raises(chunks, tpdu_level, byte_by_byte, nulls):
    t0 = T0Card(MiniCard(), byte_by_byte=byte_by_byte, null_bytes=nulls)
    for chunk in chunks:
        if tpdu_level:
            resp = t0.process_tpdu(chunk)
            assert resp is None or len(resp) >= 2
        else:
            t0.feed(chunk)
            t0.data_to_send()


@given(st.binary(min_size=1, max_size=600), st.integers(1, 65536), st.booleans(),
       st.sampled_from(({}, {"byte_by_byte": True}, {"byte_by_byte": 1, "null_bytes": 1})))
def test_t0_echo_matches_the_card(data, ne, force_extended, options):
    """Over T=0 (auto GET RESPONSE), ECHO answers what the card answers directly."""
    cmd = CommandAPDU(0x80, 0xEE, 0, 0, data, ne=ne, extended=True if force_extended else None)
    direct = MiniCard().process_apdu(cmd.to_bytes())
    card_a = T0Card(MiniCard(), **options)
    card_b = T0Card(MiniCard(), **options)
    reader = T0Reader(auto_get_response=True)

    def char_link(d, timeout_us):
        if d:
            card_b.feed(d)
        return card_b.data_to_send() or None

    via_tpdu = reader.transceive(cmd, lambda t, us: card_a.process_tpdu(t))
    via_chars = reader.transceive_chars(cmd, char_link)
    assert via_tpdu == via_chars
    if ne >= len(data):
        assert via_tpdu == direct == data + b"\x90\x00"
    else:
        assert via_tpdu[:ne] == data[:ne] and via_tpdu[ne] == 0x61
