"""`ccidkit phonebook`: read a SIM's phone book (EF ADN) the way GSM-era readers do.

    ccidkit phonebook                       # the virtual USIM, 250 records
    ccidkit phonebook --records 20 --json
    ccidkit phonebook --image card.json     # a persistent card image
    ccidkit phonebook --card esim --port 1  # one port of the eSIM-like card (T=1, NAD)
    ccidkit phonebook --uicc                # the USIM way: class 00, DF Phonebook, EF PBR

The reader part (``read_phonebook``) only needs ``transmit(apdu) -> response``:
in class A0 (TS 51.011) it selects 3F00, 7F10 and 6F3A, reads each 9Fxx
answer with GET RESPONSE, takes the record length (byte 15) and the file
size (bytes 3-4) from the EF's response, then READ RECORD 1..N, and decodes
the alpha identifier and the BCD number of every record. Here it talks to a
virtual card in-process through the card-side T=0 engine at TPDU level (or
T=1 for a card that offers only T=1), so the 9Fxx / GET RESPONSE flow is the
real one.

With ``--uicc`` (``read_phonebook_uicc``) it reads as a USIM-aware reader
does instead (TS 102 221 / TS 31.102): class 00, SELECT by path 7F10 5F3A
with the FCP template (61xx / GET RESPONSE), EF PBR 4F30 whose A8 template
names the EF ADN (tag C0: file identifier and SFI), that EF's FCP for the
record length and count, then READ RECORD 1..N.

Exit status: 0 the phone book was read, 1 the card refused (the status word
is printed), 2 usage error.
"""

import json
import sys

from ccidkit.core.apdu import APDUError, explain_sw, transmit_with_auto_response
from ccidkit.core.atr import parse_atr
from ccidkit.core.errors import CcidkitError
from ccidkit.core.hexutil import ApduMasker, redact_apdu, to_hex
from ccidkit.core.t0 import T0Reader
from ccidkit.core.t1 import T1Reader
from ccidkit.emu.card.t0 import T0Card
from ccidkit.emu.card.t1 import T1Card
from ccidkit.emu.cards import make_card
from ccidkit.emu.cards.usim import decode_adn

CLA_GSM = 0xA0
FID_MF = 0x3F00
FID_TELECOM = 0x7F10
FID_ADN = 0x6F3A
MAX_RECORDS = 254


class PhonebookError(CcidkitError):
    """The card did not give its phone book; ``code`` is SW1SW2 when the card answered.

    ``name``: SELECT_FAILED, GET_RESPONSE_FAILED, NOT_RECORDS (EF ADN is not a
    record file), READ_FAILED, VERIFY_FAILED, BAD_RESPONSE.
    """


def _sw(resp):
    if resp is None or len(resp) < 2:
        raise PhonebookError("the card's answer has no status word", name="BAD_RESPONSE")
    return resp[-2], resp[-1]


def _select(transmit, fid):
    """SELECT in class A0; the 51.011 response via GET RESPONSE (§9.2.1, §9.2.18)."""
    resp = transmit(bytes((CLA_GSM, 0xA4, 0x00, 0x00, 0x02, fid >> 8, fid & 0xFF)))
    sw1, sw2 = _sw(resp)
    if sw1 != 0x9F:
        raise PhonebookError("SELECT %04X: %s" % (fid, explain_sw(sw1, sw2)),
                             code=(sw1 << 8) | sw2, name="SELECT_FAILED")
    resp = transmit(bytes((CLA_GSM, 0xC0, 0x00, 0x00, sw2)))
    sw1, sw2 = _sw(resp)
    if (sw1, sw2) != (0x90, 0x00):
        raise PhonebookError("GET RESPONSE after SELECT %04X: %s" % (fid, explain_sw(sw1, sw2)),
                             code=(sw1 << 8) | sw2, name="GET_RESPONSE_FAILED")
    return bytes(resp[:-2])


def read_phonebook(transmit, pin=None, max_records=None):
    """Read EF ADN over ``transmit(apdu_bytes) -> response_bytes``.

    ``pin`` (bytes or str) is presented as CHV1 first when given (a card
    answering 98 08, CHV1 disabled, is read all the same). Returns
    {"record_length", "records", "entries": [{"record", "name", "number"}]}
    with the non-empty records. PhonebookError when the card refuses.
    """
    _select(transmit, FID_MF)
    _select(transmit, FID_TELECOM)
    info = _select(transmit, FID_ADN)
    if len(info) < 15:
        raise PhonebookError("EF ADN response of %d bytes, 15 expected" % len(info),
                             name="BAD_RESPONSE")
    # §9.2.1: bytes 3-4 file size, byte 14 structure (01 linear fixed), byte 15 record length
    size = (info[2] << 8) | info[3]
    structure = info[13]
    record_length = info[14]
    if structure not in (0x01, 0x03) or record_length == 0:
        raise PhonebookError("EF ADN is not a record file (structure %02X)" % structure,
                             name="NOT_RECORDS")
    count = min(size // record_length, MAX_RECORDS)
    if max_records is not None:
        count = min(count, max_records)
    if pin is not None:
        if isinstance(pin, str):
            pin = pin.encode("ascii")
        value = bytes(pin) + b"\xff" * (8 - len(pin))
        resp = transmit(bytes((CLA_GSM, 0x20, 0x00, 0x01, 0x08)) + value)
        sw1, sw2 = _sw(resp)
        # 98 08: CHV1 is disabled (§9.4.5), the records are readable without it
        if (sw1, sw2) != (0x90, 0x00) and (sw1, sw2) != (0x98, 0x08):
            raise PhonebookError("VERIFY CHV1: %s" % explain_sw(sw1, sw2),
                                 code=(sw1 << 8) | sw2, name="VERIFY_FAILED")
    entries = []
    for rec in range(1, count + 1):
        # §9.2.5: READ RECORD, P2 04 absolute mode, P3 the record length
        resp = transmit(bytes((CLA_GSM, 0xB2, rec, 0x04, record_length)))
        sw1, sw2 = _sw(resp)
        if (sw1, sw2) != (0x90, 0x00):
            raise PhonebookError("READ RECORD %d: %s" % (rec, explain_sw(sw1, sw2)),
                                 code=(sw1 << 8) | sw2, name="READ_FAILED")
        entry = decode_adn(resp[:-2])
        if entry is not None:
            entries.append({"record": rec, "name": entry[0], "number": entry[1]})
    return {"record_length": record_length, "records": count, "entries": entries}


def parse_tlv(data, max_items=64):
    """BER-TLV objects of ``data`` as [(tag, value)] (ISO/IEC 7816-4 §5.2); FF / 00 padding
    between objects is skipped. PhonebookError BAD_RESPONSE when malformed."""
    out = []
    i = 0
    n = len(data)
    while i < n:
        if data[i] in (0x00, 0xFF):
            i += 1
            continue
        if len(out) >= max_items:
            raise PhonebookError("more than %d data objects" % max_items, name="BAD_RESPONSE")
        tag = data[i]
        i += 1
        if tag & 0x1F == 0x1F:
            if i >= n:
                raise PhonebookError("truncated tag", name="BAD_RESPONSE")
            tag = (tag << 8) | data[i]
            i += 1
        if i >= n:
            raise PhonebookError("tag %X without a length" % tag, name="BAD_RESPONSE")
        ln = data[i]
        i += 1
        if ln == 0x81 or ln == 0x82:
            k = ln - 0x80
            if i + k > n:
                raise PhonebookError("truncated length", name="BAD_RESPONSE")
            ln = int.from_bytes(data[i:i + k], "big")
            i += k
        elif ln > 0x80:
            raise PhonebookError("length byte %02X" % ln, name="BAD_RESPONSE")
        if i + ln > n:
            raise PhonebookError("tag %X: %d bytes announced, %d there" % (tag, ln, n - i),
                                 name="BAD_RESPONSE")
        out.append((tag, bytes(data[i:i + ln])))
        i += ln
    return out


def _find(objects, tag):
    for t, v in objects:
        if t == tag:
            return v
    return None


def _uicc(transmit, apdu, what):
    try:
        resp = transmit_with_auto_response(apdu, transmit)
    except APDUError as e:
        raise PhonebookError("%s: %s" % (what, e), name="BAD_RESPONSE")
    sw1, sw2 = _sw(resp)
    if (sw1, sw2) != (0x90, 0x00):
        raise PhonebookError("%s: %s" % (what, explain_sw(sw1, sw2)), code=(sw1 << 8) | sw2,
                             name="SELECT_FAILED" if apdu[1] == 0xA4 else "READ_FAILED")
    return bytes(resp[:-2])


def _record_geometry(fcp, what):
    """(record length, number of records) from an FCP's file descriptor (TS 102 221 §11.1.1.4.3)."""
    objs = parse_tlv(fcp)
    inner = _find(objs, 0x62)
    desc = _find(parse_tlv(inner), 0x82) if inner is not None else None
    if desc is None or len(desc) < 5 or (desc[0] & 0x07) not in (0x02, 0x06):
        raise PhonebookError("%s is not a record file" % what, name="NOT_RECORDS")
    return (desc[2] << 8) | desc[3], desc[4]


def read_phonebook_uicc(transmit, pin=None, max_records=None):
    """Read the phone book the TS 31.102 way over ``transmit``; same result as read_phonebook."""
    _uicc(transmit, bytes.fromhex("00A40804047F105F3A00"), "SELECT 7F10 5F3A")
    pbr_fcp = _uicc(transmit, bytes.fromhex("00A40004024F3000"), "SELECT EF PBR")
    pbr_length, _ = _record_geometry(pbr_fcp, "EF PBR")
    if pbr_length == 0 or pbr_length > 255:
        raise PhonebookError("EF PBR record length %d" % pbr_length, name="BAD_RESPONSE")
    pbr = _uicc(transmit, bytes((0x00, 0xB2, 0x01, 0x04, pbr_length)), "READ RECORD 1 of EF PBR")
    a8 = _find(parse_tlv(pbr), 0xA8)
    adn_ref = _find(parse_tlv(a8), 0xC0) if a8 is not None else None
    if adn_ref is None or len(adn_ref) < 2:
        raise PhonebookError("EF PBR names no EF ADN", name="BAD_RESPONSE")
    fid = adn_ref[:2]
    if pin is not None:
        if isinstance(pin, str):
            pin = pin.encode("ascii")
        value = bytes(pin) + b"\xff" * (8 - len(pin))
        resp = transmit(bytes((0x00, 0x20, 0x00, 0x01, 0x08)) + value)
        sw1, sw2 = _sw(resp)
        if (sw1, sw2) != (0x90, 0x00):
            raise PhonebookError("VERIFY PIN1: %s" % explain_sw(sw1, sw2),
                                 code=(sw1 << 8) | sw2, name="VERIFY_FAILED")
    adn_fcp = _uicc(transmit, b"\x00\xA4\x00\x04\x02" + fid + b"\x00", "SELECT EF ADN %s" % fid.hex())
    record_length, count = _record_geometry(adn_fcp, "EF ADN")
    if record_length == 0 or record_length > 255:
        raise PhonebookError("EF ADN record length %d" % record_length, name="BAD_RESPONSE")
    if max_records is not None:
        count = min(count, max_records)
    entries = []
    for rec in range(1, count + 1):
        data = _uicc(transmit, bytes((0x00, 0xB2, rec, 0x04, record_length)),
                     "READ RECORD %d" % rec)
        entry = decode_adn(data)
        if entry is not None:
            entries.append({"record": rec, "name": entry[0], "number": entry[1]})
    return {"record_length": record_length, "records": count, "entries": entries}


def card_transmit(card, port=0, trace=None):
    """(transmit, protocol name) for an in-process virtual card, at TPDU level."""
    atr = parse_atr(card.atr)
    if 0 in atr.protocols:
        engine = T0Card(card)
        reader = T0Reader()

        def link(tpdu, timeout_us):
            return engine.process_tpdu(tpdu)
        protocol = "T=0"

        def exchange(apdu):
            return reader.transceive(apdu, link)
    else:
        target = getattr(card, "ports", None) or card
        engine = T1Card(target, ifsc=atr.ifsc or 32)
        reader = T1Reader(ifsc=atr.ifsc or 32)
        nad = (port & 0x07) << 4

        def link(block, timeout_us):
            return engine.receive_block(bytes(block))
        protocol = "T=1"

        def exchange(apdu):
            return reader.transceive(apdu, link, nad=nad)

    masker = ApduMasker()     # never a PIN in a trace

    def transmit(apdu):
        if trace is not None:
            masker.command(apdu)
            # PIN bytes shown as 2A ("*"), the form this trace has always had
            trace("-> " + to_hex(redact_apdu(apdu)))
        resp = exchange(apdu)
        if trace is not None:
            trace("<- " + masker.response(resp)[0])
        return resp
    return transmit, protocol


def register(sub):
    p = sub.add_parser(
        "phonebook", help="read the phone book (EF ADN) of a virtual SIM like usim_read.py",
        description="Read every ADN record of a virtual SIM card in class A0 (SELECT 3F00, "
                    "7F10, 6F3A, GET RESPONSE, READ RECORD 1..N) and decode names and numbers.")
    p.add_argument("--card", default="usim", choices=("usim", "esim"),
                   help="the virtual card (default usim)")
    p.add_argument("--records", type=int, default=None, metavar="N",
                   help="ADN records on the virtual card, 1..254 (default: the card's own, 250)")
    p.add_argument("--image", metavar="PATH", help="card image file (created if missing)")
    p.add_argument("--port", type=int, default=0, help="eSIM port (T=1 NAD), default 0")
    p.add_argument("--pin", metavar="CHV1", help="present CHV1 before reading")
    p.add_argument("--uicc", action="store_true",
                   help="read the USIM way (class 00, DF Phonebook, EF PBR) instead of class A0")
    p.add_argument("--json", action="store_true", help="print the phone book as JSON")
    p.add_argument("--trace", action="store_true", help="print the APDUs (PINs masked)")
    p.set_defaults(func=run, phonebook_parser=p)


def _usage(args, message):
    parser = getattr(args, "phonebook_parser", None)
    if parser is not None:
        parser.print_usage(sys.stderr)
    sys.stderr.write("ccidkit phonebook: error: %s\n" % message)
    return 2


def run(args):
    options = {}
    if args.records is not None:
        if not 1 <= args.records <= MAX_RECORDS:
            return _usage(args, "--records must be 1..%d" % MAX_RECORDS)
        options["records"] = args.records
    if args.card == "esim":
        if not 0 <= args.port <= 7:
            return _usage(args, "--port must be 0..7")
    elif args.port:
        return _usage(args, "--port is for --card esim")
    try:
        card = make_card(args.card, image=args.image, **options)
    except CcidkitError as e:
        sys.stderr.write("ccidkit phonebook: %s\n" % e)
        return 1
    if args.card == "esim" and args.port >= len(card.ports):
        return _usage(args, "the eSIM has %d ports" % len(card.ports))
    card.power_on()
    trace = None
    if args.trace:
        def trace(line):
            sys.stderr.write(line + "\n")
    transmit, protocol = card_transmit(card, port=args.port, trace=trace)
    try:
        reader = read_phonebook_uicc if args.uicc else read_phonebook
        book = reader(transmit, pin=args.pin)
        card.close()
    except CcidkitError as e:
        sys.stderr.write("ccidkit phonebook: %s\n" % e)
        return 1
    if args.json:
        doc = {"card": args.card, "atr": card.atr.hex().upper(), "protocol": protocol,
               "method": "uicc" if args.uicc else "gsm"}
        doc.update(book)
        sys.stdout.write(json.dumps(doc, ensure_ascii=False) + "\n")
        return 0
    print("Card: %s  ATR %s  (%s)" % (args.card, card.atr.hex(" ").upper(), protocol))
    print("EF ADN: %d records of %d bytes, %d in use"
          % (book["records"], book["record_length"], len(book["entries"])))
    for e in book["entries"]:
        print("%4d  %-20s %s" % (e["record"], e["name"], e["number"]))
    return 0
