"""Hex helpers and the trace format users know from ``pcscd -d``.

    -> 00 A4 04 00 07 A0 00 00 00 03 10 10
    <- 90 00
"""

import binascii

HEX_SEPARATORS = " :-\t\r\n,"


class HexError(ValueError):
    """Raised for text that is not a whole number of hex bytes."""


def to_hex(data, sep=" "):
    """Upper-case hex of ``data`` (bytes, bytearray, memoryview), one byte a pair."""
    if not data:
        return ""
    h = binascii.hexlify(bytes(data)).decode().upper()
    if not sep:
        return h
    parts = []
    for i in range(0, len(h), 2):
        parts.append(h[i:i + 2])
    return sep.join(parts)


def from_hex(text):
    """Bytes from hex text; spaces, colons, dashes and commas are ignored.

    Raises HexError on an odd digit count or a non-hex character.
    """
    if isinstance(text, (bytes, bytearray)):
        text = bytes(text).decode()
    digits = []
    for ch in text:
        if ch in HEX_SEPARATORS:
            continue
        if ch not in "0123456789abcdefABCDEF":
            raise HexError("not a hex digit: %r" % ch)
        digits.append(ch)
    s = "".join(digits)
    if len(s) % 2:
        raise HexError("odd number of hex digits (%d)" % len(s))
    return binascii.unhexlify(s)


def trace_line(direction, data, limit=0):
    """One pcscd-style trace line: direction is "->" (to the card) or "<-".

    With ``limit`` > 0, data beyond ``limit`` bytes is elided as " ... (N bytes)".
    """
    n = len(data)
    if limit and n > limit:
        return "%s %s ... (%d bytes)" % (direction, to_hex(data[:limit]), n)
    return "%s %s" % (direction, to_hex(data))
