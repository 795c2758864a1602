"""The emulated CCID readers, driven through pyusb with raw CCID messages.

Every test goes the way a driver does: usb.core.find on the EmulatedBackend,
Device.write / read / ctrl_transfer, messages built and decoded by
core/ccid.py, T=0 / T=1 run by core/t0.py / core/t1.py over XfrBlock.
"""

import pytest
import usb.core
from hypothesis import given, settings, strategies as st

from ccidkit.core import ccid as C
from ccidkit.core.ccid_descriptor import find_ccid_descriptor
from ccidkit.core.pps import build_pps_request, parse_pps_response
from ccidkit.core.t0 import T0Reader
from ccidkit.core.t1 import T1Reader
from ccidkit.emu.card.minicard import MiniCard, build_atr, ef_content
from ccidkit.emu.profiles import PROFILES
from ccidkit.emu.pyusb_backend import EmulatedBackend
from ccidkit.emu.reader import (EmulatedReader, EmulatedReaderError, ReaderGone,
                                card_pps_response, create_readers, pseudo_atr)
from ccidkit.core.atr import parse_atr

ECHO = bytes.fromhex("80EE0000")


def echo_apdu(data, extended=False):
    n = len(data)
    if extended or n > 255:
        return ECHO + b"\x00" + bytes((n >> 8, n & 0xFF)) + data + b"\x00\x00"
    return ECHO + bytes((n,)) + data + b"\x00"


class Host:
    """A minimal CCID host over pyusb (what a driver does, without policy)."""

    def __init__(self, reader):
        self.reader = reader
        self.be = EmulatedBackend([reader])
        self.dev = usb.core.find(backend=self.be)
        assert self.dev is not None
        self.dev.set_configuration()
        cfg = bytes(self.dev.ctrl_transfer(0x80, 6, 0x0200, 0, 1024))
        self.desc = find_ccid_descriptor(cfg)
        eps = self.desc.endpoints
        self.ep_out = [e[0] for e in eps if e[1] == 2 and not e[0] & 0x80][0]
        self.ep_in = [e[0] for e in eps if e[1] == 2 and e[0] & 0x80][0]
        ints = [e[0] for e in eps if e[1] == 3]
        self.ep_int = ints[0] if ints else None
        self.seq = 0
        self.reasm = C.BulkInReassembler(max_packet_size=None)

    def send(self, bMessageType, slot=0, seq=None, **fields):
        if seq is None:
            seq = self.seq
            self.seq = (self.seq + 1) & 0xFF
        msg = C.CCIDMessage(bMessageType, slot, seq, **fields)
        self.dev.write(self.ep_out, msg.to_bytes(), 1000)
        return seq

    def recv(self, timeout=10000, chunk=65536):
        for _ in range(10000):
            got = bytes(self.dev.read(self.ep_in, chunk, timeout))
            done = self.reasm.feed(got)
            if done:
                return done[0]
        raise AssertionError("no whole message")

    def final(self, timeout=10000):
        """The next answer that is not a time extension; (answer, extensions seen)."""
        wtx = 0
        for _ in range(100000):
            m = self.recv(timeout)
            if not m.time_extension:
                return m, wtx
            wtx += 1
        raise AssertionError("time extension storm never ended")

    def cmd(self, bMessageType, slot=0, **fields):
        seq = self.send(bMessageType, slot, **fields)
        m, _ = self.final()
        assert (m.bSlot, m.bSeq) == (slot, seq)
        assert m.bMessageType == C.RESPONSE_TYPE[bMessageType]
        return m

    def power_on(self, slot=0, select=1):
        m = self.cmd(C.PC_to_RDR_IccPowerOn, slot, bPowerSelect=select)
        C.check_response(m)
        return m.abData

    def xfr(self, data, slot=0, level=0):
        return self.cmd(C.PC_to_RDR_XfrBlock, slot, abData=data, wLevelParameter=level)

    def link(self, slot=0):
        """T=0 / T=1 engine link over XfrBlock: None when the card is mute."""
        def f(block, timeout_us):
            m = self.xfr(bytes(block), slot)
            if m.failed:
                assert m.bError == C.ICC_MUTE, m
                return None
            return m.abData
        return f

    def interrupt(self, timeout=100):
        return bytes(self.dev.read(self.ep_int, 8, timeout))


def host(profile_id, cards=None, **kw):
    if cards is None:
        cards = {0: MiniCard()}
    return Host(EmulatedReader(profile_id, cards=cards, **kw))


class PinCard(MiniCard):
    """MiniCard plus VERIFY / CHANGE REFERENCE DATA that remember their APDU."""

    def __init__(self, pin="1234", **kw):
        MiniCard.__init__(self, **kw)
        self.pin = pin
        self.seen = []

    def process_apdu(self, apdu):
        apdu = bytes(apdu)
        if len(apdu) > 4 and apdu[1] in (0x20, 0x24):
            self.seen.append(apdu)
            return b"\x90\x00"
        return MiniCard.process_apdu(self, apdu)


# ---------------------------------------------------------------------------
# every profile powers a card

SINGLE = ["gemalto-pctwin", "cherry-st", "pinpad", "au9560", "sysmooctsim", "iccd-token",
          "contactless"]


@pytest.mark.parametrize("pid", SINGLE)
def test_every_profile_powers_a_card(pid):
    card = MiniCard(protocols=(0,) if pid == "sysmooctsim" else (0, 1))
    h = host(pid, {0: card})
    select = 0 if h.desc.auto_voltage else 1
    atr = h.power_on(0, select)
    if pid == "contactless":
        assert atr == pseudo_atr(parse_atr(card.atr).historical)
        assert atr[:4] == bytes.fromhex("3B898001")
    else:
        assert atr == card.atr
    assert card.power_ups == 1
    p = h.cmd(C.PC_to_RDR_GetParameters)
    C.check_response(p)
    offered = [x for x in parse_atr(atr).protocols if h.desc.dwProtocols & (1 << x)]
    assert p.bProtocolNum == offered[0]
    assert p.abProtocolDataStructure.bmFindexDindex == 0x11
    st = h.cmd(C.PC_to_RDR_GetSlotStatus)
    assert st.icc_status == C.ICC_STATUS_PRESENT_ACTIVE and not st.failed
    # the fastest speed under 200 kbit/s both allow (Fi 512 / Di 16), else Fd / Dd
    info = parse_atr(atr)
    protocol = offered[0]
    fast = info.fi == 512 and h.desc.dwDefaultClock * 1000 * 16 // 512 <= h.desc.dwMaxDataRate
    fidi = 0x95 if fast else 0x11
    if fast and h.desc.tpdu_level and not h.desc.auto_pps:
        req = build_pps_request(protocol, 512, 16)          # the host's own PPS
        assert h.xfr(req).abData == req
    sp = (C.T0Parameters if protocol == 0 else C.T1Parameters)(bmFindexDindex=fidi)
    m = h.cmd(C.PC_to_RDR_SetParameters, bProtocolNum=protocol, abProtocolDataStructure=sp)
    C.check_response(m)
    assert m.abProtocolDataStructure == sp
    assert h.reader.slots[0].card_line == (protocol, 512 if fast else 372, 16 if fast else 1)
    select = bytes.fromhex("00A4000C022F00")
    if h.desc.tpdu_level:
        assert T0Reader().transceive(select, h.link()) == b"\x90\x00"
    else:
        assert h.xfr(select).abData == b"\x90\x00"
    assert card.count(0xA4) == 1
    off = h.cmd(C.PC_to_RDR_IccPowerOff)
    assert off.icc_status == C.ICC_STATUS_PRESENT_INACTIVE


@pytest.mark.parametrize("pid", ["au9560", "iccd-token", "contactless"])
def test_apdu_levels_carry_a_short_apdu(pid):
    h = host(pid)
    h.power_on(0, 0 if h.desc.auto_voltage else 1)
    m = h.xfr(echo_apdu(b"\x11\x22\x33"))
    C.check_response(m)
    assert m.abData == b"\x11\x22\x33\x90\x00"
    m = h.xfr(bytes.fromhex("00A4000C023F00"))
    assert m.abData == b"\x90\x00"


def test_contactless_reader_answers_get_data():
    card = MiniCard()
    card.uid = bytes.fromhex("04A1B2C3D4E5F6")
    h = host("contactless", {0: card})
    h.power_on(0, 1)
    assert h.xfr(bytes.fromhex("FFCA000000")).abData == card.uid + b"\x90\x00"
    assert h.xfr(bytes.fromhex("FFCA000004")).abData == b"\x6C\x07"
    assert h.xfr(bytes.fromhex("FFCA000008")).abData == card.uid + b"\x62\x82"
    assert h.xfr(bytes.fromhex("FFCA010000")).abData == b"\x80\x57ccidkit\x90\x00"
    assert h.xfr(bytes.fromhex("FFCA020000")).abData == b"\x6A\x81"
    assert card.commands == 0                      # the reader answered them all


def test_tpdu_t1_with_pps_through_xfrblock():
    card = MiniCard()
    h = host("gemalto-pctwin", {0: card})
    atr = parse_atr(h.power_on())
    assert atr.protocols == [0, 1]
    # the host sends the PPS itself (no automatic PPS on this reader)
    req = build_pps_request(1, 512, 32)
    m = h.xfr(req)
    C.check_response(m)
    res = parse_pps_response(req, m.abData)
    assert (res.protocol, res.fi, res.di, res.accepted) == (1, 512, 32, True)
    sp = C.T1Parameters(bmFindexDindex=0x96, bmWaitingIntegersT1=0x45, bIFSC=32)
    m = h.cmd(C.PC_to_RDR_SetParameters, bProtocolNum=1, abProtocolDataStructure=sp)
    C.check_response(m)
    assert m.abProtocolDataStructure == sp
    t1 = T1Reader(ifsc=atr.ifsc, ifsd=254, bwi=atr.bwi, cwi=atr.cwi, fi=512, di=32,
                  clock_hz=4000000)
    link = h.link()
    assert t1.negotiate_ifsd(link) == 254
    data = bytes(range(200)) * 2
    assert t1.transceive(echo_apdu(data, extended=True), link) == data + b"\x90\x00"
    got = t1.transceive(bytes.fromhex("00A4000C022F00"), link)
    assert got == b"\x90\x00"
    got = t1.transceive(bytes.fromhex("00B0000010"), link)
    assert got == ef_content(0x2F00)[:16] + b"\x90\x00"
    assert card.count(0xEE) == 1


def test_tpdu_t0_engine_over_xfrblock():
    h = host("cherry-st")
    h.power_on()
    t0 = T0Reader(auto_get_response=True)
    link = h.link()
    assert t0.transceive(bytes.fromhex("00A4000C023F00"), link) == b"\x90\x00"
    assert t0.transceive(bytes.fromhex("00A4000C022F01"), link) == b"\x90\x00"
    got = t0.transceive(bytes.fromhex("00B0010020"), link)
    assert got == ef_content(0x2F01)[256:288] + b"\x90\x00"
    # case 4: the card answers 61xx, the engine follows with GET RESPONSE
    assert t0.transceive(echo_apdu(b"abc"), link) == b"abc\x90\x00"
    assert t0.tpdus == 2


def test_pps_without_pps_and_mismatched_speed_is_mute():
    h = host("gemalto-pctwin")
    h.power_on()
    # the host claims 96 without negotiating it: the card hears noise
    sp = C.T0Parameters(bmFindexDindex=0x96)
    C.check_response(h.cmd(C.PC_to_RDR_SetParameters, bProtocolNum=0,
                           abProtocolDataStructure=sp))
    m = h.xfr(bytes.fromhex("00A4000C023F00"))
    assert m.failed and m.bError == C.ICC_MUTE


def test_card_pps_answer_refuses_too_fast():
    atr = parse_atr(MiniCard().atr)            # TA1 96: Fi 512, Di 32
    resp, line = card_pps_response(atr, build_pps_request(0, 512, 64))
    assert resp == bytes((0xFF, 0x00, 0xFF)) and line == (0, 372, 1)
    resp, line = card_pps_response(atr, build_pps_request(1, 512, 16))
    assert resp == build_pps_request(1, 512, 16) and line == (1, 512, 16)
    assert card_pps_response(atr, b"\xFF\x11\x96\x00") == (None, None)   # bad PCK
    t0only = parse_atr(MiniCard(protocols=(0,)).atr)
    assert card_pps_response(t0only, build_pps_request(1)) == (None, None)


def test_set_parameters_checked_against_atr_and_reader():
    h = host("gemalto-pctwin", {0: MiniCard(protocols=(0,))})
    h.power_on()
    m = h.cmd(C.PC_to_RDR_SetParameters, bProtocolNum=1,
              abProtocolDataStructure=C.T1Parameters())
    assert m.failed and m.bError == 7                     # T=1 not offered
    m = h.cmd(C.PC_to_RDR_SetParameters, bProtocolNum=0,
              abProtocolDataStructure=C.T0Parameters(bmFindexDindex=0x97))
    assert m.failed and m.bError == 10                    # Di 64 beyond the card
    m = h.cmd(C.PC_to_RDR_SetParameters, bProtocolNum=0,
              abProtocolDataStructure=C.T0Parameters(bmTCCKST0=0x01))
    assert m.failed and m.bError == 11
    r = h.cmd(C.PC_to_RDR_ResetParameters)
    assert r.abProtocolDataStructure == C.T0Parameters(bmFindexDindex=0x11)


def test_power_select_and_card_class():
    h = host("gemalto-pctwin")
    m = h.cmd(C.PC_to_RDR_IccPowerOn, bPowerSelect=0)
    assert m.failed and m.bError == 7                     # no automatic voltage
    card = MiniCard()
    card.classes = ("B",)
    h = host("cherry-st", {0: card})
    m = h.cmd(C.PC_to_RDR_IccPowerOn, bPowerSelect=1)
    assert m.failed and m.bError == C.ICC_MUTE            # a 3 V card at 5 V
    assert h.power_on(0, 2) == card.atr
    h = host("au9560", {0: card})
    assert h.power_on(0, 0) == card.atr                   # automatic selection
    assert h.reader.slots[0].voltage == 2


def test_extended_apdu_level_chains_both_ways():
    card = MiniCard()
    h = host("au9560", {0: card})
    h.power_on(0, 0)
    assert h.desc.extended_apdu_level and h.desc.max_data_length == 262
    data = bytes((i * 13) & 0xFF for i in range(1000))
    apdu = echo_apdu(data, extended=True)
    parts = [apdu[i:i + 262] for i in range(0, len(apdu), 262)]
    for i, part in enumerate(parts):
        level = C.CHAIN_BEGIN if i == 0 else (C.CHAIN_END if i == len(parts) - 1
                                              else C.CHAIN_CONTINUE)
        m = h.xfr(part, level=level)
        C.check_response(m)
        if level != C.CHAIN_END:
            assert m.bChainParameter == C.CHAIN_EMPTY_CONTINUE and m.abData == b""
    got = bytearray(m.abData)
    chain = [m.bChainParameter]
    while m.bChainParameter in (C.CHAIN_BEGIN, C.CHAIN_CONTINUE):
        m = h.xfr(b"", level=C.CHAIN_EMPTY_CONTINUE)
        got.extend(m.abData)
        chain.append(m.bChainParameter)
    assert bytes(got) == data + b"\x90\x00"
    assert chain == [1, 3, 3, 2]
    # the short APDU needs no chaining
    m = h.xfr(echo_apdu(b"x"))
    assert (m.bChainParameter, m.abData) == (0, b"x\x90\x00")


def test_short_apdu_level_refuses_extended():
    h = host("contactless")
    h.power_on(0, 1)
    h.reader.descriptor.dwFeatures = 0x00020672          # short APDU level only
    m = h.xfr(echo_apdu(b"\x01" * 10, extended=True))
    assert m.failed and m.bError == 10


def test_au9560_hw_error_above_200_kbits_and_the_cap_works():
    card = MiniCard()                                     # TA1 96
    h = host("au9560", {0: card})
    h.power_on(0, 0)
    # 3.7 MHz, Fi 512, Di 32: 231 250 bit/s - the reader takes it (auto PPS)...
    sp = C.T1Parameters(bmFindexDindex=0x96)
    C.check_response(h.cmd(C.PC_to_RDR_SetParameters, bProtocolNum=1,
                           abProtocolDataStructure=sp))
    assert h.reader.slots[0].card_line == (1, 512, 32)
    # ...and fails every exchange with HW_ERROR
    m = h.xfr(echo_apdu(b"\x01"))
    assert m.failed and m.bError == C.HW_ERROR
    assert m.bStatus == 0x41                              # the card was deactivated
    # the driver's speed cap: power again, Di 16 -> 115 625 bit/s works
    h.power_on(0, 0)
    sp = C.T1Parameters(bmFindexDindex=0x95)
    C.check_response(h.cmd(C.PC_to_RDR_SetParameters, bProtocolNum=1,
                           abProtocolDataStructure=sp))
    m = h.xfr(echo_apdu(b"\x01"))
    C.check_response(m)
    assert m.abData == b"\x01\x90\x00"
    # and so does an explicit data rate below the limit
    m = h.cmd(C.PC_to_RDR_SetDataRateAndClockFrequency, dwClockFrequency=3700,
              dwDataRate=250000)
    C.check_response(m)
    assert (m.dwClockFrequency, m.dwDataRate) == (3700, 250000)
    assert h.xfr(echo_apdu(b"\x02")).bError == C.HW_ERROR
    assert h.xfr(echo_apdu(b"\x02")).bError == C.ICC_MUTE    # until powered again


def test_sysmooctsim_eight_slots_in_flight():
    cards = {}
    for i in range(8):
        c = MiniCard(protocols=(0,))
        c.processing_us = 20000 - 2000 * i        # later slots finish first
        cards[i] = c
    h = host("sysmooctsim", cards)
    assert h.desc.bMaxCCIDBusySlots == 8 and h.desc.slots == 8
    for i in range(8):
        h.power_on(i, 3)
    sent = {}
    for i in range(8):
        data = bytes((0x80, 0xEE, 0, 0, 2, i, i))
        sent[h.send(C.PC_to_RDR_XfrBlock, i, abData=data)] = i
    answers = [h.recv() for _ in range(8)]
    assert sorted(m.bSlot for m in answers) == list(range(8))
    for m in answers:
        C.check_response(m)
        assert sent[m.bSeq] == m.bSlot
        assert m.abData == bytes((0x61, 2))      # T=0: data waits behind 61xx
    # completion order of emulated time: the quickest card first
    assert [m.bSlot for m in answers] == list(range(7, -1, -1))


def test_cmd_slot_busy_on_a_one_busy_slot_reader():
    card = MiniCard()
    card.processing_us = 50000
    h = host("gemalto-pctwin", {0: card})
    h.power_on()
    s1 = h.send(C.PC_to_RDR_XfrBlock, 0, abData=bytes.fromhex("00A4000C023F00"))
    s2 = h.send(C.PC_to_RDR_GetSlotStatus, 0)
    first = h.recv()
    assert (first.bSeq, first.failed, first.bError) == (s2, True, C.CMD_SLOT_BUSY)
    assert first.bMessageType == C.RDR_to_PC_SlotStatus
    second = h.recv()
    assert second.bSeq == s1 and second.abData == b"\x90\x00"


def test_cmd_slot_busy_across_slots_beyond_max_busy():
    r = EmulatedReader("sysmooctsim", cards={0: MiniCard(protocols=(0,)),
                                              1: MiniCard(protocols=(0,))})
    r.descriptor.bMaxCCIDBusySlots = 1
    h = Host(r)
    s0 = h.send(C.PC_to_RDR_IccPowerOn, 0, bPowerSelect=1)
    s1 = h.send(C.PC_to_RDR_IccPowerOn, 1, bPowerSelect=1)
    a = h.recv()
    b = h.recv()
    assert (a.bSeq, a.bError) == (s1, C.CMD_SLOT_BUSY)
    assert b.bSeq == s0 and not b.failed


def test_notify_slot_change_on_insert_and_remove():
    h = host("gemalto-pctwin", {})
    with pytest.raises(usb.core.USBTimeoutError):
        h.interrupt()
    card = MiniCard()
    h.reader.insert_card(0, card)
    assert h.interrupt() == b"\x50\x03"
    h.reader.remove_card(0)
    assert h.interrupt() == b"\x50\x02"
    m = h.cmd(C.PC_to_RDR_IccPowerOn, bPowerSelect=1)
    assert m.failed and m.bError == C.ICC_MUTE and m.icc_status == C.ICC_STATUS_NOT_PRESENT
    # 8 slots: two bytes of bmSlotICCState
    r = EmulatedReader("sysmooctsim", cards={0: MiniCard(protocols=(0,))})
    h8 = Host(r)
    r.insert_card(5, MiniCard(protocols=(0,)))
    assert h8.interrupt() == bytes((0x50, 0x01, 0x0C))
    r.insert_card(6, MiniCard(protocols=(0,)), notify=False)
    r.insert_card(4, MiniCard(protocols=(0,)))
    r.clear_interrupts()
    with pytest.raises(usb.core.USBTimeoutError):
        h8.interrupt()
    r.remove_card(6)
    r.remove_card(4)
    h8.interrupt()
    # changes not fetched yet are merged into one message
    r.insert_card(1, MiniCard(protocols=(0,)))
    r.remove_card(0)
    r.insert_card(7, MiniCard(protocols=(0,)))
    assert h8.interrupt() == bytes((0x50, 0x0E, 0xC4))
    with pytest.raises(usb.core.USBTimeoutError):
        h8.interrupt()


def test_iccd_token_card_always_present():
    h = host("iccd-token")
    assert h.ep_int is None
    with pytest.raises(EmulatedReaderError):
        h.reader.remove_card(0)
    h.power_on(0, 0)
    data = bytes(2000)
    m = h.xfr(echo_apdu(data, extended=True))
    assert m.abData == data + b"\x90\x00"


def test_abort_pairs_request_and_message():
    card = MiniCard()
    card.processing_us = 5000000
    h = host("gemalto-pctwin", {0: card})
    h.power_on()
    seq = h.send(C.PC_to_RDR_XfrBlock, 0, abData=bytes.fromhex("00A4000C023F00"))
    abort_seq = h.seq
    h.dev.ctrl_transfer(*C.abort_request(0, 0, abort_seq)[:4])
    m = h.recv()
    assert (m.bSeq, m.failed, m.bError) == (seq, True, C.CMD_ABORTED)
    # until PC_to_RDR_Abort with the same bSeq, commands are refused
    other = h.send(C.PC_to_RDR_GetSlotStatus, 0, seq=abort_seq + 5)
    m = h.recv()
    assert (m.bSeq, m.bError) == (other, C.CMD_ABORTED)
    h.send(C.PC_to_RDR_Abort, 0, seq=abort_seq)
    m = h.recv()
    assert m.bSeq == abort_seq and m.bMessageType == C.RDR_to_PC_SlotStatus and not m.failed
    st = h.cmd(C.PC_to_RDR_GetSlotStatus)
    assert not st.failed
    with pytest.raises(usb.core.USBTimeoutError):
        h.recv(timeout=50)


def test_abort_message_waits_for_the_request():
    h = host("gemalto-pctwin")
    h.send(C.PC_to_RDR_Abort, 0, seq=40)
    with pytest.raises(usb.core.USBTimeoutError):
        h.recv(timeout=50)
    h.dev.ctrl_transfer(*C.abort_request(0, 0, 41)[:4])      # not the pair
    with pytest.raises(usb.core.USBTimeoutError):
        h.recv(timeout=50)
    h.dev.ctrl_transfer(*C.abort_request(0, 0, 40)[:4])
    m = h.recv()
    assert m.bSeq == 40 and not m.failed


def test_time_extension_answers_while_the_card_works():
    card = MiniCard()
    card.processing_us = 2500000
    h = host("gemalto-pctwin", {0: card})
    h.power_on()
    seq = h.send(C.PC_to_RDR_XfrBlock, 0, abData=bytes.fromhex("00A4000C023F00"))
    m, wtx = h.final()
    assert wtx == 2 and m.bSeq == seq and m.abData == b"\x90\x00"


def test_secure_pin_verify_builds_the_apdu():
    card = PinCard()
    h = host("pinpad", {0: card})
    assert h.desc.pin_verification and h.desc.pin_modification
    assert (h.desc.lcd_lines, h.desc.lcd_columns) == (2, 16)
    h.power_on()
    h.reader.keypad(0, "1234")
    # ISO 9564 format 2 block: 2N, BCD digits, F padding; length nibble at bit 4
    v = C.PINVerification(bTimeOut=30, bmFormatString=0x89, bmPINBlockString=0x47,
                          bmPINLengthFormat=0x04, wPINMaxExtraDigit=0x0408,
                          abPINApdu=bytes.fromhex("0020008108") + b"\x2F" + b"\xFF" * 7)
    m = h.cmd(C.PC_to_RDR_Secure, bPINOperation=0, abPINDataStructure=v)
    C.check_response(m)
    assert m.abData == b"\x90\x00"
    assert card.seen[0][:13] == bytes.fromhex("00200081082412 34FFFFFFFFFF")
    # ASCII, left justified, FF padded (PIV style)
    h.reader.keypad(0, "123456")
    v = C.PINVerification(bmFormatString=0x82, bmPINBlockString=0x08, bmPINLengthFormat=0,
                          wPINMaxExtraDigit=0x0608,
                          abPINApdu=bytes.fromhex("0020008008") + b"\xFF" * 8)
    C.check_response(h.cmd(C.PC_to_RDR_Secure, bPINOperation=0, abPINDataStructure=v))
    assert card.seen[1][:13] == bytes.fromhex("0020008008 313233343536 FFFF")
    # cancel key and nobody typing
    h.reader.keypad(0, "cancel")
    m = h.cmd(C.PC_to_RDR_Secure, bPINOperation=0, abPINDataStructure=v)
    assert m.failed and m.bError == C.PIN_CANCELLED
    m = h.cmd(C.PC_to_RDR_Secure, bPINOperation=0, abPINDataStructure=v)
    assert m.failed and m.bError == C.PIN_TIMEOUT
    assert len(card.seen) == 2


def test_secure_pin_modify_and_tpdu_t1_prologue():
    card = PinCard()
    h = host("pinpad", {0: card})
    h.power_on()
    h.reader.keypad(0, "1234", "5678", "5678")
    mod = C.PINModification(bmFormatString=0x82, bmPINBlockString=0x08,
                            bmPINLengthFormat=0, bInsertionOffsetOld=0,
                            bInsertionOffsetNew=8, wPINMaxExtraDigit=0x0408, bConfirmPIN=3,
                            abPINApdu=bytes.fromhex("0024008010") + b"\xFF" * 16)
    m = h.cmd(C.PC_to_RDR_Secure, bPINOperation=1, abPINDataStructure=mod)
    C.check_response(m)
    assert card.seen[0][:21] == bytes.fromhex("0024008010") + b"1234\xFF\xFF\xFF\xFF" + \
        b"5678\xFF\xFF\xFF\xFF"
    # the confirmation differs: refused
    h.reader.keypad(0, "1234", "5678", "5679")
    m = h.cmd(C.PC_to_RDR_Secure, bPINOperation=1, abPINDataStructure=mod)
    assert m.failed and m.bError == C.PIN_CANCELLED
    # T=1 at TPDU level: the reader answers the card's T=1 block
    req = build_pps_request(1)
    h.power_on()
    C.check_response(h.xfr(req))
    C.check_response(h.cmd(C.PC_to_RDR_SetParameters, bProtocolNum=1,
                           abProtocolDataStructure=C.T1Parameters(bmFindexDindex=0x11)))
    h.reader.keypad(0, "1234")
    v = C.PINVerification(bmFormatString=0x82, bmPINBlockString=0x08, bmPINLengthFormat=0,
                          abPINApdu=bytes.fromhex("0020008008") + b"\xFF" * 8)
    m = h.cmd(C.PC_to_RDR_Secure, bPINOperation=0, abPINDataStructure=v)
    C.check_response(m)
    assert m.abData == bytes.fromhex("0000029000") + bytes((0x02 ^ 0x90,))
    assert card.seen[-1] == bytes.fromhex("0020008008") + b"1234\xFF\xFF\xFF\xFF"


def test_secure_not_supported_without_keypad():
    h = host("gemalto-pctwin")
    h.power_on()
    v = C.PINVerification(abPINApdu=bytes.fromhex("0020008008") + b"\xFF" * 8)
    m = h.cmd(C.PC_to_RDR_Secure, bPINOperation=0, abPINDataStructure=v)
    assert m.failed and m.bError == C.CMD_NOT_SUPPORTED


def test_escape_clock_mechanical_t0apdu_rates():
    h = host("gemalto-pctwin")
    m = h.cmd(C.PC_to_RDR_Escape, abData=b"\x02")
    assert not m.failed and m.abData == b"GemTwin V1.10"
    m = h.cmd(C.PC_to_RDR_Escape, abData=b"\x99")
    assert m.failed and m.bError == C.CMD_NOT_SUPPORTED
    h.power_on()
    assert h.cmd(C.PC_to_RDR_IccClock, bClockCommand=1).bError == C.CMD_NOT_SUPPORTED
    assert h.cmd(C.PC_to_RDR_Mechanical, bFunction=1).bError == C.CMD_NOT_SUPPORTED
    assert h.cmd(C.PC_to_RDR_T0APDU, bmChanges=1).bError == C.CMD_NOT_SUPPORTED
    m = h.cmd(C.PC_to_RDR_SetDataRateAndClockFrequency, dwClockFrequency=4000,
              dwDataRate=10753)
    assert not m.failed and (m.dwClockFrequency, m.dwDataRate) == (4000, 10753)
    m = h.cmd(C.PC_to_RDR_SetDataRateAndClockFrequency, dwClockFrequency=4000,
              dwDataRate=12345)
    assert m.failed and m.bError == 14
    a = host("au9560")
    a.power_on(0, 0)
    m = a.cmd(C.PC_to_RDR_T0APDU, bmChanges=3, bClassGetResponse=0x00, bClassEnvelope=0x00)
    assert not m.failed and a.reader.ccid["bClassGetResponse"] == 0


def test_icc_clock_stop_on_a_reader_that_can():
    h = host("cherry-st")
    h.reader.descriptor.dwFeatures |= 0x100           # CCID can stop the clock
    h.power_on()
    m = h.cmd(C.PC_to_RDR_IccClock, bClockCommand=1)
    assert not m.failed and m.bClockStatus == 1
    m = h.xfr(bytes.fromhex("00A4000C023F00"))
    assert m.failed and m.bError == C.ICC_MUTE        # no clock, no answer
    m = h.cmd(C.PC_to_RDR_IccClock, bClockCommand=0)
    assert not m.failed and m.bClockStatus == 0
    assert h.xfr(bytes.fromhex("00A4000C023F00")).abData == b"\x90\x00"
    assert h.cmd(C.PC_to_RDR_IccClock, bClockCommand=2).bError == 7


def test_malformed_messages_get_their_bError():
    h = host("gemalto-pctwin")
    # unknown message type
    h.dev.write(h.ep_out, bytes((0x99, 0, 0, 0, 0, 0, 7, 0, 0, 0)))
    m = h.recv()
    assert (m.bSeq, m.failed, m.bError) == (7, True, C.CMD_NOT_SUPPORTED)
    # bad slot
    h.send(C.PC_to_RDR_GetSlotStatus, 3)
    m = h.recv()
    assert m.failed and m.bError == 5
    # dwLength beyond dwMaxCCIDMessageLength
    h.dev.write(h.ep_out, bytes((0x6F, 0x00, 0x10, 0, 0, 0, 9, 0, 0, 0)))
    m = h.recv()
    assert (m.bSeq, m.bError) == (9, 1)
    # a message in pieces is gathered
    raw = C.CCIDMessage(C.PC_to_RDR_GetSlotStatus, 0, 11).to_bytes()
    h.dev.write(h.ep_out, raw[:4])
    h.dev.write(h.ep_out, raw[4:])
    m = h.recv()
    assert m.bSeq == 11 and not m.failed


def test_partial_bulk_in_reads():
    h = host("gemalto-pctwin")
    h.send(C.PC_to_RDR_IccPowerOn, 0, bPowerSelect=1)
    m = h.recv(chunk=8)
    assert m.abData == MiniCard().atr


def test_sysmosimbank_96_twelve_readers_of_eight():
    readers = create_readers("sysmosimbank-96")
    be = EmulatedBackend(readers)
    devs = list(usb.core.find(find_all=True, backend=be))
    assert len(devs) == 12
    slots = 0
    for d in devs:
        desc = find_ccid_descriptor(bytes(d.ctrl_transfer(0x80, 6, 0x0200, 0, 1024)))
        assert (d.idVendor, d.idProduct) == (0x1D50, 0x6141)
        slots += desc.slots
    assert slots == 96
    assert len({d.serial_number for d in devs}) == 12
    assert len({tuple(d.port_numbers) for d in devs}) == 12
    # one bus and one clock: the readers share them
    assert len({id(r.bus) for r in readers}) == 1 and len({id(r.clock) for r in readers}) == 1
    with pytest.raises(EmulatedReaderError):
        EmulatedReader("sysmosimbank-96")


def test_bus_shared_behind_a_hub_serialises_transfers():
    readers = create_readers("sysmosimbank-96", cards={(0, 0): MiniCard(protocols=(0,)),
                                                       (1, 0): MiniCard(protocols=(0,))})
    for r in readers[:2]:
        r.bulk_out(C.CCIDMessage(C.PC_to_RDR_IccPowerOn, 0, 1, bPowerSelect=1).to_bytes())
    assert readers[0].bus.transfers == 2
    a = readers[0].bulk_in(512, 1000)
    b = readers[1].bulk_in(512, 1000)
    assert a[10:] == b[10:] == MiniCard(protocols=(0,)).atr
    assert readers[0].bus.transfers == 4


# ---------------------------------------------------------------------------
# faults

def t1_host(card=None):
    card = card or MiniCard()
    h = host("gemalto-pctwin", {0: card})
    atr = parse_atr(h.power_on())
    C.check_response(h.xfr(build_pps_request(1)))
    C.check_response(h.cmd(C.PC_to_RDR_SetParameters, bProtocolNum=1,
                           abProtocolDataStructure=C.T1Parameters(bmFindexDindex=0x11)))
    t1 = T1Reader(ifsc=atr.ifsc, bwi=atr.bwi, cwi=atr.cwi)
    return h, t1


def test_fault_mute_card():
    h = host("gemalto-pctwin")
    h.power_on()
    h.reader.faults.mute(0)
    t = h.reader.now()
    m = h.xfr(bytes.fromhex("00A4000C023F00"))
    assert m.failed and m.bError == C.ICC_MUTE
    assert h.reader.now() - t > 800000          # the waiting time went by (emulated)
    h.reader.faults.unmute(0)
    assert h.xfr(bytes.fromhex("00A4000C023F00")).abData == b"\x90\x00"


def test_fault_card_removed_mid_exchange():
    h = host("gemalto-pctwin")
    h.power_on()
    h.reader.faults.remove_mid_exchange(0)
    m = h.xfr(bytes.fromhex("00A4000C023F00"))
    assert m.failed and m.bError == C.ICC_MUTE and m.icc_status == C.ICC_STATUS_NOT_PRESENT
    assert h.interrupt() == b"\x50\x02"


def test_fault_reader_unplugged():
    h = host("gemalto-pctwin")
    h.power_on()
    h.reader.faults.unplug_on_command(1)
    with pytest.raises(usb.core.USBError) as e:
        h.send(C.PC_to_RDR_GetSlotStatus)
    assert e.value.errno == 19
    with pytest.raises(usb.core.USBError) as e:
        h.recv()
    assert e.value.errno == 19
    with pytest.raises(ReaderGone):
        h.reader.bulk_in(64, 10)


def test_fault_corrupted_and_lost_t1_blocks_recovered():
    h, t1 = t1_host()
    link = h.link()
    h.reader.faults.corrupt_t1(0, to="reader")
    assert t1.transceive(echo_apdu(b"abc"), link) == b"abc\x90\x00"
    assert t1.r_requests >= 1
    h.reader.faults.lose_t1(0, to="card")
    assert t1.transceive(echo_apdu(b"def"), link) == b"def\x90\x00"
    assert t1.timeouts >= 1
    assert all(f.fired == 1 for f in h.reader.faults.t1_for(0))
    assert h.reader.faults.fired == [("t1_corrupt", (0, "reader")), ("t1_lose", (0, "card"))]


def test_fault_wtx_storm():
    h = host("gemalto-pctwin")
    h.power_on()
    h.reader.faults.wtx_storm(0, 25)
    seq = h.send(C.PC_to_RDR_XfrBlock, 0, abData=bytes.fromhex("00A4000C023F00"))
    m, wtx = h.final()
    assert wtx == 25 and m.bSeq == seq and m.abData == b"\x90\x00"


def test_fault_stale_bseq():
    h = host("gemalto-pctwin")
    h.power_on()
    tracker = C.SeqTracker(start=5)
    h.reader.faults.stale_bseq(1, "replace")
    seq = tracker.issue(0, C.PC_to_RDR_GetSlotStatus)
    h.send(C.PC_to_RDR_GetSlotStatus, 0, seq=seq)
    m = h.recv()
    assert m.bSeq != seq
    with pytest.raises(C.CCIDError) as e:
        tracker.match_response(m)
    assert e.value.name == "STALE_RESPONSE"
    h.reader.faults.stale_bseq(1, "duplicate")
    seq2 = h.send(C.PC_to_RDR_GetSlotStatus, 0)
    dup = h.recv()
    real = h.recv()
    assert dup.bSeq == 0 and real.bSeq == seq2      # the power-on answer again


def test_fault_usb_stall_and_clear_halt():
    h = host("gemalto-pctwin")
    h.reader.faults.stall("bulk_in", times=5)
    h.send(C.PC_to_RDR_GetSlotStatus)
    with pytest.raises(usb.core.USBError) as e:
        h.recv()
    assert e.value.errno == 32
    h.dev.clear_halt(h.ep_in)
    assert not h.recv().failed


def test_fault_notify_lost():
    h = host("gemalto-pctwin", {})
    h.reader.faults.lose_notify(1)
    h.reader.insert_card(0, MiniCard())
    with pytest.raises(usb.core.USBTimeoutError):
        h.interrupt()
    h.reader.remove_card(0)
    assert h.interrupt() == b"\x50\x02"


def test_fault_overcurrent():
    h = host("gemalto-pctwin")
    h.reader.faults.overcurrent(0)
    seq = h.send(C.PC_to_RDR_IccPowerOn, 0, bPowerSelect=1)
    m = h.recv()
    assert (m.bSeq, m.failed, m.bError) == (seq, True, C.HW_ERROR)
    assert h.interrupt() == bytes((0x51, 0, seq, 0x01))
    assert h.power_on() == MiniCard().atr


def test_virtual_time_only_advances_when_waiting():
    h = host("gemalto-pctwin")
    t0 = h.reader.now()
    with pytest.raises(usb.core.USBTimeoutError):
        h.recv(timeout=250)
    assert h.reader.now() - t0 == 250000


@settings(max_examples=150)
@given(st.binary(min_size=0, max_size=300))
def test_arbitrary_bulk_out_bytes_never_break_the_reader(data):
    r = EmulatedReader("gemalto-pctwin", cards={0: MiniCard()})
    r.bulk_out(data)
    for _ in range(4):
        try:
            out = r.bulk_in(70000, 10)
        except Exception as e:          # only the reader's own timeout may come
            assert type(e).__name__ == "ReaderTimeout"
            break
        m = C.decode_bulk_in(out)
        assert m.bMessageType in C.RESPONSE_TYPE.values()
    # and it still works afterwards
    r._rx = bytearray()
    r.bulk_out(C.CCIDMessage(C.PC_to_RDR_GetSlotStatus, 0, 200).to_bytes())
    answers = []
    for _ in range(5):
        try:
            answers.append(C.decode_bulk_in(r.bulk_in(70000, 3000)))
        except Exception as e:
            assert type(e).__name__ == "ReaderTimeout"
            break
    assert any(a.bSeq == 200 for a in answers)


def test_profiles_table_is_complete():
    assert set(PROFILES) == {"gemalto-pctwin", "cherry-st", "pinpad", "au9560", "sysmooctsim",
                             "sysmosimbank-96", "iccd-token", "contactless"}
    assert build_atr((0,)) == MiniCard(protocols=(0,)).atr


COMMANDS = sorted(t for t in C.RESPONSE_TYPE if t != C.PC_to_RDR_Abort)


@settings(max_examples=200)
@given(st.sampled_from(["gemalto-pctwin", "pinpad", "au9560", "sysmooctsim", "contactless"]),
       st.lists(st.tuples(st.sampled_from(COMMANDS), st.integers(0, 8), st.integers(0, 255),
                          st.integers(0, 255), st.integers(0, 0xFFFF),
                          st.binary(max_size=40)), min_size=1, max_size=6))
def test_every_command_gets_one_answer_with_its_bseq(pid, commands):
    """Whatever the header bytes and data, each command is answered exactly once,
    with its bSeq and its response type (failed or not), and nothing but the
    reader's own timeout ever comes out of bulk_in."""
    proto = (0,) if pid == "sysmooctsim" else (0, 1)
    r = EmulatedReader(pid, cards={0: MiniCard(protocols=proto)})
    r.keypad(0, "1234")
    for seq, (t, slot, b7, b8, b9, data) in enumerate(commands):
        if t in (0x62, 0x63, 0x65, 0x6C, 0x6D, 0x6E, 0x6A, 0x71):
            data = b""
        elif t == 0x73:
            data = (data + bytes(8))[:8]
        raw = bytes((t,)) + len(data).to_bytes(4, "little") + bytes((slot, seq, b7, b8 & 0xFF,
                                                                     b9 >> 8)) + data
        r.bulk_out(raw)
        finals = []
        for _ in range(200):
            try:
                m = C.decode_bulk_in(r.bulk_in(70000, 20000))
            except Exception as e:
                assert type(e).__name__ == "ReaderTimeout"
                break
            assert m.bSeq == seq
            if not m.time_extension:
                finals.append(m)
        assert len(finals) == 1
        assert finals[0].bMessageType == C.RESPONSE_TYPE[t]


@settings(max_examples=300)
@given(st.integers(0, 255), st.integers(0, 255), st.integers(0, 0xFFFF), st.integers(0, 0xFFFF),
       st.integers(0, 1024))
def test_control_requests_answer_or_stall(bmRequestType, bRequest, wValue, wIndex, length):
    r = EmulatedReader("au9560")
    try:
        out = r.control(bmRequestType, bRequest, wValue, wIndex, length)
    except Exception as e:
        assert type(e).__name__ in ("ReaderStall", "ReaderTimeout")
        return
    assert isinstance(out, bytes) and len(out) <= length


def test_every_profile_numbers_its_interfaces_from_zero():
    # USB 2.0 §9.6.3: bNumInterfaces interfaces, numbered 0 .. bNumInterfaces-1
    for pid, prof in PROFILES.items():
        if "usb" not in prof:
            continue                                    # a bank of other profiles
        r = EmulatedReader(pid)
        cfg = r.config_descriptor
        numbers = []
        pos = 0
        while pos + 2 <= len(cfg):
            if cfg[pos + 1] == 4:
                numbers.append(cfg[pos + 2])
            pos += cfg[pos]
        assert pos == len(cfg) == cfg[2] | (cfg[3] << 8), pid
        assert numbers == list(range(cfg[4])), pid
        ccid_if = prof["usb"]["interface_number"]
        found = [cfg[i + 2] for i in range(len(cfg) - 9)
                 if cfg[i] == 9 and cfg[i + 1] == 4 and cfg[i + 5] == prof["usb"]["interface_class"]]
        assert found == [ccid_if], pid
