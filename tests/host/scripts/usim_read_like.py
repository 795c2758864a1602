#!/usr/bin/env python3
"""Read the phone book (EF ADN) of a SIM, the GSM way: a plain pyscard script.

Usage: usim_read_like.py [READER_INDEX]

Class A0 commands of GSM 11.11 / TS 51.011: SELECT MF 3F00, DF Telecom
7F10, EF ADN 6F3A; each SELECT answers 9F xx and the response is fetched
with GET RESPONSE (A0 C0); the record length and count come from the EF's
response; READ RECORD (A0 B2) in absolute mode reads every record. Only
pyscard is used, so the script runs the same against pcscd or anything else
offering the pyscard API.
"""

import sys

from smartcard.System import readers
from smartcard.util import toHexString, toBytes, toASCIIString
from smartcard.Exceptions import NoCardException, CardConnectionException

SELECT = "A0 A4 00 00 02"
GET_RESPONSE = "A0 C0 00 00"
READ_RECORD = "A0 B2"


def send(connection, apdu):
    data, sw1, sw2 = connection.transmit(apdu)
    return data, sw1, sw2


def select(connection, fid):
    data, sw1, sw2 = send(connection, toBytes(SELECT) + toBytes(fid))
    if sw1 == 0x9F:
        data, sw1, sw2 = send(connection, toBytes(GET_RESPONSE) + [sw2])
    if (sw1, sw2) != (0x90, 0x00):
        raise SystemExit("SELECT %s failed: %02X %02X" % (fid, sw1, sw2))
    return data


def bcd_number(data):
    digits = ""
    for b in data:
        for nibble in (b & 0x0F, b >> 4):
            if nibble == 0x0F:
                return digits
            digits += "0123456789*#abc"[nibble] if nibble < 15 else ""
    return digits


def alpha(data):
    data = [b for b in data]
    while data and data[-1] == 0xFF:
        data.pop()
    if data and data[0] == 0x80:            # UCS2, big-endian
        raw = bytes(data[1:])
        if len(raw) % 2:
            raw = raw[:-1]
        return raw.decode("utf-16-be", "replace").rstrip("\uffff")
    return toASCIIString(data)


def main():
    index = int(sys.argv[1]) if len(sys.argv) > 1 else 0
    r = readers()
    if not r:
        print("no reader")
        return 1
    print("readers: %d" % len(r))
    reader = r[index]
    print("using: %s" % reader)
    connection = reader.createConnection()
    try:
        connection.connect()
    except NoCardException:
        print("no card in %s" % reader)
        return 1
    print("ATR: %s" % toHexString(connection.getATR()))
    select(connection, "3F 00")
    select(connection, "7F 10")
    rsp = select(connection, "6F 3A")
    size = (rsp[2] << 8) | rsp[3]
    record_length = rsp[14]
    count = size // record_length
    print("EF ADN: %d records of %d bytes" % (count, record_length))
    used = 0
    for n in range(1, count + 1):
        data, sw1, sw2 = send(connection, toBytes(READ_RECORD) + [n, 0x04, record_length])
        if (sw1, sw2) != (0x90, 0x00):
            print("record %d: error %02X %02X" % (n, sw1, sw2))
            continue
        if all(b == 0xFF for b in data):
            continue
        x = record_length - 14
        length = data[x]
        number = bcd_number(data[x + 2:x + 1 + length]) if 0 < length < 0xFF else ""
        if data[x + 1] == 0x91:
            number = "+" + number
        print("record %d: %s %s" % (n, alpha(data[:x]), number))
        used += 1
    print("used records: %d" % used)
    try:
        connection.disconnect()
    except CardConnectionException as e:
        print("disconnect: %s" % e)
    return 0


if __name__ == "__main__":
    sys.exit(main())
