from support import h, raises

from ccidkit.core.atr import parse_atr
from ccidkit.core.pps import (PPSError, PPSResult, ReaderCaps, SpeedPolicy, build_pps_request,
                              parse_pps_response, pps_request_for)

T1_CARD = parse_atr(h("3B DC 96 FF 81 11 FE 80 31 C8 54 43 56 35 07 73 FF A1 C0 3C"))
SIM = parse_atr(h("3B 9F 97 C0 0A B1 FE 45 3F C6 82 80 31 E0 73 FE 21 1B 65 D0 02 3A 14 C9 81 0F 8B"))
SPECIFIC = parse_atr(h("3B 90 96 91 81 B1 FE 55 1F C7 D4"))
T0_ONLY = parse_atr(h("3F 2D 00 27 A0 51 82 7D 00 00 00 52 00 0C 90 00"))
READER = ReaderCaps(4000000, 250000)


def test_done_when_request():
    assert SpeedPolicy().candidates(T1_CARD, READER)[0] == (512, 32)
    assert pps_request_for(T1_CARD, READER, SpeedPolicy()) == h("FF 11 96 78")
    assert pps_request_for(T1_CARD, READER) == h("FF 11 96 78")
    assert build_pps_request(1, 512, 32) == h("FF 11 96 78")


def test_candidates_fastest_first_ending_with_default():
    c = SpeedPolicy().candidates(T1_CARD, READER)
    # 512/2 = 15625 bit/s is still faster than 372/1 = 10752; 512/1 is not.
    assert c == [(512, 32), (512, 16), (512, 8), (512, 4), (512, 2), (372, 1)]


def test_cap_forces_lower_di():
    policy = SpeedPolicy(max_baud=200000)
    c = policy.candidates(T1_CARD, READER)
    assert c[0] == (512, 16) and c[-1] == (372, 1)
    assert pps_request_for(T1_CARD, READER, policy) == h("FF 11 95 7B")
    # The reader's own maximum works the same way.
    assert SpeedPolicy().candidates(T1_CARD, ReaderCaps(4000000, 125000))[0] == (512, 16)


def test_data_rate_list_excludes_fastest():
    caps = ReaderCaps(4000000, 250000, data_rates=[10752, 62500, 125000])
    assert SpeedPolicy().candidates(T1_CARD, caps) == [(512, 16), (512, 8), (372, 1)]
    # Readers round their listed rates: 4.8 MHz × 4 / 372 = 51612.9 is listed as 51613.
    card = parse_atr(h("3B 11 13"))
    caps = ReaderCaps(4800000, 600000, data_rates=[12903, 51613])
    assert SpeedPolicy().candidates(card, caps) == [(372, 4), (372, 1)]
    assert pps_request_for(card, caps) == h("FF 10 13 FC")
    caps = ReaderCaps(4800000, 600000, data_rates=[12903, 51700])
    assert SpeedPolicy().candidates(card, caps) == [(372, 1)]
    assert pps_request_for(card, caps) is None


def test_fmax_and_policy_off():
    # TA1 = 13: f(max) 5 MHz; a reader clocking at 6 MHz cannot use it.
    card = parse_atr(h("3B 11 13"))
    assert SpeedPolicy().candidates(card, ReaderCaps(6000000, 1000000)) == [(372, 1)]
    assert SpeedPolicy(negotiate=False).candidates(T1_CARD, READER) == [(372, 1)]
    assert pps_request_for(T1_CARD, READER, SpeedPolicy(negotiate=False)) is None
    assert SpeedPolicy().candidates(parse_atr(h("3B 10 70")), READER) == [(372, 1)]


def test_specific_mode_no_pps():
    assert SpeedPolicy().candidates(SPECIFIC, READER) == [(512, 32)]
    assert pps_request_for(SPECIFIC, READER) is None
    implicit = parse_atr(h("3B 90 96 90 10 01 87"))
    assert implicit.tck_ok is True and implicit.specific_mode["implicit"] is True
    assert SpeedPolicy().candidates(implicit, READER) == [(372, 1)]


def test_protocol_choice_and_defaults():
    # Only T=0, default speed: no PPS at all.
    assert pps_request_for(T0_ONLY, READER) is None
    # T=0 and T=1 offered, the first (T=0) kept at Fd/Dd: the card uses those
    # without a PPS (ISO/IEC 7816-3 §6.3.1); another protocol must be asked for.
    slow = ReaderCaps(4000000, 10752)
    assert pps_request_for(SIM, slow) is None
    assert pps_request_for(SIM, slow, protocol=1) == h("FF 01 FE")
    assert pps_request_for(SIM, READER, protocol=1) == h("FF 11 96 78")
    javacard = parse_atr(h("3B 9C 95 80 81 1F 03 90 67 46 4A 01 00 54 04 F2 72 FE 00 C0"))
    assert SpeedPolicy().candidates(javacard, READER)[:2] == [(512, 16), (512, 8)]
    assert pps_request_for(javacard, READER) == h("FF 10 95 7A")
    assert pps_request_for(javacard, READER, protocol=1) == h("FF 11 95 7B")
    with raises(PPSError) as r:
        pps_request_for(T0_ONLY, READER, protocol=1)
    assert r.value.name == "PPS_PROTOCOL_NOT_OFFERED"
    assert pps_request_for(T1_CARD, ReaderCaps(4000000, 250000, auto_pps=True)) is None


def test_build_request():
    assert build_pps_request(0) == h("FF 00 FF")
    assert build_pps_request(1, 372, 1) == h("FF 11 11 FF")
    assert build_pps_request(0, 372, 1, n=2) == h("FF 30 11 02 DC")
    assert build_pps_request(1, None, None, 255) == h("FF 21 FF 21")
    for bad in ((15, 372, 1), (1, 999, 1), (1, 372, 3), (1, 372, None), (0, 372, 1, 256), (-1,)):
        with raises(PPSError):
            build_pps_request(*bad)


def test_response_accepted_or_defaults():
    req = h("FF 11 96 78")
    assert parse_pps_response(req, req) == PPSResult(1, 512, 32, None)
    r = parse_pps_response(req, h("FF 01 FE"))
    assert (r.protocol, r.fi, r.di, r.n, r.accepted) == (1, 372, 1, None, False)
    req = build_pps_request(0, 512, 8, n=3)
    r = parse_pps_response(req, req)
    assert (r.protocol, r.fi, r.di, r.n, r.accepted) == (0, 512, 8, 3, True)
    r = parse_pps_response(req, build_pps_request(0, 512, 8))
    assert (r.fi, r.di, r.n) == (512, 8, None)
    r = parse_pps_response(h("FF 00 FF"), h("FF 00 FF"))
    assert (r.protocol, r.fi, r.di, r.accepted) == (0, 372, 1, True)
    r = parse_pps_response(h("FF 40 07 B8"), h("FF 40 07 B8"))
    assert r.protocol == 0


def test_every_response_failure():
    req = h("FF 11 96 78")
    cases = (
        (b"", "PPS_NO_RESPONSE"),
        (h("FE 11 96 79"), "PPS_BAD_PPSS"),
        (h("FF 11"), "PPS_TRUNCATED"),
        (h("FF 11 96"), "PPS_TRUNCATED"),
        (h("FF 11 96 78 00"), "PPS_EXTRA_BYTES"),
        (h("FF 11 96 77"), "PPS_BAD_PCK"),
        (h("FF 91 96 F8"), "PPS_BAD_PPS0"),
        (h("FF 10 96 79"), "PPS_PROTOCOL_MISMATCH"),
        (h("FF 11 95 7B"), "PPS1_MISMATCH"),
        (h("FF 31 96 02 5A"), "PPS_UNREQUESTED"),
        (h("FF 51 96 07 3F"), "PPS_UNREQUESTED"),
    )
    for rsp, name in cases:
        with raises(PPSError) as r:
            parse_pps_response(req, rsp)
        assert r.value.name == name, (rsp, r.value.name)
    req2 = build_pps_request(1, 512, 32, n=2)
    with raises(PPSError) as r:
        parse_pps_response(req2, build_pps_request(1, 512, 32, n=3))
    assert r.value.name == "PPS2_MISMATCH"
    req3 = h("FF 41 07 B9")
    with raises(PPSError) as r:
        parse_pps_response(req3, h("FF 41 06 B8"))
    assert r.value.name == "PPS3_MISMATCH"
    for bad_req in (b"", h("FF 11 96"), h("FF 0F F0"), h("FF 11 71 9F"), h("00 00 00")):
        with raises(PPSError) as r:
            parse_pps_response(bad_req, h("FF 00 FF"))
        assert r.value.name == "PPS_BAD_REQUEST"
