"""facade-tests: the EFI Smart Card Reader and Edge facades inside UEFI.

    facade-tests [--trace] [PIN]        (default PIN 123456)

Finds the CCID readers through EFI_USB_IO (uefi/fw/usb_transport.py), runs
the Reader protocol @retval scenarios that a VM can show and the Edge
protocol's VerifyPin (wrong, then right), GetCredential and SignData (RSA
PKCS #1 v1.5 over SHA-256 of CHALLENGE with KeyId 1), and prints one line
per step for the host to check:

    facade: <step> <EFI status name> [value]

The signature, the credential list's size and the CSN are printed in hex so
that the host verifies them against the card's keys. No PIN is printed;
``--trace`` adds the CCID header of every bulk transfer (``facade-log:``).
Status: 0 when every step ran (the host judges the results), 3 without a
reader, 5 on an unexpected error.
"""

import binascii
import sys

from ccidkit.core.hexutil import to_hex
from ccidkit.uefi.fw import efi
from ccidkit.uefi.fw import scard_reader as R
from ccidkit.uefi.fw import scard_edge as E
from ccidkit.uefi.fw.efi_status import status_name

STATUS_NO_READER = 3
STATUS_FAILED = 5

CHALLENGE = b"ccidkit pre-boot challenge"
# SHA-256 of CHALLENGE (the subset has no hashlib; the host recomputes it)
CHALLENGE_SHA256 = binascii.unhexlify(
    "796633848f05972ba47cb3f62ccbc13bd5184cddbdf78f7bb2f75f1e06ebe6ba")
SELECT_PIV = bytes((0x00, 0xA4, 0x04, 0x00, 0x09, 0xA0, 0x00, 0x00, 0x03, 0x08, 0x00, 0x00, 0x10,
                    0x00, 0x00))


def to_hex_(data):
    return to_hex(data, "")


def _log(line):
    sys.stdout.write("facade-log: " + line + "\n")


def _trace(direction, data):
    # CCID headers only: the data of an XfrBlock may be a VERIFY with a PIN
    if isinstance(data, str):
        _log("%s %s" % (direction, data))
    else:
        _log("%s %s (+%d bytes)" % (direction, to_hex(data[:10]), len(data) - 10))


def _out(step, status, value=None):
    line = "facade: %s %s" % (step, status_name(status))
    if value is not None:
        line += " " + str(value)
    sys.stdout.write(line + "\n")


def reader_steps(sc):
    _out("reader.name", 0, sc.name)
    st, nlen, state, proto, alen = sc.SCardStatus(None, 0, None, 0)
    _out("reader.status.before", st, "state=%d atr=%d" % (state, alen))
    _out("reader.connect.bad_mode", sc.SCardConnect(7, R.SCARD_CA_NORESET, 3)[0])
    _out("reader.connect.bad_action", sc.SCardConnect(R.SCARD_AM_CARD, R.SCARD_CA_EJECT, 3)[0])
    _out("reader.connect.bad_combination",
         sc.SCardConnect(R.SCARD_AM_READER, R.SCARD_CA_NORESET, R.SCARD_PROTOCOL_T0)[0])
    _out("reader.connect.raw", sc.SCardConnect(R.SCARD_AM_CARD, R.SCARD_CA_NORESET,
                                               R.SCARD_PROTOCOL_RAW)[0])
    rapdu = bytearray(300)
    _out("reader.transmit.unconnected",
         sc.SCardTransmit(SELECT_PIV, len(SELECT_PIV), rapdu, 300)[0])
    st, proto = sc.SCardConnect(R.SCARD_AM_CARD, R.SCARD_CA_NORESET,
                                R.SCARD_PROTOCOL_T0 | R.SCARD_PROTOCOL_T1)
    _out("reader.connect", st, "protocol=%d" % proto)
    _out("reader.connect.again", sc.SCardConnect(R.SCARD_AM_CARD, R.SCARD_CA_NORESET, 3)[0])
    atr = bytearray(40)
    st, nlen, state, proto, alen = sc.SCardStatus(None, 0, atr, 2)
    _out("reader.status.small_atr", st, "needed=%d untouched=%d" % (alen, atr == bytearray(40)))
    name = bytearray(200)
    st, nlen, state, proto, alen = sc.SCardStatus(name, 200, atr, 40)
    _out("reader.status", st, "state=%d protocol=%d name=%s atr=%s" % (
        state, proto, R.char16_to_str(name, nlen).replace(" ", "_"),
        to_hex_(atr[:alen])))
    st, n = sc.SCardTransmit(SELECT_PIV, len(SELECT_PIV), rapdu, 1)
    _out("reader.transmit.small", st, "needed=%d untouched=%d" % (n, rapdu == bytearray(300)))
    st, n = sc.SCardTransmit(SELECT_PIV, len(SELECT_PIV), rapdu, 300)
    _out("reader.transmit", st, "sw=%02X%02X" % (rapdu[n - 2], rapdu[n - 1]) if n >= 2 else "")
    _out("reader.transmit.empty", sc.SCardTransmit(SELECT_PIV, 0, rapdu, 300)[0])
    out = bytearray(64)
    st, n = sc.SCardControl(R.CM_IOCTL_GET_FEATURE_REQUEST, None, 0, out, 64)
    _out("reader.control.features", st, to_hex_(out[:n]) if st == 0 else n)
    _out("reader.control.no_length",
         sc.SCardControl(R.CM_IOCTL_GET_FEATURE_REQUEST, None, 0, out, None)[0])
    _out("reader.control.unknown", sc.SCardControl(R.SCARD_CTL_CODE(42), None, 0, out, 64)[0])
    st, n = sc.SCardGetAttrib(R.SCARD_ATTR_VENDOR_IFD_TYPE, out, 64)
    _out("reader.attrib.ifd_type", st, bytes(out[:n - 1]).decode().replace(" ", "_") if st == 0
         else n)
    _out("reader.attrib.unknown", sc.SCardGetAttrib(0x7FFF7FFF, out, 64)[0])
    _out("reader.attrib.zero", sc.SCardGetAttrib(R.SCARD_ATTR_VENDOR_NAME, out, 0)[0])
    _out("reader.disconnect.eject", sc.SCardDisconnect(R.SCARD_CA_EJECT))
    _out("reader.disconnect.bad", sc.SCardDisconnect(9))
    _out("reader.disconnect", sc.SCardDisconnect(R.SCARD_CA_UNPOWER))
    _out("reader.disconnect.again", sc.SCardDisconnect(R.SCARD_CA_NORESET))


def edge_steps(edge, pin):
    st, naid, _, npresent, _, version = edge.GetContext(None, None, None, None)
    _out("edge.context", st, "aids=%d present=%d version=%X" % (naid, npresent, version))
    st, h = edge.Connect()
    _out("edge.connect", st)
    if st != 0:
        return
    csn = bytearray(16)
    _out("edge.csn", edge.GetCsn(h, csn), to_hex_(csn))
    _out("edge.remaining", *edge.GetPinRemaining(h))
    wrong = b"999999" if pin != b"999999" else b"888888"
    st, ok, left = edge.VerifyPin(h, len(wrong), wrong)
    _out("edge.verify.wrong", st, "result=%d remaining=%d" % (ok, left))
    sig = bytearray(256)
    _out("edge.sign.unverified", edge.SignData(h, 1, E.SC_EDGE_RSA_SIGNATURE,
                                               E.EFI_HASH_ALGORITHM_SHA256_GUID,
                                               E.EFI_PADDING_RSASSA_PKCS1V1P5_GUID,
                                               CHALLENGE_SHA256, sig))
    st, ok, left = edge.VerifyPin(h, len(pin), pin)
    _out("edge.verify.right", st, "result=%d remaining=%d" % (ok, left))
    st, n = edge.GetCredential(h, 0, None)
    _out("edge.credential.size", st, n)
    creds = bytearray(n)
    st, n = edge.GetCredential(h, n, creds)
    if st == 0:
        items = E.parse_credentials(creds[:n])
        _out("edge.credential", st, ",".join(["%d:%d:%d:%d" % (i[0], i[1], i[2], len(i[3]))
                                               for i in items]))
        _out("edge.credential.cert1", st, to_hex_(items[0][3][:16]))
    else:
        _out("edge.credential", st)
    st = edge.SignData(h, 1, E.SC_EDGE_RSA_SIGNATURE, E.EFI_HASH_ALGORITHM_SHA256_GUID,
                       E.EFI_PADDING_RSASSA_PKCS1V1P5_GUID, CHALLENGE_SHA256, sig)
    _out("edge.sign", st, to_hex_(sig))
    _out("edge.sign.bad_key", edge.SignData(h, 9, E.SC_EDGE_RSA_SIGNATURE,
                                            E.EFI_HASH_ALGORITHM_SHA256_GUID,
                                            E.EFI_PADDING_RSASSA_PKCS1V1P5_GUID,
                                            CHALLENGE_SHA256, sig))
    _out("edge.disconnect", edge.Disconnect(h))
    _out("edge.disconnect.again", edge.Disconnect(h))


def main(argv):
    args = [a for a in argv if a != "--trace"]
    pin = args[0].encode() if args else b"123456"
    try:
        readers = R.locate_readers(log=_log)
        if not readers:
            _out("no_reader", efi.EFI_NOT_FOUND, "%d USB interfaces" % len(efi.usb_devices()))
            return STATUS_NO_READER
        t = readers[0].reader.transport
        if t.string_error is not None:
            _log("string descriptors: %s" % t.string_error)
        if "--trace" in argv:
            t.trace = _trace
        reader_steps(readers[0])
        edge_steps(E.EFI_SMART_CARD_EDGE_PROTOCOL(readers[:1], log=_log), pin)
    except efi.EfiError as e:
        _out("error", e.status, e.message)
        return STATUS_FAILED
    _out("done", 0)
    return 0
