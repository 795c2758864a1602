"""The CCID driver against a fake reader (a Transport that speaks CCID with core.ccid
and the card engines of emu/card). Small and fast: it also runs on MicroPython.

FakeReader is imported by the host tests (tests/host/test_driver_*.py) too.
"""

import struct

from support import h, raises

from ccidkit.core import ccid
from ccidkit.core.ccid import (
    decode_bulk_out, CCIDMessage, make_status, T0Parameters, T1Parameters,
    RDR_to_PC_DataBlock, RDR_to_PC_SlotStatus, RDR_to_PC_Parameters, RDR_to_PC_Escape,
)
from ccidkit.core.transport import Transport, TransportTimeout, TransportStall, ReaderRemoved
from ccidkit.core.driver import (
    Reader, ReaderError, base_name, slot_name, lowest_free_index, PROTOCOL_T0, PROTOCOL_T1,
)
from ccidkit.core import iso7816
from ccidkit.emu.card.minicard import MiniCard
from ccidkit.emu.card.t1 import T1Card
from ccidkit.emu.card.t0 import T0Card

LEVELS = {"TPDU": 0x00010000, "short": 0x00020000, "extended": 0x00040000}


def ccid_descriptor(slots=1, voltage=0x07, protocols=0x03, features=0x00010230,
                    max_message=271, pin=0, busy=1, max_ifsd=254, rates=0,
                    max_rate=344086, clock=4000):
    return struct.pack("<BBHBBIIIBIIBIIIIIBBHBB", 54, 0x21, 0x0110, slots - 1, voltage,
                       protocols, clock, clock, 0, 10752, max_rate, rates, max_ifsd, 0, 0,
                       features, max_message, 0xFF, 0xFF, 0, pin, busy)


def config_descriptor(cls_desc):
    iface = bytes((9, 4, 0, 0, 3, 0x0B, 0, 0, 0))
    eps = (bytes((7, 5, 0x01, 2, 64, 0, 0)) + bytes((7, 5, 0x82, 2, 64, 0, 0))
           + bytes((7, 5, 0x83, 3, 8, 0, 16)))
    total = 9 + len(iface) + len(cls_desc) + len(eps)
    head = struct.pack("<BBHBBBBB", 9, 2, total, 1, 1, 0, 0x80, 50)
    return head + iface + cls_desc + eps


class FakeSlot:
    def __init__(self, card=None, classes="ABC", max_baud=None, wtx=0):
        self.card = card
        self.classes = classes          # classes at which the card answers
        self.max_baud = max_baud        # PPS / SetParameters faster than this fail
        self.wtx = wtx                  # time extensions before each XfrBlock answer
        self.powered = False
        self.fresh = False              # just after the ATR (a PPS may come)
        self.protocol = 0
        self.engine = None
        self.fi_di = 0x11
        self.blocks = []                # what reached the card (TPDUs, blocks, APDUs)
        self.mute = False               # never answers XfrBlock (until abort)
        self.remove_on_xfr = False      # the card goes away during the next XfrBlock


class FakeReader(Transport):
    """A CCID reader in software. level: "TPDU", "short", "extended"."""

    def __init__(self, slots=None, level="TPDU", features=None, busy=1, pin=0,
                 max_message=271, voltage=0x07, vid=0x1234, pid=0x5678,
                 manufacturer="Fake", product="Reader", serial=None, reorder=False,
                 chunk=0, rates=None, accept_busy=None):
        self.vid = vid
        self.pid = pid
        self.manufacturer = manufacturer
        self.product = product
        self.serial = serial
        self.bus_path = "1-%d" % pid
        self.fslots = slots if slots is not None else [FakeSlot(MiniCard())]
        if features is None:
            features = LEVELS[level] | (0x0230 if level == "TPDU" else 0x04BE)
        self.features = features
        self.level = level
        self.max_message = max_message
        self.busy = busy if accept_busy is None else accept_busy
        self.rates = rates
        self.config_descriptor = config_descriptor(ccid_descriptor(
            len(self.fslots), voltage, 0x03, features, max_message, pin, busy,
            rates=len(rates) if rates else 0))
        self.reorder = reorder
        self.chunk = chunk
        self.out = []               # answers waiting for bulk-IN (bytes)
        self.partial = b""
        self.interrupts = []
        self.pending = {}           # slot -> held command (mute / time extension)
        self.log = []               # decoded commands
        self.controls = []
        self.gone = False
        self.chain = {}             # extended APDU level: slot -> command being gathered
        self.rchain = {}            # slot -> rest of a chained answer
        self.gone_on_xfr = False    # unplugged during the next XfrBlock
        self.max_unread = 0         # most answers owed at once (slots busy together)

    # -- transport --------------------------------------------------------
    def _alive(self):
        if self.gone:
            raise ReaderRemoved()

    def bulk_out(self, data, timeout_ms):
        self._alive()
        msg = decode_bulk_out(bytes(data))
        self.log.append(msg)
        owed = len(self.out) + len(self.pending) + 1
        if owed > self.max_unread:
            self.max_unread = owed
        self._handle(msg)

    def bulk_in(self, max_len, timeout_ms):
        self._alive()
        if self.partial:
            d = self.partial
        elif self.out:
            d = self.out.pop(len(self.out) - 1 if self.reorder else 0)
        else:
            raise TransportTimeout()
        n = self.chunk or max_len
        self.partial = d[n:]
        return d[:n]

    def interrupt_in(self, max_len, timeout_ms):
        self._alive()
        if self.interrupts:
            return self.interrupts.pop(0)
        raise TransportTimeout()

    def control(self, bmRequestType, bRequest, wValue, wIndex, data_or_length, timeout_ms):
        self._alive()
        self.controls.append((bmRequestType, bRequest, wValue, wIndex))
        if bRequest == 3 and self.rates:
            return b"".join([struct.pack("<I", r) for r in self.rates])
        if bRequest == 1:
            return b""
        raise TransportStall()

    # -- the reader -------------------------------------------------------
    def answer(self, msg, bMessageType, icc=0, cmd=0, err=0, data=b"", b9=0):
        m = CCIDMessage(bMessageType, msg.bSlot, msg.bSeq)
        m.bStatus = make_status(icc, cmd)
        m.bError = err
        if bMessageType == RDR_to_PC_DataBlock:
            m.bChainParameter = b9
        elif bMessageType == RDR_to_PC_Parameters:
            m.bProtocolNum = b9
        if data:
            m.abData = data
        self.out.append(m.to_bytes())

    def icc(self, fs):
        if fs.card is None:
            return 2
        return 0 if fs.powered else 1

    def fail(self, msg, t, fs, err):
        self.answer(msg, t, self.icc(fs), 1, err)

    def baud(self, fidi):
        fi = iso7816.FI_TABLE[fidi >> 4] or 372
        di = iso7816.DI_TABLE[fidi & 15] or 1
        return 4000000 * di // fi

    def _handle(self, msg):
        fs = self.fslots[msg.bSlot]
        t = msg.bMessageType
        owed = [d[5] for d in self.out] + list(self.pending)
        busy = [s for s in owed if s != msg.bSlot]
        if t != 0x72 and (msg.bSlot in owed or len(busy) >= self.busy):
            return self.fail(msg, 0x81 if t != 0x6F else 0x80, fs, 0xE0)
        if t == 0x72:   # PC_to_RDR_Abort
            held = self.pending.pop(msg.bSlot, None)
            if held is not None:
                self.fail(held, RDR_to_PC_DataBlock, fs, 0xFF)
            return self.answer(msg, RDR_to_PC_SlotStatus, self.icc(fs))
        if t == 0x65:
            return self.answer(msg, RDR_to_PC_SlotStatus, self.icc(fs))
        if t == 0x63:
            fs.powered = False
            return self.answer(msg, RDR_to_PC_SlotStatus, self.icc(fs))
        if t == 0x62:
            if fs.card is None:
                return self.fail(msg, RDR_to_PC_DataBlock, fs, 0xFE)
            cls = {0: "A", 1: "A", 2: "B", 3: "C"}[msg.bPowerSelect]
            if cls not in fs.classes:
                fs.powered = False
                return self.fail(msg, RDR_to_PC_DataBlock, fs, 0xFE)
            fs.powered = True
            fs.fresh = True
            fs.protocol = 0
            fs.engine = T0Card(fs.card)
            atr = fs.card.power_on() if hasattr(fs.card, "power_on") else fs.card.atr
            return self.answer(msg, RDR_to_PC_DataBlock, 0, 0, 0, atr)
        if not fs.powered and t in (0x6F, 0x61, 0x69):
            return self.fail(msg, RDR_to_PC_DataBlock if t != 0x61 else RDR_to_PC_Parameters,
                             fs, 0xFE)
        if t == 0x61:
            p = msg.abProtocolDataStructure
            if fs.max_baud is not None and self.features & 0x80 and \
                    self.baud(p.bmFindexDindex) > fs.max_baud:
                fs.powered = False
                return self.fail(msg, RDR_to_PC_Parameters, fs, 0xFE)
            fs.protocol = msg.bProtocolNum
            fs.fi_di = p.bmFindexDindex
            if fs.protocol == 1:
                fs.engine = T1Card(fs.card, ifsc=p.bIFSC, edc="CRC" if p.crc else "LRC")
            fs.fresh = False
            return self.answer(msg, RDR_to_PC_Parameters, 0, 0, 0, p.to_bytes(), msg.bProtocolNum)
        if t == 0x6C:
            p = T1Parameters(fs.fi_di) if fs.protocol == 1 else T0Parameters(fs.fi_di)
            return self.answer(msg, RDR_to_PC_Parameters, self.icc(fs), 0, 0, p.to_bytes(),
                               fs.protocol)
        if t == 0x6B:
            return self.answer(msg, RDR_to_PC_Escape, self.icc(fs), 0, 0, b"ESC" + msg.abData)
        if t == 0x69:
            return self.secure(msg, fs)
        if t == 0x6F:
            if self.gone_on_xfr:
                self.gone = True
                return
            if fs.remove_on_xfr:
                fs.card = None
                fs.powered = False
                self.notify(msg.bSlot)
                return self.fail(msg, RDR_to_PC_DataBlock, fs, 0xFE)
            if fs.mute:
                for _ in range(fs.wtx):
                    self.answer(msg, RDR_to_PC_DataBlock, 0, 2, 1)
                self.pending[msg.bSlot] = msg
                return
            return self.xfr(msg, fs)
        return self.fail(msg, 0x81, fs, 0)

    def xfr(self, msg, fs):
        data = bytes(msg.abData)
        for _ in range(fs.wtx):
            self.answer(msg, RDR_to_PC_DataBlock, 0, 2, 1)
        if self.level == "TPDU":
            if fs.fresh and data[:1] == b"\xFF":
                fs.blocks.append(("PPS", data))
                fidi = data[2] if data[1] & 0x10 else 0x11
                if fs.max_baud is not None and self.baud(fidi) > fs.max_baud:
                    fs.powered = False
                    return self.fail(msg, RDR_to_PC_DataBlock, fs, 0xFE)
                return self.answer(msg, RDR_to_PC_DataBlock, 0, 0, 0, data)
            fs.fresh = False
            fs.blocks.append(data)
            if fs.protocol == 1:
                ans = fs.engine.receive_block(data)
            else:
                ans = fs.engine.process_tpdu(data)
            if ans is None:
                return self.fail(msg, RDR_to_PC_DataBlock, fs, 0xFE)
            return self.answer(msg, RDR_to_PC_DataBlock, 0, 0, 0, ans)
        if self.level == "short":
            fs.blocks.append(data)
            return self.answer(msg, RDR_to_PC_DataBlock, 0, 0, 0, fs.card.process_apdu(data))
        # extended APDU level, CCID §6.1.4
        lvl = msg.wLevelParameter
        maxd = self.max_message - 10
        if lvl == 0x10:
            rest = self.rchain.get(msg.bSlot, b"")
            part = rest[:maxd]
            rest = rest[maxd:]
            self.rchain[msg.bSlot] = rest
            return self.answer(msg, RDR_to_PC_DataBlock, 0, 0, 0, part, 3 if rest else 2)
        if lvl in (1, 3):
            self.chain[msg.bSlot] = self.chain.get(msg.bSlot, b"") + data
            return self.answer(msg, RDR_to_PC_DataBlock, 0, 0, 0, b"", 0x10)
        if lvl == 2:
            data = self.chain.pop(msg.bSlot, b"") + data
        fs.blocks.append(data)
        resp = fs.card.process_apdu(data)
        if len(resp) > maxd:
            self.rchain[msg.bSlot] = resp[maxd:]
            return self.answer(msg, RDR_to_PC_DataBlock, 0, 0, 0, resp[:maxd], 1)
        return self.answer(msg, RDR_to_PC_DataBlock, 0, 0, 0, resp)

    def secure(self, msg, fs):
        # the user "types" 1234; format per bmFormatString: ASCII (b1b0 = 10), no length
        s = msg.abPINDataStructure
        apdu = bytearray(s.abPINApdu)
        pin = b"1234"
        if msg.bPINOperation == 1:
            apdu[5 + s.bInsertionOffsetOld:5 + s.bInsertionOffsetOld + 4] = pin
            apdu[5 + s.bInsertionOffsetNew:5 + s.bInsertionOffsetNew + 4] = b"5678"
        else:
            apdu[5:9] = pin
        fs.blocks.append(("SECURE", bytes(apdu)))
        for _ in range(fs.wtx):
            self.answer(msg, RDR_to_PC_DataBlock, 0, 2, 1)
        return self.answer(msg, RDR_to_PC_DataBlock, 0, 0, 0, fs.card.process_apdu(bytes(apdu)))

    # -- events -----------------------------------------------------------
    def insert(self, slot, card):
        self.fslots[slot].card = card
        self.notify(slot)

    def remove(self, slot):
        fs = self.fslots[slot]
        fs.card = None
        fs.powered = False
        self.notify(slot)

    def notify(self, changed_slot):
        present = [fs.card is not None for fs in self.fslots]
        changed = [i == changed_slot for i in range(len(self.fslots))]
        self.interrupts.append(ccid.NotifySlotChange.from_states(present, changed).to_bytes())


def reader_for(fake, **kw):
    return Reader(fake, **kw).open()


SELECT_AID = h("00 A4 04 00 09 F0 63 63 69 64 6B 69 74 01 00")


def test_names_like_pcsc_lite():
    f = FakeReader(manufacturer="Gemalto", product="PC Twin Reader", serial=None)
    assert base_name(f) == "Gemalto PC Twin Reader"
    f.product = "Gemalto PC Twin Reader"
    assert base_name(f) == "Gemalto PC Twin Reader"
    f.serial = "1234"
    f.interface_name = "CCID"
    assert base_name(f) == "Gemalto PC Twin Reader [CCID] (1234)"
    assert slot_name("X", 1, 7) == "X 01 07"
    assert lowest_free_index({0, 2}) == 1
    assert lowest_free_index(set()) == 0


def test_tpdu_t1_power_on_pps_and_apdu():
    f = FakeReader()
    r = reader_for(f)
    assert r.slots[0].present
    atr = r.power_on(0)
    assert atr == f.fslots[0].card.atr
    # lowest class first: bPowerSelect 3 (1.8 V) answered at once
    assert [m.bPowerSelect for m in f.log if m.bMessageType == 0x62] == [3]
    assert r.set_protocol(0, PROTOCOL_T1) == 1
    pps = [b for b in f.fslots[0].blocks if isinstance(b, tuple)]
    # TA1 96 at 4 MHz: 250 kbit/s is over dwMaxDataRate 344086? no: 4e6*32/512 = 250000
    assert pps[0] == ("PPS", h("FF 11 96 78"))
    # IFSD negotiation went first: S(IFS request) with IFSD 254
    assert f.fslots[0].blocks[1] == h("00 C1 01 FE 3E")
    rsp = r.transmit(0, SELECT_AID)
    assert rsp[-2:] == h("90 00") and rsp[:2] == h("6F 16")
    # the APDU went as an I-block N(S)=0
    assert f.fslots[0].blocks[-1][:3] == h("00 00 0F")


def test_tpdu_t0_and_class_fallback():
    slot = FakeSlot(MiniCard(protocols=(0,)), classes="A")
    f = FakeReader([slot])
    r = reader_for(f)
    r.power_on(0)
    assert [m.bPowerSelect for m in f.log if m.bMessageType == 0x62] == [3, 2, 1]
    assert r.slots[0].card_class == "A"
    assert r.set_protocol(0) == 0
    rsp = r.transmit(0, h("00 B0 00 00 04"))
    # READ BINARY without a selected EF: 69 86 through one case-2 TPDU
    assert rsp == h("69 86")
    assert f.fslots[0].blocks[-1] == h("00 B0 00 00 04")


def test_short_apdu_level_and_extended_through_envelope():
    f = FakeReader(level="short")
    r = reader_for(f)
    r.connect(0)
    assert r.transmit(0, SELECT_AID)[-2:] == h("90 00")
    # an extended ECHO of 300 bytes: ENVELOPE segments then GET RESPONSE
    data = bytes(range(256)) + bytes(44)
    apdu = h("80 EE 00 00 00 01 2C") + data + h("00 00")
    # MiniCard has no ENVELOPE: its 6D00 on the first segment comes back
    assert r.transmit(0, apdu) == h("6D 00")
    sent = f.fslots[0].blocks[-1]
    assert sent[:5] == h("10 C2 00 00 FF")


def test_extended_apdu_level_chaining():
    f = FakeReader(level="extended", max_message=100)
    r = reader_for(f)
    r.connect(0)
    data = bytes([i & 0xFF for i in range(300)])
    apdu = h("80 EE 00 00 00 01 2C") + data + h("00 00")
    rsp = r.transmit(0, apdu)
    assert rsp == data + h("90 00")
    levels = [m.wLevelParameter for m in f.log if m.bMessageType == 0x6F]
    assert levels == [1, 3, 3, 2, 0x10, 0x10, 0x10]


def test_two_slots_pipelined_and_answers_matched_by_bseq():
    f = FakeReader([FakeSlot(MiniCard()), FakeSlot(MiniCard())], level="short", busy=2,
                   reorder=True)
    r = reader_for(f)
    r.connect(0)
    r.connect(1)
    out = r.transmit_many({0: h("80 EE 00 00 01 AA 00"), 1: h("80 EE 00 00 01 BB 00")})
    assert out[0] == h("AA 90 00") and out[1] == h("BB 90 00")
    xfr = [m for m in f.log if m.bMessageType == 0x6F]
    assert [m.bSlot for m in xfr[-2:]] == [0, 1]
    assert xfr[-1].bSeq != xfr[-2].bSeq


def test_card_removed_and_reader_gone():
    lines = []
    f = FakeReader(level="short")
    r = reader_for(f, log=lines.append)
    r.connect(0)
    f.remove(0)
    assert r.poll_events(0) == [0]
    assert not r.slots[0].present and r.slots[0].events == 2
    with raises(ReaderError) as e:
        r.transmit(0, SELECT_AID)
    assert e.value.name == "IFD_ICC_NOT_PRESENT"
    f.gone = True
    with raises(ReaderError) as e:
        r.get_slot_status(0)
    assert e.value.name == "IFD_NO_SUCH_DEVICE"
    n = len(f.log)
    with raises(ReaderError) as e:
        r.transmit(0, SELECT_AID)
    assert e.value.name == "IFD_NO_SUCH_DEVICE" and len(f.log) == n
    assert len([l for l in lines if "removed (" in l]) == 1


def test_pcsc_api_on_the_fake_reader():
    from ccidkit.core import pcsc
    present = [FakeReader(level="short", manufacturer="Acme", product="Twin"),
               FakeReader(level="short", manufacturer="Acme", product="Twin", pid=0x5679)]
    mgr = pcsc.ResourceManager(lambda: present)
    ctx = pcsc.SCardEstablishContext(pcsc.SCARD_SCOPE_USER, mgr)
    names = pcsc.SCardListReaders(ctx)
    # identical readers: pcsc-lite tells them apart by the reader number
    assert names == ["Acme Twin 00 00", "Acme Twin 01 00"]
    hc, proto = pcsc.SCardConnect(ctx, names[1], pcsc.SCARD_SHARE_EXCLUSIVE,
                                  pcsc.SCARD_PROTOCOL_T0 | pcsc.SCARD_PROTOCOL_T1)
    assert proto == pcsc.SCARD_PROTOCOL_T0
    assert pcsc.SCardTransmit(hc, pcsc.SCARD_PCI_T0, SELECT_AID)[-2:] == h("90 00")
    with raises(pcsc.PCSCError) as e:
        pcsc.SCardConnect(ctx, names[1], pcsc.SCARD_SHARE_SHARED, pcsc.SCARD_PROTOCOL_T0)
    assert e.value.code == 0x8010000B and e.value.name == "SCARD_E_SHARING_VIOLATION"
    pnp = pcsc.SCardGetStatusChange(ctx, 0, [(pcsc.PNP_NOTIFICATION, 0)])[0][1]
    present.pop(0)
    st = pcsc.SCardGetStatusChange(ctx, 0, [(pcsc.PNP_NOTIFICATION, pnp & ~2),
                                            (names[0], 0)])
    assert (st[0][1] >> 16) == (pnp >> 16) + 1
    assert st[1][1] & pcsc.SCARD_STATE_UNKNOWN
    pcsc.SCardDisconnect(hc, pcsc.SCARD_RESET_CARD)
    pcsc.SCardReleaseContext(ctx)
