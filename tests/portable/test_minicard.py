from support import h

from ccidkit.emu.card import minicard
from ccidkit.emu.card.minicard import MiniCard, build_atr, ef_content

EF1K = ef_content(0x2F00)
EF4K = ef_content(0x2F01)


def tx(card, text):
    return card.process_apdu(h(text))


def test_default_atr_offers_t0_and_t1_with_ta1_96_ifsc_32():
    card = MiniCard()
    atr = card.atr
    assert atr == h("3B 99 96 80 31 20 45 80 57") + b"ccidkit" + h("77")
    # TCK: XOR of T0..TCK is zero (ISO/IEC 7816-3 §8.2.5)
    x = 0
    for b in atr[1:]:
        x ^= b
    assert x == 0
    assert card.power_on() == atr and card.reset() == atr


def test_atr_parameters_are_adjustable():
    assert build_atr((0,), ta1=0x11, historical=b"") == h("3B 10 11")
    assert build_atr((0,), ta1=None, historical=b"") == h("3B 00")
    atr = build_atr((1,), ta1=0x13, ifsc=254, bwi=7, cwi=3, historical=b"")
    assert atr[:6] == h("3B 90 13 81 31 FE") and atr[6] == 0x73
    x = 0
    for b in atr[1:]:
        x ^= b
    assert x == 0
    assert MiniCard(atr=h("3B 00")).atr == h("3B 00")
    assert MiniCard(protocols=(0,), historical=b"").atr == h("3B 10 96")


def test_ef_contents_are_known():
    assert len(EF1K) == 1024 and EF1K[:4] == h("00 01 02 03") and EF1K[1023] == 0xFF
    assert len(EF4K) == 4096 and EF4K[1] == 7 and EF4K[256] == (256 * 7 + 1) & 0xFF


def test_select_by_fid():
    card = MiniCard()
    assert tx(card, "00 A4 00 0C 02 2F 00") == h("90 00")
    assert tx(card, "00 A4 00 00 02 2F 00 00") == h("62 0B 80 02 04 00 82 01 01 83 02 2F 00 90 00")
    assert tx(card, "00 A4 00 04 02 2F 01 00") == h("62 0B 80 02 10 00 82 01 01 83 02 2F 01 90 00")
    assert tx(card, "00 A4 00 00 02 3F 00 00") == h("62 07 82 01 38 83 02 3F 00 90 00")
    assert tx(card, "00 A4 00 00 00") == h("62 07 82 01 38 83 02 3F 00 90 00")
    # case 3 (no Le): no response data
    assert tx(card, "00 A4 00 00 02 2F 00") == h("90 00")
    assert tx(card, "00 A4 00 0C 02 2F 02") == h("6A 82")
    assert tx(card, "00 A4 00 0C 03 2F 00 00") == h("6A 87")
    assert tx(card, "00 A4 00 01 02 2F 00") == h("6A 86")
    assert tx(card, "00 A4 07 0C 02 2F 00") == h("6A 86")


def test_select_by_aid():
    card = MiniCard()
    fci = h("6F 16 84 09") + minicard.AID + h("A5 09 50 07") + b"ccidkit"
    assert tx(card, "00 A4 04 00 09 F0 63 63 69 64 6B 69 74 01 00") == fci + h("90 00")
    assert tx(card, "00 A4 04 0C 09 F0 63 63 69 64 6B 69 74 01") == h("90 00")
    assert tx(card, "00 A4 04 00 05 F0 63 63 69 64 00") == h("6A 82")
    assert tx(card, "00 A4 04 00 00") == h("67 00")
    # short Le: the FCI beyond Ne waits behind 61xx
    assert tx(card, "00 A4 04 00 09 F0 63 63 69 64 6B 69 74 01 04") == fci[:4] + h("61 14")
    assert tx(card, "00 C0 00 00 14") == fci[4:] + h("90 00")


def test_read_binary_short_and_extended():
    card = MiniCard()
    assert tx(card, "00 B0 00 00 10") == h("69 86")
    tx(card, "00 A4 00 0C 02 2F 00")
    assert tx(card, "00 B0 00 00 10") == EF1K[:16] + h("90 00")
    assert tx(card, "00 B0 00 00 00") == EF1K[:256] + h("90 00")
    assert tx(card, "00 B0 03 F8 08") == EF1K[1016:] + h("90 00")
    # past the end: 6282 with the available bytes; wildcard Le 00 is no warning
    assert tx(card, "00 B0 03 F8 10") == EF1K[1016:] + h("62 82")
    assert tx(card, "00 B0 03 F8 00") == EF1K[1016:] + h("90 00")
    assert tx(card, "00 B0 04 00 01") == h("6B 00")
    assert tx(card, "00 B0 7F FF 01") == h("6B 00")
    assert tx(card, "00 B0 00 00 00 04 00") == EF1K + h("90 00")
    assert tx(card, "00 B0 00 00 00 00 00") == EF1K + h("90 00")
    assert tx(card, "00 B0 00 10 00 04 00") == EF1K[16:] + h("62 82")
    tx(card, "00 A4 00 0C 02 2F 01")
    assert tx(card, "00 B0 00 00 00 10 00") == EF4K + h("90 00")
    assert tx(card, "00 B0 0F F0 00") == EF4K[4080:] + h("90 00")
    # errors
    assert tx(card, "00 B0 00 00") == h("67 00")
    assert tx(card, "00 B0 00 00 01 AA 10") == h("67 00")
    assert tx(card, "00 B0 81 00 10") == h("6A 81")
    # selecting the MF leaves no current EF
    tx(card, "00 A4 00 0C 02 3F 00")
    assert tx(card, "00 B0 00 00 10") == h("69 86")


def test_get_response_serves_the_rest_once():
    card = MiniCard()
    data = bytes(range(200))
    resp = card.process_apdu(h("80 EE 00 00 C8") + data + h("40"))
    assert resp == data[:64] + h("61 88")
    assert tx(card, "00 C0 00 00 08") == data[64:72] + h("61 80")
    # Le larger than what is left: the rest and 9000
    assert tx(card, "00 C0 00 00 00") == data[72:] + h("90 00")
    assert tx(card, "00 C0 00 00 00") == h("69 85")
    card.process_apdu(h("80 EE 00 00 C8") + data + h("40"))
    assert tx(card, "00 C0 00 01 10") == h("6A 86")
    assert tx(card, "00 C0 00 00 10") == h("69 85")
    # any other command discards what was left
    card.process_apdu(h("80 EE 00 00 C8") + data + h("40"))
    tx(card, "00 A4 00 0C 02 2F 00")
    assert tx(card, "00 C0 00 00 10") == h("69 85")
    # a leftover of 256 or more is announced as 61 00
    big = bytes(300)
    card.process_apdu(h("80 EE 00 00 00 01 2C") + big + h("00 10"))
    assert tx(card, "00 C0 00 00 00") == bytes(256) + h("61 1C")


def test_echo_any_length():
    card = MiniCard()
    assert tx(card, "80 EE 00 00 03 01 02 03 00") == h("01 02 03 90 00")
    assert tx(card, "80 EE 00 00 03 01 02 03") == h("90 00")
    data = bytes([i & 0xFF for i in range(4096)])
    cmd = h("80 EE 00 00 00 10 00") + data + h("10 00")
    assert card.process_apdu(cmd) == data + h("90 00")
    cmd = h("80 EE 00 00 00 10 00") + data + h("00 00")
    assert card.process_apdu(cmd) == data + h("90 00")
    big = bytes([(i * 3) & 0xFF for i in range(65535)])
    assert card.process_apdu(h("80 EE 00 00 00 FF FF") + big + h("00 00")) == big + h("90 00")
    assert tx(card, "80 EE 00 00 00") == h("67 00")
    assert tx(card, "80 EE 01 00 01 AA 00") == h("6A 86")
    assert card.count(0xEE) == 7


def test_echo_over_a_command_chain():
    card = MiniCard()
    assert tx(card, "90 EE 00 00 02 01 02") == h("90 00")
    assert tx(card, "90 EE 00 00 01 03") == h("90 00")
    assert tx(card, "80 EE 00 00 01 04 00") == h("01 02 03 04 90 00")
    # another command abandons the chain
    tx(card, "90 EE 00 00 02 01 02")
    tx(card, "00 A4 00 0C 02 2F 00")
    assert tx(card, "80 EE 00 00 01 04 00") == h("04 90 00")
    # chaining is refused where the card does not support it
    assert tx(card, "10 B0 00 00 10") == h("68 84")
    assert tx(card, "10 A4 00 0C 02 2F 00") == h("68 84")


def test_status_words_for_everything_else():
    card = MiniCard()
    table = (
        ("00 12 00 00", "6D 00"),       # unknown INS
        ("80 A4 00 0C 02 2F 00", "6E 00"),  # interindustry INS in a proprietary class
        ("00 EE 00 00 01 AA 00", "6E 00"),  # ECHO in the interindustry class
        ("40 A4 00 0C 02 2F 00", "6E 00"),
        ("FF A4 00 0C 02 2F 00", "6E 00"),
        ("01 A4 00 0C 02 2F 00", "68 81"),  # logical channel 1
        ("0C A4 00 0C 02 2F 00", "68 82"),  # secure messaging
        ("00 60 00 00", "6D 00"),       # INS 6X / 9X are invalid
        ("00 9A 00 00", "6D 00"),
        # malformed APDUs: the status word a card gives, never an exception
        ("00", "67 00"),
        ("00 A4", "67 00"),
        ("00 A4 00", "67 00"),
        ("00 A4 00 0C 05 2F 00", "67 00"),
        ("00 A4 00 0C 00 2F", "67 00"),
        ("00 B0 00 00 00 01", "67 00"),
    )
    for cmd, sw in table:
        assert tx(card, cmd) == h(sw), cmd
    assert card.process_apdu(b"") == h("67 00")


def test_counters_prove_a_command_ran_once():
    card = MiniCard()
    assert card.count(0xA4) == 0
    tx(card, "00 A4 00 0C 02 2F 00")
    tx(card, "00 B0 00 00 10")
    tx(card, "00 B0 00 10 10")
    assert card.count(0xA4) == 1 and card.count(0xB0) == 2 and card.commands == 3
    # power events reset the session, not the counters
    card.power_off()
    assert not card.powered
    card.power_on()
    assert card.powered and card.power_ups == 1
    assert tx(card, "00 B0 00 00 10") == h("69 86")
    assert card.count(0xB0) == 3
