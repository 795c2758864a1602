"""``smartcard.util`` of the shim: the hex and ASCII helpers of pyscard 2.x."""

PACK = 1
HEX = 2
UPPERCASE = 4
COMMA = 8


def toHexString(data=None, output_format=0):
    """``[0x3B, 0x65]`` -> ``"3B 65"``; flags PACK (no blanks), HEX (0x prefix),
    UPPERCASE (0X prefix, with HEX), COMMA (comma separators). A list only."""
    if not (data is None or isinstance(data, list)):
        raise TypeError("not a list of bytes")
    if not data:
        return ""
    fmt = "%02X"
    if output_format & HEX:
        fmt = ("0X" if output_format & UPPERCASE else "0x") + fmt
    sep = "," if output_format & COMMA else ""
    if not output_format & PACK:
        sep += " "
    return sep.join([fmt % (b & 0xFF) for b in data]).rstrip()


def toBytes(bytestring):
    """``"3B 65 00"`` or ``"3B6500"`` -> ``[0x3B, 0x65, 0x00]``; TypeError otherwise."""
    try:
        return list(bytes.fromhex(bytestring))
    except (ValueError, TypeError):
        raise TypeError("not a string representing a list of bytes")


def toASCIIBytes(stringtoconvert):
    return list(stringtoconvert.encode("utf-8"))


def toASCIIString(bytelist):
    """Bytes 32..127 as characters, anything else as a period."""
    return "".join([chr(c) if 32 <= c <= 127 else "." for c in bytelist])


def padd(bytelist, length, padding="FF"):
    """``bytelist`` padded to ``length`` with the byte ``padding`` (hex text)."""
    out = list(bytelist)
    if len(out) < length:
        out.extend([int(padding, 16)] * (length - len(out)))
    return out


def HexListToBinString(hexlist):
    return bytes(hexlist).decode("utf-8")


def BinStringToHexList(binstring):
    return list(binstring.encode("utf-8"))
