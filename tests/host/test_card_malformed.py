"""Malformed and refused commands: one row per case, the exact status word each gets
(ISO/IEC 7816-4 §5.6, TS 51.011 §9.4), and properties that no bytes make a card raise."""

import pytest
from hypothesis import given, strategies as st

from ccidkit.emu.card.t0 import T0Card
from ccidkit.emu.cardos import DF, PIN, RecordEF, TransparentEF, CardOS, build_card_atr
from ccidkit.emu.cards import make_card


def h(text):
    return bytes.fromhex(text.replace(" ", ""))


def generic_card():
    """A card OS with extended APDUs, 4 channels, no GSM face."""
    mf = DF(0x3F00, pins=(0x01,))
    mf.add(TransparentEF(0x2F01, data=bytes(range(32))))
    mf.add(RecordEF(0x2F02, 4, 2, [b"abcd", b"efgh"]))
    mf.add(TransparentEF(0x2F03, data=b"pin", read=0x01))
    pins = [PIN(0x01, "1234", retries=3, puk="12345678")]
    c = CardOS(mf, build_card_atr(protocols=(0, 1)), pins=pins, extended=True,
               data_objects={0x5F52: b"\x01"})
    c.power_on()
    return c


def usim_card():
    c = make_card("usim", records=10)
    c.power_on()
    return c


CARDS = {"os": generic_card, "usim": usim_card}

SEL_EF = "00A4000C02 2F01"
SEL_REC = "00A4000C02 2F02"
SEL_ADN = "00A4080C04 7F10 6F3A"
WRONG = "0020000108 39393939FFFFFFFF"

# (card, commands sent first, the command, its status word, what it shows)
ROWS = [
    # --- the APDU's own structure (ISO/IEC 7816-3 §12.1.3, 7816-4 §5.1)
    ("os", [], "", "6700", "no bytes at all"),
    ("os", [], "00", "6700", "1 byte"),
    ("os", [], "00A400", "6700", "3 bytes: no P2"),
    ("os", [SEL_EF], "00D6000005 4142", "6700", "Lc beyond the data"),
    ("os", [SEL_EF], "00D6000002 41424344", "6700", "more bytes than Lc + Le"),
    ("os", [SEL_EF], "00D6000000 41", "6700", "short Lc 00 with data"),
    ("os", [SEL_EF], "00D60000 000000 41", "6700", "extended Lc 0000 with data"),
    ("os", [SEL_EF], "00D60000 000003 4142", "6700", "extended Lc beyond the data"),
    ("os", [SEL_EF], "00B0 0000 0000", "6700", "two bytes after the header: neither form"),
    ("usim", [SEL_ADN], "00B2 0104 00001E", "6700", "extended Le where not supported"),
    ("usim", [SEL_ADN], "00DC 0104 00001E" + "00" * 30, "6700", "extended Lc where not supported"),
    # --- CLA (ISO/IEC 7816-4 §5.4.1)
    ("os", [], "FFA4000C02 3F00", "6E00", "CLA FF is PPS"),
    ("os", [], "20A4000C02 3F00", "6E00", "CLA 2X is reserved"),
    ("os", [], "E0A4000C02 3F00", "6E00", "CLA EX"),
    ("os", [], "A0A4000002 3F00", "6E00", "class A0 on a card without the GSM face"),
    ("os", [], "80A4000C02 3F00", "6E00", "interindustry INS in a proprietary class"),
    ("os", [], "00F2000000", "6E00", "STATUS in class 00"),
    ("os", [], "04A4000C02 3F00", "6882", "secure messaging bits"),
    ("os", [], "60A4000C02 3F00", "6882", "secure messaging bit of a further class"),
    ("os", [], "01A4000C02 3F00", "6881", "channel 1 not open"),
    ("os", [], "4FA4000C02 3F00", "6881", "channel 19 beyond the card's"),
    ("os", [], "10A4000C02 3F00", "6884", "chaining where not supported"),
    ("usim", [], "80A4000C02 3F00", "6E00", "interindustry INS in the UICC's class 8X"),
    ("usim", [], "83A4000C02 3F00", "6881", "class 83: channel 3 not open"),
    # --- INS (ISO/IEC 7816-3 §10.3.2, 7816-4 §5.4.2)
    ("os", [], "0050000000", "6D00", "unknown INS"),
    ("os", [], "0060000000", "6D00", "INS 6X is invalid"),
    ("os", [], "009A000000", "6D00", "INS 9X is invalid"),
    ("os", [], "8050000000", "6D00", "unknown proprietary INS"),
    ("os", [], "00C2000000", "6D00", "ENVELOPE at APDU level"),
    # --- P1-P2
    ("os", [], "00A4050C02 2F01", "6A86", "SELECT P1 05"),
    ("os", [], "00A400FC02 2F01", "6A86", "SELECT P2 high bits"),
    ("os", [], "00A4000C03 2F0100", "6A87", "SELECT by FID with 3 bytes"),
    ("os", [SEL_EF], "00B0002000", "6B00", "READ BINARY offset = size"),
    ("os", [SEL_EF], "00B0C00001", "6A86", "READ BINARY b8 with b7-b6 set"),
    ("os", [SEL_REC], "00B2010104", "6A86", "READ RECORD mode 1"),
    ("os", [SEL_REC], "00B2010204", "6A86", "READ RECORD next with P1"),
    ("os", [], "0070400000", "6A86", "MANAGE CHANNEL P1 40"),
    ("os", [], "0070800000", "6A86", "closing the basic channel"),
    ("os", [], "00C0010000", "6A86", "GET RESPONSE P1"),
    ("os", [], "0020010108 31323334FFFFFFFF", "6A86", "VERIFY P1 01"),
    # --- files
    ("os", [], "00A4000C02 6F01", "6A82", "file not found"),
    ("os", [], "00A4040C05 A000000000", "6A82", "application not found"),
    ("os", [], "00B0000001", "6986", "no current EF"),
    ("os", [SEL_REC], "00B0000001", "6981", "READ BINARY on a record EF"),
    ("os", [SEL_EF], "00B2010404", "6981", "READ RECORD on a transparent EF"),
    ("os", [SEL_REC], "00B2030404", "6A83", "record not found"),
    ("os", [SEL_REC], "00B2000404", "6A83", "no current record"),
    ("os", [SEL_REC], "00B2010403", "6C04", "Le is not the record length"),
    ("os", [SEL_REC], "00B20104", "6700", "READ RECORD without Le"),
    ("os", [SEL_EF], "00B00000", "6700", "READ BINARY without Le"),
    ("os", [SEL_EF], "00D60000", "6700", "UPDATE BINARY without data"),
    ("os", [SEL_EF], "00D6001F02 4142", "6700", "UPDATE BINARY past the end"),
    ("os", [SEL_REC], "00DC010403 414243", "6700", "UPDATE RECORD of the wrong length"),
    ("os", [], "00CA5F5300", "6A88", "GET DATA of an absent object"),
    # --- security
    ("os", ["00A4000C02 2F03"], "00B0000003", "6982", "security status not satisfied"),
    ("os", [], WRONG, "63C2", "wrong PIN: 2 tries left"),
    ("os", [WRONG, WRONG], WRONG, "63C0", "wrong PIN: none left"),
    ("os", [WRONG, WRONG, WRONG], "0020000108 31323334FFFFFFFF", "6983", "blocked"),
    ("os", [], "0020000204 31323334", "6A88", "no PIN 02"),
    ("os", [], "0020000104 31323334", "6700", "PIN not 8 bytes"),
    ("os", [], "0028000108 31323334FFFFFFFF", "6985", "ENABLE an enabled PIN"),
    ("os", [], "00C0000000", "6985", "GET RESPONSE with nothing pending"),
    ("os", [], "002C000104 31323334", "6700", "RESET RETRY COUNTER of the wrong length"),
    # --- the GSM SIM face (TS 51.011 §9.4)
    ("usim", [], "A050000000", "6D00", "unknown INS in class A0"),
    ("usim", [], "A060000000", "6D00", "INS 6X in class A0"),
    ("usim", [], "A0A4000003 3F0000", "6700", "SELECT with P3 03"),
    ("usim", [], "A0A4010002 3F00", "6B00", "SELECT with P1 01"),
    ("usim", [], "A0A4000002 1234", "9404", "file ID not found"),
    ("usim", [], "A0B201041E", "9400", "no EF selected"),
    ("usim", ["A0A4000002 7F10", "A0A4000002 6F3A"], "A0B20B041E", "9402", "record 11 of 10"),
    ("usim", ["A0A4000002 7F10", "A0A4000002 6F3A"], "A0B201051E", "6B00", "mode 5"),
    ("usim", ["A0A4000002 7F10", "A0A4000002 6F3A"], "A0B201041F", "6700", "P3 is not 30"),
    ("usim", ["A0A4000002 7F10", "A0A4000002 6F3A"], "A0B0000001", "9408", "binary on records"),
    ("usim", ["A0A4000002 2FE2"], "A0D6000001 00", "9804", "update ICCID: never"),
    ("usim", [], "A0C0000010", "6F00", "GET RESPONSE with nothing pending"),
    ("usim", [], "A020000108 30303030FFFFFFFF", "9808", "VERIFY a disabled CHV1"),
    ("usim", [], "A020000308 30303030FFFFFFFF", "6B00", "CHV3"),
    ("usim", ["A028000108 30303030FFFFFFFF"], "A020000108 39393939FFFFFFFF", "9804",
     "wrong CHV1, tries left"),
    ("usim", ["A028000108 30303030FFFFFFFF", "A020000108 39393939FFFFFFFF",
              "A020000108 39393939FFFFFFFF"], "A020000108 39393939FFFFFFFF", "9840",
     "wrong CHV1, blocked"),
    # --- the UICC face
    ("usim", [], "00A4000C02 6F3A", "6A82", "6F3A is not under the MF"),
    ("usim", [SEL_ADN], "00B201041D", "6C1E", "READ RECORD Le: 6C with the record length"),
    ("usim", [SEL_ADN], "00B20B041E", "6A83", "record 11 of 10"),
    ("usim", ["0028000108 30303030FFFFFFFF", "0070000001", "01A4080C04 7F10 6F3A"],
     "01B201041E", "6982", "PIN1 enabled, not verified on this channel"),
    ("usim", [], "80F2030000", "6A86", "STATUS P1 03"),
    ("usim", [], "0070000401", "6A86", "channel 4 of 4"),
]


@pytest.mark.parametrize("card,before,apdu,sw,why", ROWS, ids=[r[4] for r in ROWS])
def test_status_word(card, before, apdu, sw, why):
    c = CARDS[card]()
    for cmd in before:
        c.process_apdu(h(cmd))
    resp = c.process_apdu(h(apdu))
    assert resp.hex().upper()[-4:] == sw and len(resp) == 2, why


def test_rows_cover_the_status_words_the_brief_names():
    got = set(r[3] for r in ROWS)
    for sw in ("6700", "6E00", "6D00", "6A86", "6B00", "6982", "6A82", "6A83", "6985", "6983",
               "63C2", "63C0", "6C04", "6881", "6882", "6884", "6A87", "6A88", "6981", "6986",
               "9404", "9402", "9400", "9408", "9804", "9808", "9840"):
        assert sw in got


# --- nothing escapes the card ----------------------------------------------------------------------

def _valid_sw(resp):
    assert isinstance(resp, bytes) and len(resp) >= 2
    sw1 = resp[-2]
    assert 0x61 <= sw1 <= 0x6F or 0x90 <= sw1 <= 0x9F, resp.hex()


@given(st.binary(max_size=300))
def test_arbitrary_bytes_get_a_status_word(data):
    for make in (generic_card, usim_card):
        _valid_sw(make().process_apdu(data))


INS = [0xA4, 0xB0, 0xD6, 0xB2, 0xDC, 0xC0, 0xCA, 0x20, 0x24, 0x26, 0x28, 0x2C, 0x70, 0xF2, 0x10]
CLA = [0x00, 0x01, 0x02, 0x03, 0x40, 0x41, 0x80, 0x81, 0xA0, 0x10, 0x0C]

command = st.builds(
    lambda cla, ins, p1, p2, data, le: bytes((cla, ins, p1, p2))
    + (bytes((len(data),)) + data if data else b"") + (bytes((le,)) if le is not None else b""),
    st.sampled_from(CLA), st.sampled_from(INS), st.integers(0, 255),
    st.sampled_from([0x00, 0x04, 0x0C, 0x02, 0x03, 0x01, 0x14, 0x81, 0x80]),
    st.one_of(st.just(b""), st.sampled_from([h("3F00"), h("7F10"), h("6F3A"), h("2F00"),
                                             h("7F10 6F3A"), h("A0000000871002"),
                                             b"0000\xff\xff\xff\xff", b"1234\xff\xff\xff\xff",
                                             b"0000\xff\xff\xff\xff" * 2]),
              st.binary(min_size=1, max_size=40)),
    st.one_of(st.none(), st.integers(0, 255)),
)


@given(st.lists(command, max_size=25))
def test_command_sequences_never_raise(cmds):
    c = usim_card()
    g = generic_card()
    for cmd in cmds:
        _valid_sw(c.process_apdu(cmd))
        _valid_sw(g.process_apdu(cmd))
    c.reset(warm=True)
    _valid_sw(c.process_apdu(h("00A4000C02 3F00")))


@given(st.lists(st.binary(min_size=5, max_size=40), max_size=10))
def test_t0_tpdus_never_raise(tpdus):
    engine = T0Card(usim_card())
    for tpdu in tpdus:
        resp = engine.process_tpdu(tpdu)
        if resp is not None:
            _valid_sw(resp)
