"""Properties of the ATR and PPS decoders: arbitrary bytes give a value or the
layer's own error, well-formed input round-trips."""

import json
import os

from hypothesis import given
from hypothesis import strategies as st

from ccidkit.core import iso7816
from ccidkit.core.atr import ATRError, inverse_convention, parse_atr
from ccidkit.core.hexutil import HexError, from_hex
from ccidkit.core.pps import (PPSError, PPSResult, ReaderCaps, SpeedPolicy, build_pps_request,
                              parse_pps_response, pps_request_for)

SMARTCARD_LIST = "/usr/share/pcsc/smartcard_list.txt"


def _xor(data):
    x = 0
    for b in data:
        x ^= b
    return x


def _check_outputs(atr):
    d = atr.as_dict()
    json.dumps(d)
    lines = atr.explain()
    assert lines and all(isinstance(x, str) for x in lines)
    assert all(isinstance(w, str) for w in atr.warnings)
    assert d["protocols"] and 15 not in d["protocols"]
    return d


@given(st.binary(max_size=48))
def test_arbitrary_bytes_parse_or_atr_error(data):
    try:
        atr = parse_atr(data)
    except ATRError:
        return
    _check_outputs(atr)


@given(st.binary(min_size=1, max_size=40))
def test_arbitrary_bytes_after_a_good_ts(tail):
    for ts in (b"\x3b", b"\x3f", b"\x03"):
        _check_outputs(parse_atr(ts + tail))


@given(st.binary(max_size=40))
def test_inverse_convention_is_an_involution(data):
    assert inverse_convention(inverse_convention(data)) == data


@st.composite
def well_formed_atrs(draw):
    """(atr bytes, groups, protocols offered, historical) with a right TCK when due."""
    ngroups = draw(st.integers(1, 5))
    groups = []
    tds = []
    for i in range(ngroups):
        ta = draw(st.none() | st.integers(0, 255))
        tb = draw(st.none() | st.integers(0, 255))
        tc = draw(st.none() | st.integers(0, 255))
        groups.append([ta, tb, tc])
        if i < ngroups - 1:
            tds.append(draw(st.integers(0, 15)))
    hist = draw(st.binary(max_size=15))
    data = bytearray([0x3B, len(hist)])
    y_pos = 1  # the byte (T0, then TDi) whose high nibble announces group i
    for i, (ta, tb, tc) in enumerate(groups):
        y_bits = 0
        for bit, v in enumerate((ta, tb, tc)):
            if v is not None:
                y_bits |= 1 << bit
                data.append(v)
        if i < len(tds):
            y_bits |= 8
            data.append(tds[i])
        data[y_pos] |= y_bits << 4
        y_pos = len(data) - 1
    data.extend(hist)
    if any(t != 0 for t in tds):
        data.append(_xor(data[1:]))
    protos = []
    for t in tds:
        if t != 15 and t not in protos:
            protos.append(t)
    return bytes(data), groups, tds, protos or [0], hist


@given(well_formed_atrs())
def test_well_formed_atrs_round_trip(case):
    data, groups, tds, protos, hist = case
    atr = parse_atr(data)
    assert atr.bytes == data and atr.extra == b""
    assert atr.protocols == protos
    assert atr.historical == hist
    assert atr.td_protocols == tds
    for i, (ta, tb, tc) in enumerate(groups, 1):
        assert (atr.ta(i), atr.tb(i), atr.tc(i)) == (ta, tb, tc)
    if any(t != 0 for t in tds):
        assert atr.tck_ok is True and atr.tck == data[-1]
    else:
        assert atr.tck is None and atr.tck_ok is None
    assert not [w for w in atr.warnings if "TCK" in w or "truncated" in w or "extra" in w]
    d = _check_outputs(atr)
    if 1 in protos:
        assert d["ifsc"] is not None and d["edc"] in ("LRC", "CRC")
    else:
        assert d["ifsc"] is None and d["bwi"] is None and d["cwi"] is None and d["edc"] is None
    assert d["wi"] is not None or 0 not in protos


@given(well_formed_atrs())
def test_raw_inverse_line_gives_the_same_atr(case):
    data = case[0]
    inverse = b"\x3f" + data[1:]
    line = inverse_convention(inverse)
    assert line[0] == 0x03
    a = parse_atr(inverse).as_dict()
    b = parse_atr(line).as_dict()
    assert b["line_inverse"] is True and a["line_inverse"] is False
    for d in (a, b):
        del d["raw"]
        del d["line_inverse"]
    assert a == b and a["convention"] == "inverse"


@given(well_formed_atrs(), st.data())
def test_every_prefix_parses_with_a_warning(case, data):
    full = case[0]
    n = data.draw(st.integers(1, len(full) - 1))
    atr = parse_atr(full[:n])
    _check_outputs(atr)
    assert atr.warnings


@given(st.binary(max_size=8), st.binary(max_size=8))
def test_pps_response_arbitrary_bytes(request, response):
    try:
        r = parse_pps_response(request, response)
    except PPSError:
        return
    assert isinstance(r, PPSResult)


FI_VALUES = sorted(set(v for v in iso7816.FI_TABLE if v is not None))
DI_VALUES = sorted(set(v for v in iso7816.DI_TABLE if v is not None))


@given(st.integers(0, 14), st.none() | st.tuples(st.sampled_from(FI_VALUES),
                                                  st.sampled_from(DI_VALUES)),
       st.none() | st.integers(0, 255))
def test_pps_request_round_trips(protocol, fd, n):
    fi, di = fd if fd else (None, None)
    req = build_pps_request(protocol, fi, di, n)
    assert req[0] == 0xFF and _xor(req) == 0
    r = parse_pps_response(req, req)
    assert r.protocol == protocol and r.n == n and r.accepted
    assert (r.fi, r.di) == ((fi, di) if fd else (372, 1))
    # The card may always answer with PPS0 alone: Fd/Dd, N unchanged.
    short = build_pps_request(protocol)
    r = parse_pps_response(req, short)
    assert (r.fi, r.di, r.n) == (372, 1, None)
    assert r.accepted == (fd is None)


@st.composite
def reader_caps(draw):
    clock = draw(st.sampled_from([3571200, 4000000, 4800000, 5000000, 8000000, 12000000]))
    max_rate = draw(st.none() | st.integers(9600, 1000000))
    rates = draw(st.none() | st.lists(st.integers(9000, 1000000), max_size=8))
    return ReaderCaps(clock, max_rate, rates, draw(st.booleans()))


@given(well_formed_atrs(), reader_caps(), st.none() | st.integers(9600, 800000),
       st.booleans())
def test_candidates_obey_the_rules(case, caps, max_baud, negotiate):
    atr = parse_atr(case[0])
    policy = SpeedPolicy(max_baud=max_baud, negotiate=negotiate)
    cands = policy.candidates(atr, caps)
    assert cands
    if atr.specific_mode is not None:
        assert len(cands) == 1
        assert pps_request_for(atr, caps, policy) is None
        return
    assert cands[-1] == (372, 1)
    rates = [iso7816.baud_rate(f, d, caps.clock_hz) for f, d in cands]
    assert rates == sorted(rates, reverse=True) and len(set(rates)) == len(rates)
    for fi, di in cands[:-1]:
        assert negotiate
        assert fi == atr.fi and di <= atr.di
        assert caps.clock_hz <= atr.fmax_mhz * 1000000
        rate = iso7816.baud_rate(fi, di, caps.clock_hz)
        assert max_baud is None or rate <= max_baud
        assert caps.supports_rate(rate)
    req = pps_request_for(atr, caps, policy)
    if req is None:
        assert caps.auto_pps or cands[0] == (372, 1)
    else:
        r = parse_pps_response(req, req)
        assert r.protocol == atr.protocols[0] and (r.fi, r.di) == cands[0]


def test_every_atr_of_the_debian_list_parses():
    if not os.path.exists(SMARTCARD_LIST):
        return
    count = 0
    with open(SMARTCARD_LIST, encoding="utf-8", errors="replace") as f:
        for line in f:
            if not line.startswith("3"):
                continue
            try:
                data = from_hex(line.strip())
            except HexError:
                continue  # patterns with '..' wildcards
            _check_outputs(parse_atr(data))
            count += 1
    assert count > 1000
