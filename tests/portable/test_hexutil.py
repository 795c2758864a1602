from support import h, raises

from ccidkit.core.hexutil import HexError, from_hex, to_hex, trace_line


def test_to_hex_spaced_upper_case():
    assert to_hex(h("00a40400")) == "00 A4 04 00"
    assert to_hex(b"") == ""
    assert to_hex(bytearray(b"\x01\xff"), "") == "01FF"
    assert to_hex(memoryview(b"\x90\x00")) == "90 00"


def test_from_hex_tolerates_separators_and_rejects_garbage():
    assert from_hex("3B:02 14-50") == h("3B 02 14 50")
    assert from_hex("") == b""
    with raises(HexError):
        from_hex("3B 0")
    with raises(HexError):
        from_hex("3G")


def test_trace_lines_match_pcscd_style():
    assert trace_line("->", h("00 A4 04 00")) == "-> 00 A4 04 00"
    assert trace_line("<-", h("90 00")) == "<- 90 00"
    assert trace_line("<-", bytes(10), limit=2) == "<- 00 00 ... (10 bytes)"
