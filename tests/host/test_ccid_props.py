"""Properties of the CCID layer: arbitrary bytes give a value or CCIDError, whatever
decodes re-encodes to the very same bytes, and built messages survive encode/decode."""

import json
import struct

from hypothesis import given
from hypothesis import strategies as st

from ccidkit.core import ccid
from ccidkit.core import ccid_descriptor as cd
from ccidkit.core.ccid import CCIDError, CCIDMessage

BULK_TYPES = sorted(t for t in ccid.MESSAGE_NAMES if t >= 0x60)
u8 = st.integers(0, 255)
u16 = st.integers(0, 0xFFFF)
u32 = st.integers(0, 0xFFFFFFFF)


def _exercise(msg):
    """Every output path of a decoded message works."""
    assert all(isinstance(x, str) for x in msg.describe())
    assert all(isinstance(x, str) for x in msg.describe(redact=False))
    repr(msg)
    msg.fields()


@given(st.binary(max_size=120))
def test_decode_message_arbitrary_bytes(data):
    try:
        msg = ccid.decode_message(data)
    except CCIDError:
        return
    _exercise(msg)
    assert msg.to_bytes() == data


@st.composite
def framed(draw):
    """A header that frames its data right, for a random message type: gets past
    the length checks so the per-message decoding is what gets exercised."""
    t = draw(st.sampled_from(BULK_TYPES))
    data = draw(st.one_of(st.binary(max_size=40), st.just(b""),
                          st.binary(min_size=5, max_size=5), st.binary(min_size=7, max_size=7),
                          st.binary(min_size=8, max_size=8)))
    if t == ccid.PC_to_RDR_Secure and draw(st.booleans()):
        data = bytes((draw(st.integers(0, 7)),)) + data
    return struct.pack("<BIBB3s", t, len(data), draw(u8), draw(u8),
                       draw(st.binary(min_size=3, max_size=3))) + data


@given(framed())
def test_decode_framed_messages_reencode_exactly(wire):
    try:
        msg = ccid.decode_message(wire)
    except CCIDError:
        return
    _exercise(msg)
    assert msg.to_bytes() == wire
    assert ccid.decode_message(msg.to_bytes()) == msg


@given(st.binary(min_size=1, max_size=80), st.one_of(st.none(), st.integers(-5, 300)))
def test_notify_slot_change_arbitrary(payload, slots):
    data = b"\x50" + payload
    try:
        msg = ccid.decode_interrupt(data, slots)
    except CCIDError:
        return
    states = msg.states()
    assert len(states) == msg.slots and msg.to_bytes() == data
    rebuilt = ccid.NotifySlotChange.from_states([p for p, _ in states], [c for _, c in states])
    assert rebuilt.states() == states
    assert msg.changed_slots() == [i for i, (_, c) in enumerate(states) if c]


@given(st.lists(st.tuples(st.booleans(), st.booleans()), min_size=1, max_size=256))
def test_notify_slot_change_round_trip(states):
    msg = ccid.NotifySlotChange.from_states([p for p, _ in states], [c for _, c in states])
    assert len(msg.to_bytes()) == 1 + (2 * len(states) + 7) // 8
    assert ccid.decode_interrupt(msg.to_bytes(), len(states)).states() == states


@given(st.binary(max_size=90))
def test_descriptor_parser_arbitrary_bytes(data):
    try:
        d = cd.parse_ccid_descriptor(data)
    except CCIDError:
        return
    assert d.to_bytes() == bytes(data[:54])
    json.dumps(d.as_dict())
    assert all(isinstance(x, str) for x in d.describe())


@given(st.binary(min_size=54, max_size=54))
def test_descriptor_fields_land_at_their_offsets(raw):
    raw = bytes((54, 0x21)) + raw[2:]
    d = cd.parse_ccid_descriptor(raw)
    assert d.dwFeatures == struct.unpack_from("<I", raw, 40)[0]
    assert d.dwMaxCCIDMessageLength == struct.unpack_from("<I", raw, 44)[0]
    assert (d.bMaxSlotIndex, d.bPINSupport, d.bMaxCCIDBusySlots) == (raw[4], raw[52], raw[53])
    assert d.wLcdLayout == raw[50] | (raw[51] << 8)
    assert d.to_bytes() == raw


descriptor_chunk = st.one_of(
    st.binary(max_size=12),
    st.builds(lambda n, c, p: bytes((9, 4, n, 0, 3, c, 0, p, 0)), u8,
              st.sampled_from([0x0B, 0xFF, 0x03]), st.integers(0, 2)),
    st.builds(lambda a, t, m: struct.pack("<BBBBHB", 7, 5, a, t, m, 1), u8, u8, u16),
    st.builds(lambda t, body: bytes((54, t)) + body, st.sampled_from([0x21, 0xFF]),
              st.binary(min_size=52, max_size=52)),
    st.builds(lambda n, body: bytes((n, 0x21)) + body[:max(0, n - 2)], st.integers(0, 70),
              st.binary(min_size=68, max_size=68)),
)


@given(st.lists(descriptor_chunk, max_size=8))
def test_configuration_finder_arbitrary(chunks):
    data = bytes((9, 2, 0, 0, 1, 1, 0, 0x80, 50)) + b"".join(chunks)
    try:
        found = cd.find_ccid_interfaces(data)
    except CCIDError:
        return
    for d in found:
        assert d.bInterfaceClass in (0x0B, 0xFF)
        json.dumps(d.as_dict())
        d.describe()


def _message_strategy():
    def build(t, slot, seq, header, data, pds, pin):
        fields = {}
        layout = ccid._MESSAGES[t][1]
        for (name, size), value in zip(layout, header):
            fields[name] = value if name[:2] != "ab" else bytes(size)
            if size == 2 and name[:2] != "ab":
                fields[name] = value | (value << 8)
        if t in (0x61, 0x82):
            fields["bProtocolNum"] = pds.bProtocolNum
            fields["abProtocolDataStructure"] = pds
        elif t == 0x69:
            fields["wLevelParameter"] = 0
            fields["bPINOperation"] = 0 if isinstance(pin, ccid.PINVerification) else 1
            fields["abPINDataStructure"] = pin
        elif t in (0x73, 0x84):
            fields["dwClockFrequency"], fields["dwDataRate"] = data[0], data[1]
        elif ccid._FIXED_LENGTH.get(t, -1) < 0:
            fields["abData"] = data[2]
        return CCIDMessage(t, slot, seq, **fields)

    t0 = st.builds(ccid.T0Parameters, u8, u8, u8, u8, u8)
    t1 = st.builds(ccid.T1Parameters, u8, u8, u8, u8, u8, u8, u8)
    prologue = st.binary(min_size=3, max_size=3)
    verify = st.builds(ccid.PINVerification, u8, u8, u8, u8, u16, u8, u8, u16, u8, prologue,
                       st.binary(max_size=20))
    modify = st.builds(ccid.PINModification, u8, u8, u8, u8, u8, u8, u16, u8, u8,
                       st.sampled_from([0, 1, 2, 3, 0xFF, 7]), u16, u8, u8, u8, prologue,
                       st.binary(max_size=20))
    return st.builds(build, st.sampled_from(BULK_TYPES), u8, u8, st.tuples(u8, u8, u8),
                     st.tuples(u32, u32, st.binary(max_size=300)), st.one_of(t0, t1),
                     st.one_of(verify, modify))


@given(_message_strategy())
def test_encode_decode_round_trip(msg):
    wire = msg.to_bytes()
    back = ccid.decode_message(wire)
    assert back.to_bytes() == wire
    assert [n for n, _ in back.fields()] == [n for n, _ in msg.fields()]
    for (name, a), (_, b) in zip(back.fields(), msg.fields()):
        if hasattr(a, "to_bytes") and not isinstance(a, int):
            assert a.to_bytes() == b.to_bytes(), name
        else:
            assert a == b, name


def _in_messages():
    return st.lists(st.builds(lambda t, seq, data: CCIDMessage(
        t, 0, seq, abData=data).to_bytes(), st.sampled_from([0x80, 0x83]), u8,
        st.binary(max_size=200)), min_size=1, max_size=5)


@given(_in_messages(), st.lists(st.integers(1, 90), min_size=1, max_size=30))
def test_reassembler_stream_any_split(wires, cuts):
    stream = b"".join(wires)
    r = ccid.BulkInReassembler(max_packet_size=None)
    got = []
    pos = 0
    i = 0
    while pos < len(stream):
        step = cuts[i % len(cuts)]
        got.extend(m.to_bytes() for m in r.feed(stream[pos:pos + step]))
        pos += step
        i += 1
    assert got == wires and r.pending == 0


@given(_in_messages(), st.sampled_from([8, 16, 64, 512]), st.integers(1, 4))
def test_reassembler_usb_packets(wires, mps, per_read):
    r = ccid.BulkInReassembler(max_packet_size=mps)
    got = []
    for wire in wires:
        packets = [wire[i:i + mps] for i in range(0, len(wire), mps)]
        if len(wire) % mps == 0:
            packets.append(b"")                       # the zero-length packet
        for i in range(0, len(packets), per_read):     # several full packets in one read
            chunk = b"".join(packets[i:i + per_read])
            if chunk or i + per_read >= len(packets):
                got.extend(m.to_bytes() for m in r.feed(chunk))
    assert got == wires and r.pending == 0


in_header = st.builds(lambda t, n, rest: struct.pack("<BI", t, n) + rest,
                     st.sampled_from([0x80, 0x81, 0x82, 0x84, 0x6F]), st.integers(0, 20),
                     st.binary(max_size=30))


@given(st.lists(st.one_of(st.binary(max_size=80), in_header), max_size=12),
       st.sampled_from([None, 8, 64]))
def test_reassembler_arbitrary_reads(chunks, mps):
    r = ccid.BulkInReassembler(max_packet_size=mps, max_message_length=400)
    for c in chunks:
        try:
            for m in r.feed(c):
                assert m.to_bytes()[0] >= 0x80
        except CCIDError:
            assert r.pending == 0


@given(st.lists(st.tuples(st.sampled_from(["issue", "abort", "answer", "wtx", "stale",
                                           "forget"]), st.integers(0, 3), u8),
                max_size=60), st.sampled_from([None, 1, 2, 4]))
def test_seq_tracker_against_a_model(ops, max_busy):
    t = ccid.SeqTracker(max_busy=max_busy)
    model = {}
    for op, slot, seq in ops:
        try:
            if op in ("issue", "abort"):
                s = t.issue(slot, ccid.PC_to_RDR_Abort if op == "abort" else None)
                assert s not in model
                model[s] = slot
            elif op in ("answer", "wtx"):
                if not model:
                    continue
                s = sorted(model)[seq % len(model)]
                t.match(model[s], s, time_extension=(op == "wtx"))
                if op == "answer":
                    del model[s]
            elif op == "stale":
                t.match(slot, seq)
                assert model.get(seq) == slot
                del model[seq]
            else:
                if t.forget(slot, seq):
                    del model[seq]
        except CCIDError as e:
            assert e.name in ("CMD_SLOT_BUSY", "STALE_RESPONSE", "FOREIGN_RESPONSE")
        assert t.outstanding() == sorted((v, k) for k, v in model.items())
        if max_busy is not None:
            assert len(t.busy_slots()) <= max_busy


@given(st.binary(max_size=40))
def test_pin_structures_arbitrary_bytes(data):
    for cls in (ccid.PINVerification, ccid.PINModification):
        try:
            s = cls.from_bytes(data)
        except CCIDError:
            continue
        assert s.to_bytes() == data


@given(st.binary(max_size=40), st.one_of(st.none(), st.integers(0, 12)))
def test_dword_arrays(data, expected):
    try:
        values = ccid.parse_dword_array(data, expected)
    except CCIDError:
        return
    assert b"".join(struct.pack("<I", v) for v in values) == data[:4 * len(values)]
