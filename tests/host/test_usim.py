"""The USIM: the GSM SIM face (TS 51.011, class A0), the UICC/USIM face (TS 102 221 /
TS 31.102, class 00) over one file tree, the ADN codec and `ccidkit phonebook`."""

import json

import pytest
from hypothesis import given, strategies as st

from ccidkit.core.apdu import transmit_with_auto_response
from ccidkit.core.atr import parse_atr
from ccidkit.core.t0 import T0Reader
from ccidkit.emu.card.t0 import T0Card
from ccidkit.emu.cards import make_card
from ccidkit.emu.cards.usim import (
    DEFAULT_CONTACTS, GSM7_BASIC, USIM_AID, UsimCard, UsimError, decode_adn, decode_alpha,
    encode_adn, gsm7_decode, gsm7_encode,
)
from ccidkit.scripts.cmd_phonebook import (PhonebookError, card_transmit, parse_tlv,
                                           read_phonebook, read_phonebook_uicc)
from ccidkit.scripts.main import main

ALICE = bytes.fromhex("416c696365204d617274696effffffff 07 91 3316325476f8ffffffff ff ff")


def h(text):
    return bytes.fromhex(text.replace(" ", ""))


def card(**kw):
    c = make_card("usim", **kw)
    c.power_on()
    return c


def t0_transmit(c):
    engine = T0Card(c)
    reader = T0Reader()

    def link(tpdu, timeout_us):
        return engine.process_tpdu(tpdu)
    return lambda apdu: reader.transceive(apdu, link), engine


def test_atr_offers_t0_with_classes_abc():
    a = parse_atr(card().atr)
    assert a.protocols == [0] and a.classes == ["A", "B", "C"] and not a.warnings
    assert (a.fi, a.di) == (512, 32)
    b = parse_atr(card(protocols=(0, 1)).atr)
    assert b.protocols == [0, 1] and b.ifsc == 254


# --- the GSM SIM face ---------------------------------------------------------------------------

def test_gsm_select_get_response_and_read_record():
    c = card()
    t = c.process_apdu
    assert t(h("A0A4000002 3F00")) == h("9F16")
    mf = t(h("A0C0000016"))
    assert mf == h("0000 0000 3F00 01 0000000000 09 81 03 02 04 00 83 8A 83 8A 9000")
    assert t(h("A0A4000002 7F10")) == h("9F16")
    df = t(h("A0C0000016"))
    assert df[4:7] == h("7F10 02") and df[13:16] == h("81 01 01")   # 1 DF, 1 EF below
    assert t(h("A0A4000002 6F3A")) == h("9F0F")
    # §9.2.1: size 250 x 30, FID, EF, access READ/UPDATE CHV1, linear fixed, record 30
    assert t(h("A0C000000F")) == h("0000 1D4C 6F3A 04 00 11 FF 11 01 02 01 1E 9000")
    assert t(h("A0C0000008")) == h("0000 1D4C 6F3A 0400 9000")     # fewer bytes are allowed
    assert t(h("A0C0000010")) == h("6700")
    assert t(h("A0B201041E")) == ALICE + h("9000")
    assert t(h("A0B204041E")) == b"\xff" * 30 + h("9000")
    assert t(h("A0B201041D")) == h("6700")                           # P3 = record length
    assert t(h("A0B2FB041E")) == h("9402")                           # record 251
    assert t(h("A0B2000204")) == h("6700")
    assert t(h("A0B000000A")) == h("9408")                           # not transparent
    assert t(h("A0A4000002 6F3B")) == h("9404")
    assert t(h("A0A4000102 6F3A")) == h("6B00")
    assert t(h("A0A4000003 6F3A00")) == h("6700")
    assert t(h("A0C0000010")) == h("6F00")                           # nothing to get
    # §6.5: from DF Telecom an EF of the MF is out of reach; from the MF it is not
    assert t(h("A0A4000002 2FE2")) == h("9404")
    assert t(h("A0A4000002 3F00")) == h("9F16")
    assert t(h("A0A4000002 2FE2")) == h("9F0F")
    assert t(h("A0C000000F"))[:-2] == h("0000 000A 2FE2 04 00 0F FF 11 01 02 00 00")
    assert t(h("A0B000000A")) == h("9888 1201 0000 1032 54F6 9000")
    assert t(h("A0B000000B")) == h("9402")
    assert t(h("A0B0000A01")) == h("9402")
    assert t(h("A0F2000016"))[4:7] == h("3F00 01")                   # STATUS: the current DF
    assert t(h("A012000000")) == h("6D00")                           # FETCH: not here
    assert t(h("A0A40000 02 7FF0")) == h("9404")                     # the ADF is not a GSM DF


def test_gsm_chv1_enable_verify_block_unblock():
    c = card()
    t = c.process_apdu
    pin = b"0000" + b"\xff" * 4
    bad = b"1111" + b"\xff" * 4
    assert t(h("A020000108") + pin) == h("9808")                    # CHV1 disabled
    assert t(h("A028000108") + bad) == h("9804")
    assert t(h("A028000108") + pin) == h("9000")                    # ENABLE CHV1
    c.power_off()
    c.power_on()
    assert t(h("A0A4000002 7F10")) == h("9F16")
    assert t(h("A0C0000016"))[13] == 0x01                           # b8: CHV1 enabled now
    assert t(h("A0A4000002 6F3A")) == h("9F0F")
    assert t(h("A0B201041E")) == h("9804")                          # access not fulfilled
    assert t(h("A020000108") + bad) == h("9804")
    assert t(h("A020000108") + bad) == h("9804")
    assert t(h("A020000108") + bad) == h("9840")
    assert t(h("A020000108") + pin) == h("9840")
    assert t(h("A0A4000002 7F10")) == h("9F16")
    assert t(h("A0C0000016"))[18:20] == h("80 8A")                  # CHV1 0 left, UNBLOCK 10
    unblock = h("A02C000010") + b"12345678" + b"2468" + b"\xff" * 4
    assert t(h("A02C000110") + unblock[5:]) == h("6B00")
    assert t(unblock) == h("9000")
    assert t(h("A0A4000002 6F3A")) == h("9F0F")
    assert t(h("A0B201041E")) == ALICE + h("9000")
    assert t(h("A020000208") + b"1111" + b"\xff" * 4) == h("9000")  # CHV2
    assert t(h("A026000208") + b"1111" + b"\xff" * 4) == h("6B00")  # only CHV1 can be disabled
    assert t(h("A020000308") + pin) == h("6B00")


# --- the UICC / USIM face -------------------------------------------------------------------------

def test_ef_dir_leads_to_the_usim_application():
    c = card()
    t = c.process_apdu
    assert t(h("00A4000402 2F00 00")) == h(
        "621A 8205 4221 0020 02 8302 2F00 8A01 05 8C03 03FF00 8002 0040 8801 F0 9000")
    rec = t(h("00B2010420"))
    assert rec[:-2] == h("6118 4F10") + USIM_AID + h("5004") + b"USIM" + b"\xff" * 6
    aid = rec[4:20]
    fcp = t(h("00A4040410") + aid + h("00"))
    assert fcp[:2] == h("622B") and h("8410") + USIM_AID in fcp and fcp[-2:] == h("9000")
    # PIN status template: PIN1 disabled (bit clear), PIN2 enabled
    assert h("C609 900140 830101 830181") in fcp
    assert t(h("00A4040C07 A0000000871002")) == h("9000")          # right-truncated AID
    assert t(h("00B0870009")) == h("08 0910101032547698 9000")       # EF IMSI by SFI 07
    assert t(h("00A4000402 6F07 00"))[-2:] == h("9000")
    assert t(h("00B0000009")) == h("08 0910101032547698 9000")       # IMSI 001010123456789
    assert t(h("00A4000C02 7FFF")) == h("9000")
    assert t(h("80F2000000"))[:2] == h("622B")                     # STATUS: the ADF's FCP
    assert t(h("80F2000100")) == h("8410") + USIM_AID + h("9000")
    assert t(h("00F2000000")) == h("6E00")


def test_short_file_identifiers_from_the_mf():
    c = card()
    t = c.process_apdu
    assert t(h("00B082000A")) == h("9888 1201 0000 1032 54F6 9000")   # EF ICCID, SFI 02
    assert t(h("00B201F420"))[:4] == h("6118 4F10")                    # EF DIR, SFI 1E
    assert c.channels[0].ef.fid == 0x2F00


def test_pbr_points_at_the_same_adn_as_telecom():
    c = card()
    t = c.process_apdu
    assert t(h("00A4080406 7F10 5F3A 4F30 00"))[-2:] == h("9000")
    pbr = t(h("00B2010420"))[:-2]
    assert pbr[:7] == h("A805 C003 4F3A 01")
    assert t(h("00A4000C02 4F3A")) == h("9000")
    assert t(h("00B201041E")) == ALICE + h("9000")
    assert t(h("00A4080C04 7F10 5F3A")) == h("9000")
    assert t(h("00B2010C1E")) == ALICE + h("9000")                 # SFI 1 from the PBR
    # written through the UICC face, read through the GSM face
    rec = encode_adn("Carol", "+4420794600", 30)
    assert t(h("00DC030C1E") + rec) == h("9000")
    assert t(h("A0A4000002 7F10")) == h("9F16")
    assert t(h("A0A4000002 6F3A")) == h("9F0F")
    assert t(h("A0B203041E")) == rec + h("9000")
    assert (3, "Carol", "+4420794600") in c.contacts()


def test_uicc_status_words():
    c = card()
    t = c.process_apdu
    assert t(h("00A4080C04 7F10 6F3A")) == h("9000")
    assert t(h("00B201041D")) == h("6C1E")
    assert t(h("00B2FB041E")) == h("6A83")
    assert t(h("00B000000A")) == h("6981")
    assert t(h("00A4080C04 7F10 6F3B")) == h("6A82")
    assert t(h("00DC01041E") + b"\x00" * 29 + b"\x00") == h("9000")
    assert t(h("00A4080C02 2FE2")) == h("9000")
    assert t(h("00D600000A") + b"\x00" * 10) == h("6982")          # ICCID: update never
    assert t(h("00B0 0000 00000A")) == h("6700")                   # no extended APDUs
    assert t(h("0070000001")) == h("01 9000")
    assert t(h("01A4080C04 7F10 6F3A")) == h("9000")


def test_pin1_enabled_guards_the_phone_book_on_both_faces():
    c = card(pin1_enabled=True)
    t = c.process_apdu
    assert t(h("00A4080C04 7F10 6F3A")) == h("9000")
    assert t(h("00B201041E")) == h("6982")
    assert t(h("0020000100")) == h("63C3")
    assert t(h("0020000108") + b"0000" + b"\xff" * 4) == h("9000")
    assert t(h("00B201041E")) == ALICE + h("9000")
    assert t(h("A0A4000002 6F3A")) == h("9F0F")                    # same channel, same status
    assert t(h("A0B201041E")) == ALICE + h("9000")


# --- reading the phone book like usim_read.py -------------------------------------------------------

def test_read_phonebook_through_t0_tpdus():
    c = card()
    transmit, engine = t0_transmit(c)
    book = read_phonebook(transmit)
    assert book["record_length"] == 30 and book["records"] == 250
    assert [(e["record"], e["name"], e["number"]) for e in book["entries"]] == \
        list(DEFAULT_CONTACTS)
    # 3 x (SELECT + GET RESPONSE) + 250 READ RECORD, each one TPDU
    assert engine.tpdus == 6 + 250
    assert c.count(0xB2) == 250 and c.count(0xC0) == 3


def test_read_phonebook_with_other_sizes_and_t1():
    c = card(records=12, record_length=40, contacts=[("Long Name For The Alpha", "+1555")])
    book = read_phonebook(t0_transmit(c)[0])
    assert book["records"] == 12 and book["record_length"] == 40
    assert book["entries"] == [{"record": 1, "name": "Long Name For The Alpha", "number": "+1555"}]
    c1 = card(protocols=(1,))
    transmit, protocol = card_transmit(c1)
    assert protocol == "T=1" and len(read_phonebook(transmit)["entries"]) == 5


def test_both_readers_see_the_same_phone_book():
    c = card(records=30, contacts=[(30, "Last", "+1"), (1, "First", "2")])
    transmit, engine = t0_transmit(c)
    gsm = read_phonebook(transmit)
    n = engine.tpdus
    uicc = read_phonebook_uicc(transmit)
    assert gsm == uicc and [e["record"] for e in gsm["entries"]] == [1, 30]
    # 4 SELECTs answered 61xx + GET RESPONSE, the PBR record, 30 ADN records
    assert engine.tpdus - n == 3 * 2 + 1 + 30
    c = card(pin1_enabled=True)
    with pytest.raises(PhonebookError) as e:
        read_phonebook_uicc(t0_transmit(c)[0])
    assert e.value.code == 0x6982 and e.value.name == "READ_FAILED"
    c = card(pin1_enabled=True)
    assert len(read_phonebook_uicc(t0_transmit(c)[0], pin="0000")["entries"]) == 5
    c = card(pin1_enabled=True)
    with pytest.raises(PhonebookError) as e:
        read_phonebook_uicc(t0_transmit(c)[0], pin="1")
    assert e.value.code == 0x6700 and e.value.name == "VERIFY_FAILED"


def test_tlv_parser():
    assert parse_tlv(h("62 03 820178 FF 00 5F2D 02 656E")) == [(0x62, h("820178")),
                                                              (0x5F2D, b"en")]
    assert parse_tlv(h("53 81 02 0102")) == [(0x53, h("0102"))]
    for bad in ("62", "62 05 00", "5F", "62 83 000001", "53 81"):
        with pytest.raises(PhonebookError):
            parse_tlv(h(bad))


@given(st.binary(max_size=80))
def test_tlv_parser_totality(data):
    try:
        objs = parse_tlv(data)
    except PhonebookError as e:
        assert e.name == "BAD_RESPONSE"
        return
    assert all(isinstance(t, int) and isinstance(v, bytes) for t, v in objs)


def test_read_phonebook_reports_refusals():
    c = card(pin1_enabled=True)
    with pytest.raises(PhonebookError) as e:
        read_phonebook(t0_transmit(c)[0])
    assert e.value.name == "READ_FAILED" and e.value.code == 0x9804
    c = card(pin1_enabled=True)
    book = read_phonebook(t0_transmit(c)[0], pin="0000")
    assert len(book["entries"]) == 5
    c = card(pin1_enabled=True)
    with pytest.raises(PhonebookError) as e:
        read_phonebook(t0_transmit(c)[0], pin="9999")
    assert e.value.name == "VERIFY_FAILED" and e.value.code == 0x9804
    with pytest.raises(PhonebookError) as e:
        read_phonebook(lambda apdu: h("6E00"))
    assert e.value.name == "SELECT_FAILED"


def test_pin_commands_carry_their_data_over_t0():
    c = card()
    transmit, engine = t0_transmit(c)
    pin = b"0000" + b"\xff" * 4
    assert transmit(h("0028000108") + pin) == h("9000")          # ENABLE: data to the card
    assert c.pin(1).enabled
    assert transmit(h("0026000108") + pin) == h("9000")          # DISABLE
    assert not c.pin(1).enabled
    assert transmit(h("A020000108") + pin) == h("9808")
    assert transmit(h("0070000001")) == h("01 9000")              # MANAGE CHANNEL: P3 is Le


def test_class_00_reader_with_61xx_over_t0():
    c = card()
    transmit, _ = t0_transmit(c)
    resp = transmit_with_auto_response(h("00A4080406 7F10 5F3A 4F30 00"), transmit)
    assert resp[:2] == h("6217") and resp[-2:] == h("9000") and len(resp) == 0x19 + 2
    assert transmit(h("00A4080406 7F10 5F3A 4F30 00")) == h("6119")


# --- the ADN codec ---------------------------------------------------------------------------------

def test_adn_encoding_bytes():
    assert encode_adn("Alice Martin", "+33612345678") == ALICE
    assert encode_adn("Bob", "0612345678") == h(
        "426f62" + "ff" * 13 + "06 81 6021436587 ffffffffff ffff")
    assert encode_adn("x", "*86#")[16:20] == h("03 81 8AB6")
    zoe = encode_adn("Zo\u00eb", "1")
    assert zoe[:7] == h("80 005A 006F 00EB") and zoe[7:16] == b"\xff" * 9
    assert encode_adn("\u20ac5", "1")[:3] == h("1B 65 35")              # extension table
    with pytest.raises(UsimError):
        encode_adn("x", "1" * 21)
    with pytest.raises(UsimError):
        encode_adn("x", "12a")
    with pytest.raises(UsimError):
        encode_adn("x" * 17, "1")


def test_alpha_ucs2_forms():
    assert decode_alpha(h("80 0041 0042 FFFF FF")) == "AB"
    assert decode_alpha(h("81 03 08 90 41 B1 FF")) == "\u0410A\u0431"
    assert decode_alpha(h("82 02 0410 80 81 FF")) == "\u0410\u0411"
    assert decode_alpha(h("81 05 08")) == ""
    assert decode_adn(b"\xff" * 30) is None
    assert decode_adn(b"\xff" * 13) is None


NAME_CHARS = st.sampled_from([c for i, c in enumerate(GSM7_BASIC) if i != 0x1B])


@given(name=st.text(NAME_CHARS, min_size=1, max_size=16),
       digits=st.text(st.sampled_from("0123456789*#"), min_size=1, max_size=20),
       international=st.booleans())
def test_adn_round_trip(name, digits, international):
    if name.endswith("@"):
        name = name + "A"           # @ is 00: a trailing one is kept, FF is the padding
        name = name[-16:]
    number = ("+" if international else "") + digits
    rec = encode_adn(name, number)
    assert len(rec) == 30
    assert decode_adn(rec) == (name, number)


@given(st.binary(min_size=0, max_size=40))
def test_adn_decoder_never_raises(data):
    r = decode_adn(data)
    assert r is None or (isinstance(r[0], str) and isinstance(r[1], str))


@given(st.text(max_size=30))
def test_gsm7_codec(text):
    raw = gsm7_encode(text)
    if raw is not None:
        assert gsm7_decode(raw) == text


# --- `ccidkit phonebook` ---------------------------------------------------------------------------

def test_cli_text(capsys):
    assert main(["phonebook"]) == 0
    out = capsys.readouterr().out.splitlines()
    assert out[0].startswith("Card: usim  ATR 3B 97 96 80 1F C7") and out[0].endswith("(T=0)")
    assert out[1] == "EF ADN: 250 records of 30 bytes, 5 in use"
    assert out[2].split() == ["1", "Alice", "Martin", "+33612345678"]
    assert len(out) == 7


def test_cli_json_records_and_image(tmp_path, capsys):
    path = str(tmp_path / "sim.json")
    assert main(["phonebook", "--json", "--records", "4", "--image", path]) == 0
    doc = json.loads(capsys.readouterr().out)
    assert doc["records"] == 4 and doc["protocol"] == "T=0" and doc["atr"].startswith("3B9796")
    assert [e["record"] for e in doc["entries"]] == [1, 2, 3]
    c = UsimCard(image=path, records=4)
    assert c.process_apdu(h("00A4080C04 7F10 6F3A")) == h("9000")
    assert c.process_apdu(h("00DC04041E") + encode_adn("Dave", "112")) == h("9000")
    assert c.process_apdu(h("0028000108") + b"0000" + b"\xff" * 4) == h("9000")   # enable PIN1
    c.close()
    assert main(["phonebook", "--json", "--records", "4", "--image", path]) == 1
    assert "READ RECORD 1: 98 04" in capsys.readouterr().err
    assert main(["phonebook", "--json", "--records", "4", "--image", path, "--pin", "0000"]) == 0
    doc = json.loads(capsys.readouterr().out)
    assert doc["entries"][-1] == {"record": 4, "name": "Dave", "number": "112"}


def test_cli_uicc(capsys):
    assert main(["phonebook", "--uicc", "--json", "--records", "12"]) == 0
    doc = json.loads(capsys.readouterr().out)
    assert doc["method"] == "uicc" and doc["records"] == 12
    assert [e["record"] for e in doc["entries"]] == [1, 2, 3, 5, 10]
    assert doc["entries"][4] == {"record": 10, "name": "Zo\u00eb", "number": "+4915112345678"}


def test_cli_image_that_cannot_be_written(tmp_path, capsys):
    path = str(tmp_path / "no" / "such" / "dir" / "sim.json")
    assert main(["phonebook", "--records", "2", "--image", path]) == 1
    assert "IMAGE_IO" in capsys.readouterr().err
    bad = tmp_path / "bad.json"
    bad.write_text("{}")
    assert main(["phonebook", "--image", str(bad)]) == 1
    assert "IMAGE_CORRUPT" in capsys.readouterr().err


def test_gsm_alphabet_agrees_with_pyscard():
    util = pytest.importorskip("smartcard.util")
    for i, ch in enumerate(GSM7_BASIC):
        if i == 0x1B:
            continue
        assert bytes(util.toGSM3_38Bytes(ch)) == gsm7_encode(ch) == bytes((i,)), repr(ch)


def test_cli_esim_port_and_trace(capsys):
    assert main(["phonebook", "--card", "esim", "--port", "1", "--json", "--trace",
                 "--pin", "0000"]) == 0
    cap = capsys.readouterr()
    doc = json.loads(cap.out)
    assert doc["protocol"] == "T=1" and doc["entries"][0]["name"] == "Port 1 owner"
    assert "-> A0 A4 00 00 02 3F 00" in cap.err
    assert "-> A0 20 00 01 08 2A 2A 2A 2A 2A 2A 2A 2A" in cap.err     # the PIN is masked
    assert "30 30 30 30" not in cap.err


@pytest.mark.parametrize("argv", [
    ["phonebook", "--records", "0"], ["phonebook", "--records", "255"],
    ["phonebook", "--port", "1"], ["phonebook", "--card", "esim", "--port", "5"],
    ["phonebook", "--card", "auth"],
])
def test_cli_usage_errors(argv, capsys):
    try:
        rc = main(argv)
    except SystemExit as e:
        rc = e.code
    assert rc == 2
    assert "error" in capsys.readouterr().err
