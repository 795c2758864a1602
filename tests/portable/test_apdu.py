from support import h, raises

from ccidkit.core.apdu import (APDUError, CommandAPDU, ResponseAPDU, chain, explain_sw,
                               get_response_apdu, get_response_cla, reissue_with_le,
                               transmit_with_auto_response)

D3 = h("01 02 03")
D300 = bytes([i & 0xFF for i in range(300)])


def test_every_case_round_trips():
    # (constructor arguments, encoding, case name)
    table = (
        ((0x00, 0xA4, 0x00, 0x00), {}, "00 A4 00 00", "1"),
        ((0x00, 0xB0, 0x00, 0x00), {"ne": 16}, "00 B0 00 00 10", "2S"),
        ((0x00, 0xB0, 0x00, 0x00), {"ne": 256}, "00 B0 00 00 00", "2S"),
        ((0x00, 0xA4, 0x00, 0x0C), {"data": D3}, "00 A4 00 0C 03 01 02 03", "3S"),
        ((0x80, 0xEE, 0x00, 0x00), {"data": D3, "ne": 256}, "80 EE 00 00 03 01 02 03 00", "4S"),
        ((0x80, 0xEE, 0x00, 0x00), {"data": D3, "ne": 1}, "80 EE 00 00 03 01 02 03 01", "4S"),
        ((0x00, 0xB0, 0x00, 0x00), {"ne": 257}, "00 B0 00 00 00 01 01", "2E"),
        ((0x00, 0xB0, 0x00, 0x00), {"ne": 65536}, "00 B0 00 00 00 00 00", "2E"),
        ((0x00, 0xB0, 0x00, 0x00), {"ne": 4096}, "00 B0 00 00 00 10 00", "2E"),
        ((0x00, 0xB0, 0x00, 0x00), {"ne": 16, "extended": True}, "00 B0 00 00 00 00 10", "2E"),
        ((0x00, 0xD6, 0x00, 0x00), {"data": D3, "extended": True}, "00 D6 00 00 00 00 03 01 02 03", "3E"),
        ((0x80, 0xEE, 0x00, 0x00), {"data": D3, "ne": 65536}, "80 EE 00 00 00 00 03 01 02 03 00 00", "4E"),
        ((0x80, 0xEE, 0x00, 0x00), {"data": D3, "ne": 300}, "80 EE 00 00 00 00 03 01 02 03 01 2C", "4E"),
    )
    for args, kw, enc, name in table:
        cmd = CommandAPDU(*args, **kw)
        raw = h(enc)
        assert cmd.to_bytes() == raw, enc
        assert cmd.case_name == name, enc
        back = CommandAPDU.parse(raw)
        assert back == cmd, enc
        assert back.to_bytes() == raw
        assert back.case == int(name[0]) and back.extended == name.endswith("E")
    # long data goes extended automatically; exact bytes of the Lc field
    cmd = CommandAPDU(0x80, 0xEE, 0, 0, D300, ne=256)
    raw = cmd.to_bytes()
    assert cmd.case_name == "4E" and raw[:7] == h("80 EE 00 00 00 01 2C") and raw[-2:] == h("01 00")
    assert CommandAPDU.parse(raw) == cmd and CommandAPDU.parse(raw).data == D300
    big = bytes(65535)
    cmd = CommandAPDU(0x80, 0xEE, 0, 0, big)
    assert cmd.to_bytes()[4:7] == h("00 FF FF") and len(cmd.to_bytes()) == 65542
    assert CommandAPDU.parse(cmd.to_bytes()).nc == 65535


def test_fields_and_forcing():
    cmd = CommandAPDU.parse(h("00 A4 04 00 02 3F 00 00"))
    assert (cmd.cla, cmd.ins, cmd.p1, cmd.p2) == (0, 0xA4, 4, 0)
    assert cmd.data == h("3F 00") and cmd.ne == 256 and cmd.nc == 2 and cmd.header() == h("00 A4 04 00")
    # case 1 is never extended, even when asked
    assert not CommandAPDU(0, 0xA4, 0, 0, extended=True).extended
    with raises(APDUError) as r:
        CommandAPDU(0, 0xB0, 0, 0, ne=257, extended=False)
    assert r.value.name == "NOT_SHORT"
    with raises(APDUError) as r:
        CommandAPDU(0, 0xD6, 0, 0, D300, extended=False)
    assert r.value.name == "NOT_SHORT"


def test_bad_values_are_refused():
    table = (
        (lambda: CommandAPDU(256, 0, 0, 0), "BAD_FIELD"),
        (lambda: CommandAPDU(0, -1, 0, 0), "BAD_FIELD"),
        (lambda: CommandAPDU(0, 0, 0, 0x100), "BAD_FIELD"),
        (lambda: CommandAPDU(0, 0xB0, 0, 0, ne=0), "BAD_NE"),
        (lambda: CommandAPDU(0, 0xB0, 0, 0, ne=65537), "BAD_NE"),
        (lambda: CommandAPDU(0, 0xD6, 0, 0, bytes(65536)), "DATA_TOO_LONG"),
        (lambda: ResponseAPDU(b"", 0x190, 0), "BAD_FIELD"),
    )
    for make, name in table:
        with raises(APDUError) as r:
            make()
        assert r.value.name == name, name


def test_malformed_command_apdus():
    table = (
        ("", "APDU_TOO_SHORT"),
        ("00", "APDU_TOO_SHORT"),
        ("00 A4 00", "APDU_TOO_SHORT"),
        ("00 A4 00 00 00 01", "BAD_LENGTH"),           # short Lc of 00
        ("00 A4 00 00 03 01 02", "BAD_LENGTH"),        # Lc beyond the data
        ("00 A4 00 00 02 01 02 03 04", "BAD_LENGTH"),  # trailing bytes after Le
        ("00 A4 00 00 01 01 00 00", "BAD_LENGTH"),     # short Lc, extended Le
        ("00 A4 00 00 00 00 01 AA 00", "BAD_LENGTH"),  # extended Lc, short Le
        ("00 A4 00 00 00 00 00 AA", "BAD_LENGTH"),     # extended Lc 0000 with data
        ("00 A4 00 00 00 00 03 01 02", "BAD_LENGTH"),  # extended Lc beyond the data
        ("00 A4 00 00 00 00 01 01 02 03 04", "BAD_LENGTH"),
        ("00 A4 00 00 00 01", "BAD_LENGTH"),           # 00 then a single byte
    )
    for text, name in table:
        with raises(APDUError) as r:
            CommandAPDU.parse(h(text))
        assert r.value.name == name, text
        assert str(r.value).startswith(name + ": ")


def test_response_apdu():
    r = ResponseAPDU.parse(h("01 02 90 00"))
    assert r.data == h("01 02") and r.sw1 == 0x90 and r.sw2 == 0 and r.sw == 0x9000 and r.ok
    assert r.to_bytes() == h("01 02 90 00")
    r = ResponseAPDU.parse(bytearray(h("63 C2")))
    assert r.data == b"" and r.sw == 0x63C2 and not r.ok
    assert r.explain() == "63 C2: verification failed, 2 tries left"
    assert ResponseAPDU(b"", 0x90, 0) == ResponseAPDU.parse(h("90 00"))
    for bad in ("", "90"):
        with raises(APDUError) as e:
            ResponseAPDU.parse(h(bad))
        assert e.value.name == "RESPONSE_TOO_SHORT"
    with raises(APDUError) as e:
        ResponseAPDU.parse(None)
    assert e.value.name == "NO_RESPONSE"


def test_explain_sw():
    table = (
        (0x90, 0x00, "90 00: normal processing, no further qualification"),
        (0x61, 0x10, "61 10: normal processing, 16 bytes still available (GET RESPONSE with Le=10)"),
        (0x61, 0x00, "61 00: normal processing, 256 or more bytes still available (GET RESPONSE with Le=00)"),
        (0x62, 0x82, "62 82: warning, end of file or record reached before reading Ne bytes"),
        (0x63, 0xC2, "63 C2: verification failed, 2 tries left"),
        (0x63, 0xC1, "63 C1: verification failed, 1 try left"),
        (0x63, 0xC0, "63 C0: verification failed, 0 tries left"),
        (0x64, 0x00, "64 00: execution error, non-volatile memory unchanged"),
        (0x65, 0x81, "65 81: execution error, memory failure"),
        (0x67, 0x00, "67 00: wrong length (Lc or Le)"),
        (0x68, 0x84, "68 84: command chaining not supported"),
        (0x69, 0x82, "69 82: security status not satisfied"),
        (0x69, 0x86, "69 86: command not allowed (no current EF)"),
        (0x6A, 0x82, "6A 82: file or application not found"),
        (0x6A, 0x86, "6A 86: incorrect parameters P1-P2"),
        (0x6B, 0x00, "6B 00: wrong parameters P1-P2 (offset outside the EF)"),
        (0x6C, 0x08, "6C 08: wrong Le field, 8 bytes available (re-issue with Le=08)"),
        (0x6D, 0x00, "6D 00: instruction code not supported or invalid"),
        (0x6E, 0x00, "6E 00: class not supported"),
        (0x6F, 0x00, "6F 00: no precise diagnosis"),
        (0x9F, 0x22, "9F 22: normal processing, 34 bytes of response available (GSM GET RESPONSE)"),
        (0x91, 0x1A, "91 1A: normal processing, proactive command of 26 bytes pending (FETCH)"),
        (0x98, 0x04, "98 04: access condition not fulfilled (GSM)"),
        (0x12, 0x34, "12 34: not a status word (SW1 must be 6X or 9X)"),
    )
    for sw1, sw2, text in table:
        assert explain_sw(sw1, sw2) == text, text
    # every status word gets some text
    for sw1 in (0x60, 0x62, 0x66, 0x69, 0x6A, 0x90, 0x92, 0x9E, 0xA0):
        for sw2 in (0x00, 0x01, 0x7F, 0xFF):
            assert len(explain_sw(sw1, sw2)) > 7


def test_get_response_and_6cxx_helpers():
    assert get_response_apdu(0x00, 0x10).to_bytes() == h("00 C0 00 00 10")
    assert get_response_apdu(0x10, 0x00).to_bytes() == h("00 C0 00 00 00")
    assert get_response_apdu(0x01, 0x05).to_bytes() == h("01 C0 00 00 05")
    assert get_response_cla(0x80) == 0x00 and get_response_cla(0x13) == 0x03
    assert reissue_with_le(h("00 B0 00 00 00"), 0x08).to_bytes() == h("00 B0 00 00 08")
    cmd = CommandAPDU(0x80, 0xEE, 0, 0, D3, ne=1)
    assert reissue_with_le(cmd, 0x03).to_bytes() == h("80 EE 00 00 03 01 02 03 03")
    assert reissue_with_le(h("00 B0 00 00 00 00 10"), 0x08).to_bytes() == h("00 B0 00 00 00 00 08")
    assert reissue_with_le(h("00 84 00 00"), 0x00).to_bytes() == h("00 84 00 00 00")


class ScriptedCard:
    """Answers from a script of (expected command, response) pairs."""

    def __init__(self, script):
        self.script = list(script)
        self.sent = []

    def __call__(self, cmd):
        self.sent.append(bytes(cmd))
        expected, resp = self.script.pop(0)
        assert bytes(cmd) == h(expected), (bytes(cmd), expected)
        return h(resp)


def test_transmit_with_auto_response_follows_61_and_6c():
    card = ScriptedCard((
        ("00 B0 00 00 00", "6C 04"),
        ("00 B0 00 00 04", "01 02 03 04 61 03"),
        ("00 C0 00 00 03", "6C 02"),
        ("00 C0 00 00 02", "05 06 61 01"),
        ("00 C0 00 00 01", "07 90 00"),
    ))
    assert transmit_with_auto_response(h("00 B0 00 00 00"), card) == h("01 02 03 04 05 06 07 90 00")
    assert card.script == []
    # a final error status ends the exchange with the data gathered so far
    card = ScriptedCard((("80 EE 00 00 01 AA 00", "61 02"), ("00 C0 00 00 02", "6A 82")))
    assert transmit_with_auto_response(h("80 EE 00 00 01 AA 00"), card) == h("6A 82")
    # bounded
    endless = ScriptedCard([("00 B0 00 00 00", "6C 00")] * 5)
    with raises(APDUError) as r:
        transmit_with_auto_response(h("00 B0 00 00 00"), endless, max_rounds=5)
    assert r.value.name == "TOO_MANY_ROUNDS" and len(endless.sent) == 5
    with raises(APDUError) as r:
        transmit_with_auto_response(h("00 B0 00 00 00"), lambda c: None)
    assert r.value.name == "NO_RESPONSE"


def test_command_chaining():
    cmd = CommandAPDU(0x80, 0xEE, 0, 0, D300, ne=65536)
    parts = chain(cmd)
    assert len(parts) == 2
    assert parts[0].to_bytes() == h("90 EE 00 00 FF") + D300[:255]
    assert parts[1].to_bytes() == h("80 EE 00 00 2D") + D300[255:] + h("00")
    parts = chain(cmd.to_bytes(), max_lc=100)
    assert [p.cla for p in parts] == [0x90, 0x90, 0x80]
    assert [p.nc for p in parts] == [100, 100, 100]
    assert [p.ne for p in parts] == [None, None, 256]
    joined = b""
    for p in parts:
        assert not p.extended
        joined += p.data
    assert joined == D300
    # short enough: one command, unchanged
    assert chain(h("00 A4 00 0C 02 2F 00")) == [CommandAPDU.parse(h("00 A4 00 0C 02 2F 00"))]
    assert len(chain(CommandAPDU(0, 0xD6, 0, 0, bytes(255)))) == 1
    assert len(chain(CommandAPDU(0, 0xD6, 0, 0, bytes(256)))) == 2
    for bad in ((h("10 D6 00 00 01 00"), 255), (h("00 D6 00 00 01 00"), 0), (h("00 D6 00 00 01 00"), 256)):
        with raises(APDUError) as r:
            chain(bad[0], bad[1])
        assert r.value.name == "BAD_CHAIN"
