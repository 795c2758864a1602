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


# -- masking: no PIN or secret in any trace -------------------------------------
#
# ISO/IEC 7816-4 §11.5: VERIFY (20/21), CHANGE REFERENCE DATA (24/25),
# DISABLE / ENABLE VERIFICATION REQUIREMENT (26/28), RESET RETRY COUNTER
# (2C/2D) carry reference data (PIN, PUK) in their command data field.
PIN_INS = (0x20, 0x21, 0x24, 0x25, 0x26, 0x28, 0x2C, 0x2D)
# Answers that are secrets of their own: GENERAL AUTHENTICATE (87, PIV key
# operations: a decipher or key agreement result) and PERFORM SECURITY
# OPERATION DECIPHER (2A with P1-P2 80 86, ISO/IEC 7816-8 §5.9).
MASK = "**"


def pin_data_offset(apdu):
    """Where the hidden part of a PIN command starts (after the header and
    Lc, 1 or 3 bytes), or 0 when ``apdu`` carries no PIN data."""
    n = len(apdu)
    if n <= 5 or apdu[1] not in PIN_INS:
        return 0
    return 7 if apdu[4] == 0 and n > 7 else 5


def answer_is_secret(apdu):
    """True when the response data of command ``apdu`` must not be traced."""
    if len(apdu) < 4:
        return False
    ins = apdu[1]
    return ins == 0x87 or (ins == 0x2A and apdu[2] == 0x80 and apdu[3] == 0x86)


def _masked(data, start, end):
    parts = [to_hex(data[:start])] if start else []
    parts += [MASK] * (end - start)
    if end < len(data):
        parts.append(to_hex(data[end:]))
    return " ".join(parts)


def mask_apdu(apdu):
    """Trace text of a command APDU: the data of a PIN command shown as ``**``
    (one per byte), header and length bytes kept; any other APDU as hex."""
    start = pin_data_offset(apdu)
    if not start:
        return to_hex(apdu)
    return _masked(apdu, start, len(apdu))


def mask_response(command, response):
    """Trace text of ``response`` to ``command``: the data of a secret answer
    as ``**``, SW1 SW2 kept."""
    if len(response) > 2 and answer_is_secret(command):
        return _masked(response, 0, len(response) - 2)
    return to_hex(response)


def redact_apdu(apdu):
    """The bytes of ``apdu`` with PIN data replaced by ``*`` (0x2A), for
    records kept in memory; other APDUs unchanged."""
    start = pin_data_offset(apdu)
    if not start:
        return bytes(apdu)
    return bytes(apdu[:start]) + b"*" * (len(apdu) - start)


class ApduMasker:
    """Masks one stream of commands and answers: like ``mask_apdu`` and
    ``mask_response``, and the GET RESPONSE (C0) rounds that fetch the rest
    of a secret answer (SW1 61, ISO/IEC 7816-4 §5.3.4) are hidden too."""

    def __init__(self):
        self.secret = False

    def command(self, apdu):
        """Trace text of a command; remembers whether its answer is secret."""
        if len(apdu) >= 2 and apdu[1] == 0xC0 and self.secret:
            pass                        # GET RESPONSE continuing a secret answer
        else:
            self.secret = answer_is_secret(apdu)
        return mask_apdu(apdu)

    def response(self, response):
        """(trace text, bytes to keep) of the answer to the last command:
        the data of a secret answer masked, SW1 SW2 kept."""
        secret = self.secret and len(response) > 2
        if secret:
            text = _masked(response, 0, len(response) - 2)
            kept = bytes(len(response) - 2) + bytes(response[-2:])
        else:
            text = to_hex(response)
            kept = bytes(response)
        # the secret continues only while the card has more of it (61 xx)
        self.secret = self.secret and len(response) >= 2 and response[-2] == 0x61
        return text, kept
