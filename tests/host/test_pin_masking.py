"""No PIN (nor a secret answer) in any trace or log: a VERIFY with a known PIN
goes through every path that records or prints traffic, and the PIN bytes,
as hex (spaced or not) and as ASCII, appear in none of their output."""

import socket
import time

from hypothesis import given, strategies as st

from ccidkit.scripts.main import main
from ccidkit.core import ccid
from ccidkit.core.driver import Reader
from ccidkit.core.hexutil import (
    ApduMasker, PIN_INS, mask_apdu, mask_response, pin_data_offset, redact_apdu, to_hex)
from ccidkit.core.host.emulated import open_emulated
from ccidkit.emu import usbredir, vicc, vscard
from ccidkit.emu.cards import make_card
from ccidkit.emu.cards.auth import AuthCard
from ccidkit.emu.pcscd import PrivatePcscd

PIN = b"739182"                                    # a PIN found nowhere else
PIV_PIN = PIN + b"\xFF\xFF"                        # SP 800-73-4: padded to 8 bytes
SELECT_PIV = bytes.fromhex("00A4040005A000000308")
VERIFY = bytes.fromhex("0020008008") + PIV_PIN
DEFAULT_PIV_VERIFY = bytes.fromhex("002000800831323334353 6FFFF".replace(" ", ""))
SECRET = bytes.fromhex("5EC2E7DA7A0F1BAD")


def assert_no_pin(text, pin=PIN):
    """Neither the PIN's hex (spaced, plain, either case) nor its ASCII in ``text``."""
    flat = text.replace(" ", "").upper()
    assert to_hex(pin).replace(" ", "") not in flat
    assert to_hex(pin) not in text.upper()
    assert pin.decode() not in text


def test_mask_apdu_rules():
    assert mask_apdu(VERIFY) == "00 20 00 80 08 " + " ".join(["**"] * 8)
    # extended Lc: the three length bytes stay
    assert mask_apdu(bytes.fromhex("00240080000004") + b"1234") == \
        "00 24 00 80 00 00 04 ** ** ** **"
    assert mask_apdu(bytes.fromhex("0020008000")) == "00 20 00 80 00"     # status query
    assert mask_apdu(SELECT_PIV) == to_hex(SELECT_PIV)
    for ins in (0x20, 0x21, 0x24, 0x25, 0x26, 0x28, 0x2C, 0x2D):
        assert ins in PIN_INS
        assert mask_apdu(bytes((0, ins, 0, 1, 2, 0x39, 0x38))) == \
            "00 %02X 00 01 02 ** **" % ins
    assert redact_apdu(VERIFY) == VERIFY[:5] + b"********"
    assert redact_apdu(SELECT_PIV) == SELECT_PIV
    # decipher / GENERAL AUTHENTICATE answers: data hidden, SW kept
    assert mask_response(bytes.fromhex("00870700"), SECRET + b"\x90\x00") == \
        " ".join(["**"] * 8) + " 90 00"
    assert mask_response(bytes.fromhex("002A8086"), SECRET + b"\x90\x00").endswith("** 90 00")
    assert mask_response(bytes.fromhex("002A9E9A"), SECRET + b"\x90\x00") == \
        to_hex(SECRET) + " 90 00"
    assert mask_response(SELECT_PIV, SECRET + b"\x90\x00") == to_hex(SECRET) + " 90 00"


def test_masker_hides_the_get_response_rounds_of_a_secret():
    m = ApduMasker()
    m.command(bytes.fromhex("008707 9A 04 7C02 8100".replace(" ", "")))
    assert m.response(SECRET[:4] + b"\x61\x04") == ("** ** ** ** 61 04",
                                                   bytes(4) + b"\x61\x04")
    assert m.command(bytes.fromhex("00C0000004")) == "00 C0 00 00 04"
    text, kept = m.response(SECRET[4:] + b"\x90\x00")
    assert text == "** ** ** ** 90 00" and kept == bytes(4) + b"\x90\x00"
    # the secret ended with 90 00: the next GET RESPONSE is shown
    m.command(bytes.fromhex("00C0000002"))
    assert m.response(b"\x01\x02\x90\x00")[0] == "01 02 90 00"


@given(st.binary(max_size=300))
def test_masking_any_bytes(data):
    text = mask_apdu(data)
    assert len(text.split()) == len(data)
    start = pin_data_offset(data)
    if start:
        assert text.split()[start:] == ["**"] * (len(data) - start)
        assert redact_apdu(data)[start:] == b"*" * (len(data) - start)
    else:
        assert text == to_hex(data)
    m = ApduMasker()
    m.command(data)
    t2, kept = m.response(data)
    assert len(t2.split()) == len(data) and len(kept) == len(data)


# --- vicc (ccidkit vicc --trace prints the session's log lines) ---------------------------

class SecretCard:
    """Answers GENERAL AUTHENTICATE with a secret in two GET RESPONSE rounds."""
    atr = bytes.fromhex("3B8080010101")

    def process_apdu(self, apdu):
        if apdu[1] == 0x87:
            return SECRET[:4] + b"\x61\x04"
        if apdu[1] == 0xC0:
            return SECRET[4:] + b"\x90\x00"
        return b"\x90\x00"


def _frames(*apdus):
    return b"".join(vicc.encode_frame(a) for a in apdus)


def test_vicc_session_trace_records_and_log_are_masked():
    lines = []
    s = vicc.ViccSession(AuthCard(pin=PIN.decode()), log=lines.append)
    out = s.receive(vicc.encode_control(1) + _frames(SELECT_PIV, VERIFY))
    assert out.endswith(vicc.encode_frame(b"\x90\x00"))            # the PIN was right
    text = "\n".join(s.trace + lines + [repr(f) for f in
                                        vicc.Decoder().feed(_frames(VERIFY))])
    text += repr(s.apdus)
    assert_no_pin(text)
    assert s.trace[-2] == "-> 00 20 00 80 08 " + " ".join(["**"] * 8)
    assert s.apdus[-1] == (VERIFY[:5] + b"********", b"\x90\x00")
    assert lines == s.trace

    s = vicc.ViccSession(SecretCard())
    s.receive(_frames(bytes.fromhex("00870700047C028100"), bytes.fromhex("00C0000004")))
    text = "\n".join(s.trace) + repr(s.apdus)
    assert to_hex(SECRET[:4]) not in text and to_hex(SECRET[4:]) not in text
    assert s.trace[-1] == "<- ** ** ** ** 90 00"


def test_vicc_session_without_records_keeps_nothing():
    lines = []
    s = vicc.ViccSession(AuthCard(pin=PIN.decode()), log=lines.append, record=False)
    s.receive(_frames(SELECT_PIV, VERIFY))
    assert s.trace == [] and s.apdus == []
    assert len(lines) == 4
    assert_no_pin("\n".join(lines))


# --- VSCard (QEMU ccid-card-passthru) -----------------------------------------------------

def _recv(sock, dec, queue):
    deadline = time.monotonic() + 5
    while not queue:
        assert time.monotonic() < deadline
        queue.extend(dec.feed(sock.recv(65536)))
    return queue.pop(0)


def test_vscard_server_trace_and_records_are_masked():
    lines = []
    with vscard.VSCardServer(AuthCard(pin=PIN.decode()), log=lines.append) as srv:
        sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        sock.connect(srv.path)
        sock.settimeout(5)
        dec, queue = vscard.Decoder(), []
        assert _recv(sock, dec, queue).name == "Init"
        assert _recv(sock, dec, queue).name == "ReaderAdd"
        sock.sendall(vscard.encode_init(2, 0) + vscard.encode_error(vscard.VSC_SUCCESS, 0))
        assert _recv(sock, dec, queue).name == "ATR"
        for apdu in (SELECT_PIV, VERIFY):
            sock.sendall(vscard.encode(vscard.VSC_APDU, 0, apdu))
            rsp = _recv(sock, dec, queue)
        assert rsp.payload == b"\x90\x00"
        assert_no_pin(repr(vscard.Message(vscard.VSC_APDU, 0, VERIFY)))
        sock.close()
        text = "\n".join(srv.trace + lines) + repr(srv.apdus)
    assert_no_pin(text)
    assert srv.apdus[-1] == (VERIFY[:5] + b"********", b"\x90\x00")


# --- ccidkit apdu and ccidkit phonebook --trace -------------------------------------------

def test_cli_apdu_trace_masks_the_pin(capsys):
    assert main(["apdu", "--emulated", "gemalto-pctwin", "--card", "auth",
                 to_hex(SELECT_PIV), to_hex(DEFAULT_PIV_VERIFY)]) == 0
    out, err = capsys.readouterr()
    assert "<- 90 00" in out.splitlines()[-1]
    assert_no_pin(out + err, b"123456")


def test_cli_phonebook_trace_masks_the_pin(capsys):
    assert main(["phonebook", "--card", "usim", "--pin", "0000", "--trace"]) == 0
    out, err = capsys.readouterr()
    verify = [l for l in err.splitlines() if l.startswith("-> A0 20")]
    assert verify == ["-> A0 20 00 01 08 " + " ".join(["2A"] * 8)]
    assert "30 30 30 30 FF FF FF FF" not in (out + err).upper()


# --- the driver's log, the emulated reader's traffic log, CCID descriptions ----------------

def test_driver_and_emulated_reader_logs_hold_no_pin():
    card = AuthCard(pin=PIN.decode())
    backend, ts = open_emulated("gemalto-pctwin", cards={0: card})
    lines = []
    r = Reader(ts[0], log=lines.append).open()
    r.connect(0)
    assert r.transmit(0, SELECT_PIV)[-2] in (0x61, 0x90)
    assert r.transmit(0, VERIFY) == b"\x90\x00"
    emulated = backend.readers[0] if not callable(backend.readers) else backend.readers()[0]
    text = "\n".join(lines) + repr(list(emulated.log))
    assert_no_pin(text)
    # the XfrBlock as `ccidkit ccid` describes it
    msg = ccid.CCIDMessage(ccid.PC_to_RDR_XfrBlock, bSlot=0, bSeq=7, abData=VERIFY)
    assert_no_pin("\n".join(msg.describe()))
    r.close()


def test_usbredir_packet_repr_holds_no_pin():
    block = b"\x6F" + len(VERIFY).to_bytes(4, "little") + b"\x00\x01\x00\x00\x00" + VERIFY
    p = usbredir.Packet(usbredir.BULK_PACKET, 7, block, endpoint=0x02, length=len(block))
    assert "data=%d bytes" % len(block) in repr(p)
    assert_no_pin(repr(p))


def test_private_pcscd_logs_apdus_only_when_asked():
    assert PrivatePcscd().apdu is False
    assert PrivatePcscd(apdu=True).apdu is True


# --- the emulated PIN pad: the formatted PIN block is zeroed after use ----------------------

def test_pinpad_entry_block_is_zeroed_and_never_logged(monkeypatch):
    from ccidkit.core import part10
    from ccidkit.emu import reader as emu_reader
    from ccidkit.emu.card.minicard import MiniCard

    class PinCard(MiniCard):
        def process_apdu(self, apdu):
            apdu = bytes(apdu)
            if apdu[1] == 0x20:
                return b"\x90\x00" if apdu[5:11] == PIN else b"\x63\xC2"
            return MiniCard.process_apdu(self, apdu)

    blocks = []
    real = emu_reader.EmulatedReader._format_pin

    def keep(self, *args):
        block = real(self, *args)
        blocks.append(block)
        return block
    monkeypatch.setattr(emu_reader.EmulatedReader, "_format_pin", keep)
    backend, ts = open_emulated("pinpad", cards={0: PinCard()})
    em = backend.readers[0] if not callable(backend.readers) else backend.readers()[0]
    lines = []
    r = Reader(ts[0], log=lines.append).open()
    r.connect(0)
    feats = part10.parse_feature_tlv(
        part10.control(r, 0, part10.CM_IOCTL_GET_FEATURE_REQUEST, b""))
    verify = part10.build_verify_structure(bytes.fromhex("0020000108") + b"\xFF" * 8)
    em.keypad(0, PIN.decode())
    assert part10.control(r, 0, feats[part10.FEATURE_VERIFY_PIN_DIRECT], verify) == b"\x90\x00"
    assert len(blocks) == 1 and blocks[0] == bytearray(8)      # zeroed after the command
    assert_no_pin("\n".join(lines) + repr(list(em.log)))


def test_serial_link_trace_hides_pin_commands():
    from ccidkit.core import ccid as C
    from ccidkit.emu.card.minicard import MiniCard
    from ccidkit.emu.serial_reader import make_serial_reader, GemPcTwinSerial
    reader, echo = make_serial_reader("GemPCTwin", {0: MiniCard()})
    link = GemPcTwinSerial(reader, echo=echo)
    verify = bytes.fromhex("0020008006") + b"739182"
    msg = C.CCIDMessage(C.PC_to_RDR_XfrBlock, bSlot=0, bSeq=1, abData=verify).to_bytes()
    lrc = 0
    frame = bytes((0x03, 0x06)) + msg
    for b in frame:
        lrc ^= b
    link.receive(frame + bytes((lrc,)))
    text = "\n".join(link.trace)
    assert link.trace and "2A 2A 2A 2A 2A 2A" in text        # still hex, PIN bytes replaced
    assert "37 33 39 31 38 32" not in text and "739182" not in text
