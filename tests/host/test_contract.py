"""Every row of core/contract.py, provoked: the entry point given inputs that
cause the documented condition raises the documented class with a documented
name (or returns the documented kind of value)."""

import os
import struct
import tempfile

import pytest

from ccidkit.core import contract
from ccidkit.core.errors import CcidkitError
from ccidkit.core import atr as A, pps as P, apdu as AP, ccid as C, t1 as T1, t0 as T0
from ccidkit.core import ccid_descriptor as CD, pcsc
from ccidkit.core.driver import Reader, PROTOCOL_T1
from ccidkit.core.transport import TransportTimeout, TransportStall, ReaderRemoved
from ccidkit.core.host.emulated import open_emulated, emulated_manager
from ccidkit.emu import vicc, vscard, usbredir
from ccidkit.emu.reader import EmulatedReader
from ccidkit.emu.card.minicard import MiniCard
from ccidkit.emu.card.t1 import T1Card
from ccidkit.emu.card.t0 import T0Card
from ccidkit.emu.cards import make_card

SELECT_AID = bytes.fromhex("00A4040009F0636369646B69740100")
PPS_REQ = bytes.fromhex("FF1096 79".replace(" ", ""))   # T=0, Fi 512 Di 32... PCK below
PPS_REQ = P.build_pps_request(0, 512, 32)


def _reader(profile="gemalto-pctwin", cards=None, **kw):
    backend, ts = open_emulated(profile, cards=cards)
    r = Reader(ts[0], **kw).open()
    r.emulated = backend.readers[0] if not callable(backend.readers) else backend.readers()[0]
    return r


def _t1_run(link, **kw):
    eng = T1.T1Reader(**kw)
    return eng.transceive(SELECT_AID, link)


def _s(stype, response=False, inf=b""):
    return T1.s_block(stype, response, inf).encode()


def _resynch_link(block, timeout_us):
    if block[1] == 0xC0:
        return _s(T1.S_RESYNCH, True)
    return b"\x00\x00"


def _abort_link():
    state = {"n": 0}

    def link(block, timeout_us):
        state["n"] += 1
        if state["n"] == 1:
            return _s(T1.S_ABORT)
        return T1.r_block(0).encode()
    return link


def _t0_transceive(answers, **kw):
    it = iter(answers)

    def link(tpdu, timeout_us):
        return next(it)
    return T0.T0Reader(**kw).transceive(SELECT_AID, link)


def _config_with(ccid_desc):
    iface = bytes((9, 4, 0, 0, 3, 0x0B, 0, 0, 0))
    body = iface + ccid_desc
    return struct.pack("<BBHBBBBB", 9, 2, 9 + len(body), 1, 1, 0, 0x80, 50) + body


def _usbredir_host():
    return usbredir.Codec("host")


def _usbredir_hello(codec):
    # a guest hello: 64-byte version + caps
    return struct.pack("<III", usbredir.HELLO, 68, 0) + b"qemu".ljust(64, b"\0") + \
        struct.pack("<I", 0xFF)


def _pcsc(profile="gemalto-pctwin", cards=None):
    mgr = emulated_manager(profile, cards=cards)
    ctx = pcsc.SCardEstablishContext(pcsc.SCARD_SCOPE_USER, mgr)
    return mgr, ctx, pcsc.SCardListReaders(ctx)[0]


def _connected(profile="gemalto-pctwin"):
    mgr, ctx, name = _pcsc(profile)
    h, _ = pcsc.SCardConnect(ctx, name, pcsc.SCARD_SHARE_SHARED, pcsc.SCARD_PROTOCOL_ANY)
    return mgr, ctx, name, h


def _pcsc_reset_warning():
    mgr, ctx, name, h1 = _connected()
    h2, _ = pcsc.SCardConnect(ctx, name, pcsc.SCARD_SHARE_SHARED, pcsc.SCARD_PROTOCOL_ANY)
    pcsc.SCardDisconnect(h1, pcsc.SCARD_RESET_CARD)
    pcsc.SCardTransmit(h2, pcsc.SCARD_PCI_T0, SELECT_AID)


def _pcsc_removed():
    mgr, ctx, name, h = _connected()
    mgr.emulated[0].faults.remove_mid_exchange(0)
    pcsc.SCardTransmit(h, pcsc.SCARD_PCI_T0, SELECT_AID)


def _pcsc_unplugged():
    mgr, ctx, name, h = _connected()
    mgr.emulated[0].faults.unplug_on_command(1)
    pcsc.SCardTransmit(h, pcsc.SCARD_PCI_T0, SELECT_AID)


def _pcsc_mute():
    mgr, ctx, name, h = _connected()
    mgr.emulated[0].faults.mute(0)
    pcsc.SCardTransmit(h, pcsc.SCARD_PCI_T0, SELECT_AID)


def _pcsc_cancelled():
    mgr, ctx, name = _pcsc()
    ev = pcsc.SCardGetStatusChange(ctx, 0, [(name, 0)])[0][1] & ~pcsc.SCARD_STATE_CHANGED
    poll = mgr.poll

    def poll_then_cancel(timeout_ms=0):            # SCardCancel while it waits
        pcsc.SCardCancel(ctx)
        return poll(timeout_ms)
    mgr.poll = poll_then_cancel
    pcsc.SCardGetStatusChange(ctx, 1000, [(name, ev)])


def _pcsc_timeout():
    mgr, ctx, name = _pcsc()
    ev = pcsc.SCardGetStatusChange(ctx, 0, [(name, 0)])[0][1] & ~pcsc.SCARD_STATE_CHANGED
    pcsc.SCardGetStatusChange(ctx, 0, [(name, ev)])


def _pcsc_no_card():
    mgr, ctx, name = _pcsc()
    mgr.emulated[0].remove_card(0)
    pcsc.SCardConnect(ctx, name, pcsc.SCARD_SHARE_SHARED, pcsc.SCARD_PROTOCOL_ANY)


def _pcsc_sharing():
    mgr, ctx, name, h = _connected()
    pcsc.SCardConnect(ctx, name, pcsc.SCARD_SHARE_EXCLUSIVE, pcsc.SCARD_PROTOCOL_ANY)


def _pcsc_proto():
    mgr, ctx, name, h = _connected()
    pcsc.SCardTransmit(h, pcsc.SCARD_PCI_T1, SELECT_AID)


def _driver_no_card():
    r = _reader(cards={0: None})
    r.power_on(0)


def _driver_mute():
    r = _reader()
    r.connect(0)
    r.emulated.faults.mute(0)
    r.transmit(0, SELECT_AID)


def _driver_unplugged():
    r = _reader()
    r.connect(0)
    r.emulated.faults.unplug_on_command(1)
    r.transmit(0, SELECT_AID)


def _driver_comm_error():
    r = _reader(cards={0: MiniCard(protocols=(1,))})
    r.connect(0)
    r.emulated.faults.corrupt_t1(0, "reader", 40)
    r.transmit(0, SELECT_AID)


def _driver_stall_not_cleared():
    r = _reader()
    r.connect(0)
    r.emulated.faults.stall("bulk_in", 1)
    r.emulated.faults.stall("control", 1)       # CLEAR_FEATURE(ENDPOINT_HALT) refused
    r.transmit(0, SELECT_AID)


def _driver_unpowered():
    r = _reader()
    r.transmit(0, SELECT_AID)


def _driver_cancelled():
    r = _reader()
    r.connect(0)
    r.emulated.faults.wtx_storm(0, 10)
    r.on_time_extension = lambda rd, slot, n: rd.request_abort(slot)
    r.transmit(0, SELECT_AID)


def _driver_no_protocol():
    r = _reader(cards={0: MiniCard(protocols=(0,))})
    r.power_on(0)
    r.set_protocol(0, PROTOCOL_T1)


class _RefusesPPS(MiniCard):
    pass


def _driver_pts_failure():
    from ccidkit.emu import reader as emu_reader
    real = emu_reader.card_pps_response

    def bad_pck(atr, request):
        resp, line = real(atr, request)
        if resp is None:
            return resp, line
        return resp[:-1] + bytes((resp[-1] ^ 0xFF,)), line
    emu_reader.card_pps_response = bad_pck
    try:
        r = _reader()
        r.power_on(0)
        r.set_protocol(0, PROTOCOL_T1)
    finally:
        emu_reader.card_pps_response = real


def _driver_power_action():
    r = _reader()
    r.emulated.faults.take_overcurrent = lambda slot: True   # every class: overcurrent
    r.power_on(0)


def _driver_not_supported():
    r = _reader("cherry-st")
    r.connect(0)
    r.secure(0, b"\x00" * 20)


def _transport(fault):
    backend, ts = open_emulated("gemalto-pctwin")
    em = backend.readers[0] if not callable(backend.readers) else backend.readers()[0]
    t = ts[0]
    if fault == "timeout":
        return t.bulk_in(64, 10)
    if fault == "stall":
        em.faults.stall("bulk_in", 1)
        return t.bulk_in(64, 10)
    em.unplug()
    return t.bulk_in(64, 10)


def _card_image(bad):
    d = tempfile.mkdtemp()
    p = os.path.join(d, "img")
    with open(p, "wb") as f:
        f.write(b"not an image")
    return make_card("usim", image=p)


def _emu_malformed():
    em = EmulatedReader("gemalto-pctwin", cards={0: MiniCard()})
    em.bulk_out(bytes.fromhex("62 01000000 00 00 000000 FF"))   # IccPowerOn with 1 data byte
    out = C.decode_bulk_in(em.bulk_in(65554, 1000))
    first = out.name == "RDR_to_PC_DataBlock" and out.bError == 1 and out.failed
    em.bulk_out(bytes.fromhex("65 00000000 05 01 000000"))       # bSlot 5 on a 1-slot reader
    out = C.decode_bulk_in(em.bulk_in(65554, 1000))
    return first and out.name == "RDR_to_PC_SlotStatus" and out.bError == 5 and out.failed


# (entry, condition) -> callable. A callable for an exception row must raise;
# one for a value row returns True when the value is the documented one.
PROVOKE = {
    ("parse_atr(data)", "text that is not hex"): lambda: A.parse_atr("3B 0G"),
    ("parse_atr(data)", "no bytes"): lambda: A.parse_atr(b""),
    ("parse_atr(data)", "TS is neither 3B nor 3F (after inverse decoding)"):
        lambda: A.parse_atr(b"\x12\x00"),
    ("parse_atr(data)", "truncated, TCK wrong or over 33 bytes"):
        lambda: bool(A.parse_atr(b"\x3B\xF0").warnings) and bool(
            A.parse_atr(b"\x3B\x80\x01\x00").warnings),
    ("build_pps_request(protocol, fi, di, n)", "protocol/Fi/Di out of range"):
        lambda: P.build_pps_request(0, 512, None),
    ("parse_pps_response(request, response)", "request is not a PPS request"):
        lambda: P.parse_pps_response(b"\x00\x01", PPS_REQ),
    ("parse_pps_response(request, response)", "no answer bytes"):
        lambda: P.parse_pps_response(PPS_REQ, b""),
    ("parse_pps_response(request, response)", "answer cut short"):
        lambda: P.parse_pps_response(PPS_REQ, PPS_REQ[:2]),
    ("parse_pps_response(request, response)", "PPSS is not FF"):
        lambda: P.parse_pps_response(PPS_REQ, b"\xFE" + PPS_REQ[1:]),
    ("parse_pps_response(request, response)", "PCK check fails"):
        lambda: P.parse_pps_response(PPS_REQ, PPS_REQ[:-1] + bytes((PPS_REQ[-1] ^ 1,))),
    ("parse_pps_response(request, response)", "bytes after PCK"):
        lambda: P.parse_pps_response(PPS_REQ, PPS_REQ + b"\x00"),
    ("parse_pps_response(request, response)", "protocol differs from the request"):
        lambda: P.parse_pps_response(PPS_REQ, P.build_pps_request(1, 512, 32)),
    ("parse_pps_response(request, response)", "PPS1/PPS2/PPS3 the request did not send"):
        lambda: P.parse_pps_response(P.build_pps_request(0), P.build_pps_request(0, 512, 32)),
    ("CommandAPDU.parse(raw)", "fewer than 4 bytes"): lambda: AP.CommandAPDU.parse(b"\x00"),
    ("CommandAPDU.parse(raw)", "Lc/Le encoding does not match the length"):
        lambda: AP.CommandAPDU.parse(b"\x00\xA4\x04\x00\x05\x01"),
    ("CommandAPDU(cla, ins, p1, p2, data, ne)", "a header byte outside 0..255"):
        lambda: AP.CommandAPDU(0x100, 0, 0, 0),
    ("CommandAPDU(cla, ins, p1, p2, data, ne)", "more than 65535 data bytes"):
        lambda: AP.CommandAPDU(0, 0xDA, 0, 0, b"\x00" * 65536),
    ("CommandAPDU(cla, ins, p1, p2, data, ne)", "Ne outside 0..65536"):
        lambda: AP.CommandAPDU(0, 0xB0, 0, 0, ne=65537),
    ("ResponseAPDU.parse(raw)", "fewer than 2 bytes"): lambda: AP.ResponseAPDU.parse(b"\x90"),
    ("transmit_with_auto_response(cmd, transmit, max_rounds)",
     "61xx/6Cxx answers beyond max_rounds"):
        lambda: AP.transmit_with_auto_response(b"\x00\xB0\x00\x00\x00",
                                               lambda c: b"\x61\x10", 4),
    ("chain(cmd, max_lc)", "max_lc outside 1..255"):
        lambda: AP.chain(b"\x00\xDA\x00\x00\x02\x01\x02", 0),
    ("decode_bulk_in(buf) / decode_bulk_out(buf) / decode_message(buf)",
     "fewer than 10 bytes or fewer than dwLength announces"):
        lambda: C.decode_bulk_in(bytes.fromhex("80 05000000 00 00 000000 90")),
    ("decode_bulk_in(buf) / decode_bulk_out(buf) / decode_message(buf)",
     "unknown bMessageType"): lambda: C.decode_message(bytes(10)),
    ("decode_bulk_in(buf) / decode_bulk_out(buf)", "a message of the other direction"):
        lambda: C.decode_bulk_in(bytes.fromhex("65 00000000 00 00 000000")),
    ("decode_bulk_in(buf) / decode_bulk_out(buf) / decode_message(buf)",
     "dwLength above max_length (e.g. a peer announcing 4 GB)"):
        lambda: C.decode_bulk_in(bytes.fromhex("80 FFFFFFFF 00 00 000000")),
    ("decode_bulk_in(buf) / decode_bulk_out(buf)", "bytes after dwLength"):
        lambda: C.decode_bulk_in(bytes.fromhex("80 00000000 00 00 000000 00")),
    ("decode_bulk_in(buf) / decode_bulk_out(buf)",
     "dwLength differs from the message's fixed length"):
        lambda: C.decode_bulk_out(bytes.fromhex("65 01000000 00 00 000000 00")),
    ("BulkInReassembler.feed(data)", "header announces more than max_message_length"):
        lambda: C.BulkInReassembler().feed(bytes.fromhex("80 FFFFFFFF 00 00 000000")),
    ("check_response(msg, bSlot, bSeq)", "command failed (bmCommandStatus 1)"):
        lambda: C.check_response(C.decode_bulk_in(bytes.fromhex("80 00000000 00 00 41 FE 00"))),
    ("decode_interrupt(buf)", "empty, not 50/51, or a bad length"):
        lambda: C.decode_interrupt(b"\x51\x00"),
    ("parse_ccid_descriptor(data)", "shorter than 54 bytes or wrong type"):
        lambda: CD.parse_ccid_descriptor(b"\x36\x21"),
    ("find_ccid_interfaces(config)", "malformed configuration descriptor"):
        lambda: CD.find_ccid_interfaces(bytes.fromhex("09 02 20 00 01 01 00 80 32 00 04")),
    ("decode_block(data, edc) / check_block(data, edc)", "shorter than prologue + epilogue"):
        lambda: T1.decode_block(b"\x00\x00"),
    ("decode_block(data, edc) / check_block(data, edc)", "EDC (LRC/CRC) wrong"):
        lambda: T1.decode_block(b"\x00\x00\x00\x01"),
    ("decode_block(data, edc) / check_block(data, edc)", "LEN FF or LEN not the block size"):
        lambda: T1.decode_block(b"\x00\x00\xFF\xFF"),
    ("decode_block(data, edc) / check_block(data, edc)", "NAD FF"):
        lambda: T1.decode_block(b"\xFF\x00\x00\xFF"),
    ("decode_block(data, edc) / check_block(data, edc)", "reserved PCB bits"):
        lambda: T1.decode_block(b"\x00\x1F\x00\x1F"),
    ("i_block(ns, more, inf) / Block.encode()", "INF over 254 bytes"):
        lambda: T1.i_block(0, False, b"\x00" * 255).encode(),
    ("T1Reader.receive(data) / T1Reader.timeout()", "call with no block outstanding"):
        lambda: T1.T1Reader().receive(b"\x00\x00\x00\x00"),
    ("T1Reader.receive(data) / T1Reader.timeout()",
     "invalid or missing blocks, retries exhausted and RESYNCH failed"):
        lambda: _t1_run(lambda b, t: b"\x00\x00"),
    ("T1Reader.receive(data) / T1Reader.timeout()", "the card never answered the exchange"):
        lambda: _t1_run(lambda b, t: None),
    ("T1Reader.receive(data) / T1Reader.timeout()",
     "RESYNCH succeeded after errors: the APDU may not have run"):
        lambda: _t1_run(_resynch_link),
    ("T1Reader.receive(data)", "more S(WTX) requests than the limit"):
        lambda: _t1_run(lambda b, t: _s(T1.S_WTX, False, b"\x01"), max_wtx=5),
    ("T1Reader.receive(data)", "card sent S(ABORT)"): lambda: _t1_run(_abort_link()),
    ("T1Reader.start(apdu)", "empty APDU or an exchange in progress"):
        lambda: T1.T1Reader().start(b""),
    ("check_header(header)", "not 5 bytes, CLA FF, INS 6x/9x"):
        lambda: T0.check_header(b"\xFF\xA4\x00\x00\x00"),
    ("ProcedureEngine.feed(data)", "procedure byte neither NULL, ACK, ~ACK nor SW1"):
        lambda: _t0_engine_feed(b"\x12"),
    ("ProcedureEngine.feed(data)", "ACK with nothing left to move / bytes after SW2"):
        lambda: _t0_engine_feed(b"\x90\x00\x00"),
    ("ProcedureEngine.feed(data)", "more NULL bytes than max_null"):
        lambda: _t0_engine_feed(b"\x60" * 10, max_null=3),
    ("T0Reader.transceive(apdu, link)", "the link returns None (no answer in WT)"):
        lambda: _t0_transceive([None]),
    ("T0Reader.transceive(apdu, link)", "malformed command APDU"):
        lambda: T0.T0Reader().transceive(b"\x00\xA4\x04\x00\x05\x01", lambda t, w: None),
    ("T0Reader.transceive(apdu, link)", "61xx/6Cxx rounds beyond the limit"):
        lambda: _t0_transceive([b"\x61\x10"] * 20, auto_get_response=True, max_rounds=4),
    ("Transport.bulk_in / bulk_out / interrupt_in / control", "nothing within timeout_ms"):
        lambda: _transport("timeout"),
    ("Transport.bulk_in / bulk_out / interrupt_in / control", "endpoint halted"):
        lambda: _transport("stall"),
    ("Transport.bulk_in / bulk_out / interrupt_in / control", "device gone"):
        lambda: _transport("gone"),
    ("Reader.transmit(slot, apdu) / transmit_many / power_on / connect",
     "no card in the slot, or card removed during the exchange"): _driver_no_card,
    ("Reader.transmit(slot, apdu) / transmit_many / power_on / connect",
     "card mute, CCID answer missing, or time extensions beyond the limit"): _driver_mute,
    ("Reader.transmit(slot, apdu) / transmit_many / power_on / connect", "reader unplugged"):
        _driver_unplugged,
    ("Reader.transmit(slot, apdu) / transmit_many / power_on / connect",
     "protocol error the engines could not recover (T=1 resynch failed, bad CCID answer)"):
        _driver_comm_error,
    ("Reader.transmit(slot, apdu) / transmit_many / power_on / connect",
     "bulk-IN stalled and CLEAR_FEATURE(ENDPOINT_HALT) failed, or stalled again after it "
     "(one clear and one retry per answer; a single stall is recovered)"):
        _driver_stall_not_cleared,
    ("Reader.transmit(slot, apdu)", "slot not powered"): _driver_unpowered,
    ("Reader.transmit(slot, apdu)", "request_abort() during the exchange"): _driver_cancelled,
    ("Reader.set_protocol(slot, preferred)", "card and reader share no protocol"):
        _driver_no_protocol,
    ("Reader.set_protocol(slot, preferred)", "PPS refused at every speed"): _driver_pts_failure,
    ("Reader.power_on(slot)", "no voltage class works"): _driver_power_action,
    ("Reader.escape / secure / control", "reader does not offer it"): _driver_not_supported,
    ("SCardConnect / SCardTransmit / SCardStatus / ...", "handle or context not valid"):
        lambda: pcsc.SCardStatus(0x7FFFFFF1),
    ("SCardConnect(hContext, szReader, ...)", "reader name unknown"):
        lambda: pcsc.SCardConnect(_pcsc()[1], "No Such Reader 00 00", 2, 3),
    ("SCardConnect(hContext, szReader, ...)", "no card in the reader"): _pcsc_no_card,
    ("SCardConnect / SCardReconnect", "share mode conflicts with another handle"): _pcsc_sharing,
    ("SCardConnect / SCardTransmit", "protocol not available / PCI mismatch"): _pcsc_proto,
    ("SCardTransmit(hCard, pci, apdu)", "card removed since connect"): _pcsc_removed,
    ("SCardTransmit(hCard, pci, apdu)", "card reset by another handle"): _pcsc_reset_warning,
    ("SCardTransmit(hCard, pci, apdu)", "reader gone"): _pcsc_unplugged,
    ("SCardTransmit(hCard, pci, apdu)", "driver error (IFD_*)"): _pcsc_mute,
    ("SCardGetStatusChange(hContext, dwTimeout, states)", "nothing changed in dwTimeout"):
        _pcsc_timeout,
    ("SCardGetStatusChange(hContext, dwTimeout, states)", "SCardCancel called"):
        _pcsc_cancelled,
    ("card.process_apdu(apdu)", "any bytes, however malformed"):
        lambda: all(len(MiniCard().process_apdu(x)) >= 2 and
                    len(make_card("usim").process_apdu(x)) >= 2
                    for x in (b"", b"\x00", b"\x00\xA4\x04\x00\xFF", b"\xFF" * 300)),
    ("T1Card.receive_block(data)", "bad EDC / malformed block"):
        lambda: T1Card(MiniCard()).receive_block(b"\x00\x00\x00\x01") ==
        T1.r_block(0, T1.R_EDC_ERROR).encode(),
    ("T0Card.process_tpdu(tpdu)", "any TPDU"):
        lambda: T0Card(MiniCard()).process_tpdu(b"\x00\x00\x00\x00\x00")[-2:] == b"\x6D\x00",
    ("make_card(name, image, **options)", "unknown card or option, bad image"):
        lambda: make_card("no-such-card"),
    ("vicc.Decoder.feed(data) / decode_frame(data)", "length above max_payload (e.g. FFFF)"):
        lambda: vicc.Decoder(max_payload=1024).feed(b"\xFF\xFF"),
    ("vicc.Decoder.feed(data) / decode_frame(data)", "zero-length frame"):
        lambda: vicc.decode_frame(b"\x00\x00"),
    ("vicc.Decoder.feed(data) / decode_frame(data)", "1-byte frame not a control code"):
        lambda: vicc.decode_frame(b"\x00\x01\x09"),
    ("vicc.decode_frame(data)", "not exactly one frame"): lambda: vicc.decode_frame(b"\x00\x05\x00"),
    ("vscard.Decoder.feed(data) / decode_message(data)", "length above max_payload (e.g. 4 GB)"):
        lambda: vscard.Decoder().feed(struct.pack(">III", 7, 0, 0xFFFFFFFF)),
    ("vscard.Decoder.feed(data) / decode_message(data)", "unknown message type"):
        lambda: vscard.decode_message(struct.pack(">III", 99, 0, 0)),
    ("vscard.decode_message(data)", "not exactly one message"):
        lambda: vscard.decode_message(struct.pack(">III", 7, 0, 4) + b"\x00"),
    ("vscard.decode_init(payload) / decode_error(payload)", "malformed payload"):
        lambda: vscard.decode_init(b"VSCX\x00\x00\x00\x02"),
    ("usbredir.Codec.feed(data)", "length above max_length (e.g. 4 GB)"):
        lambda: _usbredir_host().feed(struct.pack("<III", usbredir.HELLO, 0xFFFFFFFF, 0)),
    ("usbredir.Codec.feed(data)", "unknown packet type"):
        lambda: _usbredir_host().feed(struct.pack("<III", 0x7777, 0, 0)),
    ("usbredir.Codec.feed(data)", "a packet before the hello"):
        lambda: _usbredir_host().feed(struct.pack("<III", usbredir.RESET, 0, 0)),
    ("usbredir.Codec.feed(data)", "hello or body of the wrong size"):
        lambda: _usbredir_host().feed(struct.pack("<III", usbredir.HELLO, 3, 0) + b"abc"),
    ("usbredir.Codec.feed(data)", "a packet only this side sends"):
        lambda: _usbredir_wrong_side(),
    ("EmulatedReader.bulk_out / bulk_in / interrupt_in / control",
     "faults.unplug_on_command or unplug()"):
        lambda: _emu(lambda em: (em.unplug(), em.bulk_in(64, 10))),
    ("EmulatedReader.bulk_in / interrupt_in", "nothing to read before timeout"):
        lambda: _emu(lambda em: em.bulk_in(64, 10)),
    ("EmulatedReader.bulk_out / bulk_in / interrupt_in / control", "faults.stall(endpoint)"):
        lambda: _emu(lambda em: (em.faults.stall("bulk_in"), em.bulk_in(64, 10))),
    ("EmulatedReader.bulk_out(data)", "malformed CCID message"): _emu_malformed,
}


def _emu(fn):
    return fn(EmulatedReader("gemalto-pctwin", cards={0: MiniCard()}))


def _usbredir_wrong_side():
    c = _usbredir_host()
    c.feed(_usbredir_hello(c))
    hdr = "<IIQ" if c.ids64 else "<III"
    # device_connect is sent by the usb-host side, never received by it
    c.feed(struct.pack(hdr, usbredir.DEVICE_CONNECT, 10, 1) + bytes(10))


def _t0_engine_feed(data, **kw):
    eng = T0.ProcedureEngine(b"\x00\xB0\x00\x00\x02", **kw)
    eng.data_to_send()
    eng.feed(data)


def _row_id(row):
    return "%s|%s" % (row[1], row[2])


def test_every_row_has_a_provoker_and_nothing_else():
    keys = set((r[1], r[2]) for r in contract.ROWS)
    assert keys == set(PROVOKE), (keys ^ set(PROVOKE))
    assert len(keys) == len(contract.ROWS)       # no row twice
    layers = [l for l, _ in contract.LAYERS]
    assert all(r[0] in layers for r in contract.ROWS)
    assert all(len(r) == len(contract.FIELDS) and all(r) for r in contract.ROWS)


@pytest.mark.parametrize("row", contract.ROWS, ids=_row_id)
def test_row_is_honoured(row):
    fn = PROVOKE[(row[1], row[2])]
    if row[3] == "-":
        assert fn() is True
        return
    with pytest.raises(CcidkitError) as e:
        fn()
    err = e.value
    classes = [c.__name__ for c in type(err).__mro__]
    assert row[3] in classes, (row[3], type(err).__name__, str(err))
    names = row[4].split(" / ")
    if row[3] == "CCIDError" and row[1].startswith("check_response"):
        assert err.name == C.error_name(err.code)      # a bError name
        return
    if row[3] == "PCSCError" and "(from_reader_error)" in row[4]:
        names = [n.split(" ")[0] for n in row[4].split(" / ")]
    assert err.name in names, (err.name, names, str(err))


def test_helpers():
    assert contract.rows_for("t1")[0][0] == "t1"
    assert "VSC_TOO_LONG" in contract.names_for("vscard.")
    assert contract.exceptions_for("usbredir.") == ["UsbredirError"]
    assert "T1_RESYNCHED" in contract.names_for("T1Reader.")


def test_errors_doc_is_current():
    from ccidkit.scripts import cmd_errors_doc
    with open(cmd_errors_doc.DEFAULT_PATH, encoding="utf-8") as f:
        assert f.read() == cmd_errors_doc.render()
    assert "| `parse_atr(data)` | no bytes | ATRError | ATR_EMPTY |" in cmd_errors_doc.render()
