from support import h, raises

from ccidkit.core.atr import ATRError, decode_historical, inverse_convention, parse_atr

T1_CARD = "3B DC 96 FF 81 11 FE 80 31 C8 54 43 56 35 07 73 FF A1 C0 3C"
INVERSE = "3F 2D 00 27 A0 51 82 7D 00 00 00 52 00 0C 90 00"
INVERSE_LINE = "03 4B FF 1B FA 75 BE 41 FF FF FF B5 FF CF F6 FF"
# Real cards: T=0 + T=1 with T=15 global bytes (TA4 class/clock stop, TB4 SPU).
SIM = "3B 9F 97 C0 0A B1 FE 45 3F C6 82 80 31 E0 73 FE 21 1B 65 D0 02 3A 14 C9 81 0F 8B"
GRACE = "3B 95 96 80 B1 FE 55 1F C7 47 72 61 63 65 13"
JAVACARD = "3B 9C 95 80 81 1F 03 90 67 46 4A 01 00 54 04 F2 72 FE 00 C0"
# Specific mode: TA2 = 81 (T=1, unable to change).
SPECIFIC = "3B 90 96 91 81 B1 FE 55 1F C7 D4"


def with_tck(text):
    data = bytearray(h(text))
    x = 0
    for b in data[1:]:
        x ^= b
    data.append(x)
    return bytes(data)


def test_t1_card_done_when():
    a = parse_atr(h(T1_CARD))
    assert a.ts == 0x3B and a.convention == "direct"
    assert (a.fi, a.di, a.fmax_mhz) == (512, 32, 5)
    assert a.protocols == [1]
    assert (a.ifsc, a.bwi, a.cwi, a.edc) == (254, 4, 13, "LRC")
    assert a.n == 255 and a.guard_time_etu(1) == 11 and a.guard_time_etu(0) == 12
    assert a.tck == 0x3C and a.tck_ok is True and a.warnings == []
    assert a.wi is None and a.specific_mode is None
    assert a.historical == h("80 31 C8 54 43 56 35 07 73 FF A1 C0")
    assert a.baud_rate(4000000) == 250000
    assert a.ta(1) == 0x96 and a.tc(1) == 0xFF and a.td(1) == 0x81 and a.td(2) == 0x11
    assert a.ta(3) == 0xFE and a.tb(3) is None and a.ta(9) is None
    d = a.as_dict()
    assert d["atr"] == "3BDC96FF8111FE8031C8544356350773FFA1C03C"
    assert d["ts"] == "3B" and d["protocols"] == [1] and d["tck_ok"] is True
    assert (d["fi"], d["di"], d["ifsc"], d["edc"], d["n"]) == (512, 32, 254, "LRC", 255)
    assert d["historical"] == "8031C8544356350773FFA1C0"


def test_historical_compact_tlv_card_capabilities():
    hd = parse_atr(h(T1_CARD)).historical_decoded
    assert hd["category"] == "80" and hd["errors"] == []
    tags = [o["tag"] for o in hd["objects"]]
    assert tags == ["3", "5", "7"]
    service, issuer, caps = hd["objects"]
    assert service["value"] == "C8"
    assert "application selection by full DF name" in service["meaning"]
    assert "EF.DIR and EF.ATR access by READ BINARY" in service["meaning"]
    assert issuer["value"] == "43563507"
    assert len(caps["selection_methods"]) == 8
    assert caps["command_chaining"] is True and caps["extended_lc_le"] is True
    assert caps["max_logical_channels"] == 1
    assert caps["logical_channel_assignment"] == "no logical channel"
    assert caps["data_coding"]["tlv_efs"] is True
    assert caps["data_coding"]["data_unit_quartets"] == 2


def test_inverse_convention_decoded_and_raw_line():
    assert inverse_convention(h("03")) == h("3F")
    assert inverse_convention(h(INVERSE_LINE)) == h(INVERSE)
    for text in (INVERSE, INVERSE_LINE):
        a = parse_atr(h(text))
        assert a.ts == 0x3F and a.convention == "inverse"
        assert a.protocols == [0]
        assert (a.fi, a.di) == (372, 1)
        assert a.historical == h("27 A0 51 82 7D 00 00 00 52 00 0C 90 00")
        assert a.tck is None and a.tck_ok is None and a.warnings == []
        assert a.wi == 10 and a.ifsc is None
        d = a.as_dict()
        assert d["ts"] == "3F" and d["convention"] == "inverse"
        assert d["atr"] == "3F2D0027A051827D00000052000C9000"
        assert d["historical"] == "27A051827D00000052000C9000"
        assert d["tck_ok"] is None and d["bwi"] is None and d["edc"] is None
    assert parse_atr(h(INVERSE_LINE)).line_inverse is True
    assert parse_atr(h(INVERSE)).line_inverse is False


def test_t0_t1_with_t15_global_bytes():
    a = parse_atr(h(SIM))
    assert a.protocols == [0, 1] and a.tck_ok is True and a.warnings == []
    assert (a.fi, a.di) == (512, 64)
    assert a.wi == 10
    assert (a.ifsc, a.bwi, a.cwi, a.edc) == (254, 4, 5, "LRC")
    assert a.clock_stop == "no preference" and a.classes == ["B", "C"]
    assert a.spu == 0x82
    hd = a.historical_decoded
    assert [o["tag"] for o in hd["objects"]] == ["3", "7", "6", "8"]
    assert hd["status"]["lcs"] == "0F" and hd["status"]["lcs_meaning"] == "termination state"
    d = a.as_dict()
    assert d["class"] == ["B", "C"] and d["clock_stop"] == "no preference"

    b = parse_atr(h(GRACE))
    assert b.protocols == [0, 1] and b.tck_ok is True and b.warnings == []
    assert b.classes == ["A", "B", "C"] and b.wi == 10 and b.ifsc == 254
    assert (b.bwi, b.cwi) == (5, 5)
    assert b.historical == b"Grace"

    c = parse_atr(h(JAVACARD))
    assert c.protocols == [0, 1] and c.tck_ok is True and c.warnings == []
    assert (c.fi, c.di) == (512, 16) and c.td_protocols == [0, 1, 15]
    assert c.clock_stop == "not supported" and c.classes == ["A", "B"] and c.spu is None
    assert (c.ifsc, c.bwi, c.cwi, c.edc, c.wi) == (32, 4, 13, "LRC", 10)


def test_specific_mode_ta2():
    a = parse_atr(h(SPECIFIC))
    assert a.specific_mode == {"protocol": 1, "can_change": False, "implicit": False}
    assert a.protocols == [1] and a.tck_ok is True and a.historical == b""
    assert a.ifsc == 254 and a.as_dict()["specific_mode"]["protocol"] == 1
    b = parse_atr(with_tck("3B 90 11 90 10 01"))
    assert b.specific_mode == {"protocol": 0, "can_change": True, "implicit": True}
    assert b.protocols == [0, 1]


def test_defaults_without_interface_bytes():
    a = parse_atr(h("3B 00"))
    assert a.protocols == [0] and (a.fi, a.di, a.fmax_mhz, a.n) == (372, 1, 5, 0)
    assert a.tck_ok is None and a.warnings == [] and a.historical_decoded is None
    # T=1 offered with no T=1 bytes: §11.4 defaults.
    b = parse_atr(with_tck("3B 80 01"))
    assert b.protocols == [1] and (b.ifsc, b.bwi, b.cwi, b.edc) == (32, 4, 13, "LRC")
    assert b.tck_ok is True and b.wi is None
    # TC for T=1 selects CRC; only the first TA for T=1 counts.
    c = parse_atr(with_tck("3B 80 81 41 01"))
    assert c.protocols == [1] and c.ifsc == 32 and c.edc == "CRC" and c.warnings == []
    c = parse_atr(with_tck("3B 80 81 91 30 11 40"))
    assert c.ifsc == 48 and c.ta(4) == 0x40 and c.group_protocol(4) == 1


def test_tck_rules():
    # T=0 and T=15: TCK due (only T=0 alone makes it absent).
    a = parse_atr(with_tck("3B 80 80 1F 07"))
    assert a.protocols == [0] and a.tck_ok is True and a.classes == ["A", "B", "C"]
    wrong = bytearray(with_tck(T1_CARD[:-3]))
    wrong[-1] ^= 0x01
    b = parse_atr(wrong)
    assert b.tck_ok is False and b.warnings == ["wrong TCK 3D (expected 3C)"]
    c = parse_atr(h(T1_CARD[:-3]))
    assert c.tck_ok is False and c.warnings == ["missing TCK"]


def test_truncated_and_over_long():
    a = parse_atr(h("3B"))
    assert a.t0 is None and a.warnings == ["truncated: T0 missing"]
    b = parse_atr(h("3B DC 96 FF"))
    assert b.ta(1) == 0x96 and b.fi == 512 and b.warnings == ["truncated: TD1 missing"]
    c = parse_atr(h("3B 05 41 42"))
    assert c.historical == b"AB"
    assert c.warnings == ["truncated: 5 historical bytes announced, 2 present"]
    d = parse_atr(h("3B 00 12 34"))
    assert d.extra == h("12 34") and d.warnings == ["2 extra bytes after the ATR"]
    assert d.as_dict()["extra"] == "1234" and d.as_dict()["atr"] == "3B00"
    f = parse_atr(h("3B 0F" + " 41" * 15 + " 00" * 20))
    assert len(f.bytes) == 17 and len(f.extra) == 20
    e = parse_atr(with_tck("3B 8F" + " 81" * 15 + " 01" + " 41" * 15))
    assert len(e.bytes) == 34 and e.tck_ok is True
    assert e.warnings == ["ATR is 34 bytes, over the 33 ISO/IEC 7816-3 allows"]


def test_unparsable():
    for bad in (b"", h("3C 00"), h("00"), "zz"):
        with raises(ATRError):
            parse_atr(bad)
    with raises(ATRError) as r:
        parse_atr(h("3A 00"))
    assert r.value.name == "ATR_BAD_TS"


def test_reserved_values_warn():
    a = parse_atr(h("3B 10 70"))
    assert a.fi is None and a.di is None
    assert a.warnings == ["TA1 = 70: Fi code 7 is reserved", "TA1 = 70: Di code 0 is reserved"]
    assert a.as_dict()["fi"] is None and a.baud_rate() is None
    b = parse_atr(h("3B 80 40 00"))
    assert b.wi == 10 and b.warnings == ["TC2 = 00 is reserved; WI 10 assumed"]


def test_historical_categories():
    d = decode_historical(h("00 31 C0 73 BE 21 11 05 90 00"))
    assert d["category"] == "00" and d["errors"] == []
    assert d["status"] == {"lcs": "05", "lcs_meaning": "operational state (activated)",
                           "sw": "9000"}
    caps = d["objects"][1]
    assert caps["extended_lc_le"] is False and caps["command_chaining"] is False
    assert caps["logical_channel_assignment"] == "by the card"
    assert caps["max_logical_channels"] == 2
    d = decode_historical(h("80 F5 A0 00 00 03 08 82 90 00"))
    assert d["objects"][0]["name"] == "application identifier"
    assert d["objects"][0]["value"] == "A000000308"
    assert d["status"]["sw"] == "9000" and d["status"]["lcs"] is None
    d = parse_atr(h("3B 02 10 50")).historical_decoded
    assert d["format"] == "DIR data reference" and d["dir_reference"] == "50"
    d = decode_historical(h("80 73 FF"))
    assert d["errors"] == ["COMPACT-TLV object 73 needs 3 bytes, 1 left"]
    assert decode_historical(h("00 90")) ["errors"] == ["category 00 needs at least 3 status bytes"]
    assert decode_historical(h("8A 01"))["format"] == "RFU"


def test_explain_lines():
    lines = parse_atr(h(T1_CARD)).explain(4000000)
    assert lines[0] == "ATR: " + T1_CARD
    assert "TS = 3B  direct convention" in lines
    ta1 = [x for x in lines if x.startswith("TA1 = 96")][0]
    assert "Fi = 512, Di = 32, f(max) = 5 MHz" in ta1
    assert "250000 bit/s at 4 MHz" in ta1 and "312500 bit/s at f(max) 5 MHz" in ta1
    assert "TA3 = FE  IFSC = 254 (T=1)" in lines
    assert "TCK = 3C  correct checksum" in lines
    assert "Protocols offered: T=1" in lines
    assert "    - command chaining: yes" in lines
    inv = parse_atr(h(INVERSE_LINE)).explain()
    assert inv[1].startswith("  (read from the line as 03 4B FF")
    sim = parse_atr(h(SIM)).explain(3571200)
    assert "TA4 = C6  clock stop no preference; classes B (3 V), C (1.8 V)" in sim
    assert "TB4 = 82  SPU: proprietary use of contact C6 (02)" in sim
    assert "TC2 = 0A  T=0 waiting time integer WI = 10 (WT = 10 x 960 x Fi/f)" in sim
    assert [x for x in sim if "bit/s at 3.5712 MHz" in x]
    grace = parse_atr(h(GRACE)).explain()
    assert '  as text: "Grace"' in grace
    bad = parse_atr(h("3B 00 12 34")).explain()
    assert bad[-1] == "Warning: 2 extra bytes after the ATR"
