from ccidkit.core import ccid
from ccidkit.core.ccid import CCIDError, CCIDMessage
from support import h, raises


def test_message_type_constants_are_the_spec_values():
    assert (ccid.PC_to_RDR_IccPowerOn, ccid.PC_to_RDR_IccPowerOff,
            ccid.PC_to_RDR_GetSlotStatus, ccid.PC_to_RDR_XfrBlock) == (0x62, 0x63, 0x65, 0x6F)
    assert (ccid.PC_to_RDR_GetParameters, ccid.PC_to_RDR_ResetParameters,
            ccid.PC_to_RDR_SetParameters, ccid.PC_to_RDR_Escape) == (0x6C, 0x6D, 0x61, 0x6B)
    assert (ccid.PC_to_RDR_IccClock, ccid.PC_to_RDR_T0APDU, ccid.PC_to_RDR_Secure,
            ccid.PC_to_RDR_Mechanical, ccid.PC_to_RDR_Abort,
            ccid.PC_to_RDR_SetDataRateAndClockFrequency) == (0x6E, 0x6A, 0x69, 0x71, 0x72, 0x73)
    assert (ccid.RDR_to_PC_DataBlock, ccid.RDR_to_PC_SlotStatus, ccid.RDR_to_PC_Parameters,
            ccid.RDR_to_PC_Escape, ccid.RDR_to_PC_DataRateAndClockFrequency) == (
                0x80, 0x81, 0x82, 0x83, 0x84)
    assert (ccid.RDR_to_PC_NotifySlotChange, ccid.RDR_to_PC_HardwareError) == (0x50, 0x51)
    assert ccid.message_name(0x6F) == "PC_to_RDR_XfrBlock"
    assert ccid.message_name(0x50) == "RDR_to_PC_NotifySlotChange"


# (wire bytes, expected fields) for every bulk message of §6.1 and §6.2.
ROUND_TRIPS = (
    ("62 00000000 00 01 02 0000", (("bPowerSelect", 2), ("abRFU", b"\x00\x00"))),
    ("63 00000000 01 02 000000", (("abRFU", b"\x00\x00\x00"),)),
    ("65 00000000 02 03 000000", (("bSlot", 2), ("bSeq", 3))),
    ("6F 05000000 00 04 07 3412 00A4040000",
     (("bBWI", 7), ("wLevelParameter", 0x1234), ("abData", h("00A4040000")))),
    ("6C 00000000 00 05 000000", (("bSeq", 5),)),
    ("6D 00000000 00 06 000000", (("bSeq", 6),)),
    ("61 05000000 00 07 00 0000 1100000A00", (("bProtocolNum", 0),)),
    ("61 07000000 00 08 01 0000 9611004D03FE00", (("bProtocolNum", 1),)),
    ("6B 03000000 00 09 000000 020101", (("abData", h("020101")),)),
    ("6E 00000000 00 0A 01 0000", (("bClockCommand", 1),)),
    ("6A 00000000 00 0B 03 C0 80",
     (("bmChanges", 3), ("bClassGetResponse", 0xC0), ("bClassEnvelope", 0x80))),
    ("69 04000000 00 0C 00 0000 03000000", (("bPINOperation", 3),)),
    ("71 00000000 00 0D 02 0000", (("bFunction", 2),)),
    ("72 00000000 00 0E 000000", (("bSeq", 14),)),
    ("73 08000000 00 0F 000000 A00F0000 80250000",
     (("dwClockFrequency", 4000), ("dwDataRate", 9600))),
    ("80 04000000 00 10 00 00 00 3B009000",
     (("bStatus", 0), ("bError", 0), ("bChainParameter", 0), ("abData", h("3B009000")))),
    ("81 00000000 00 11 42 FE 01",
     (("bStatus", 0x42), ("bError", 0xFE), ("bClockStatus", 1))),
    ("82 07000000 00 12 00 00 01 1110004D002000", (("bProtocolNum", 1),)),
    ("82 00000000 00 13 40 F6 00", (("bError", 0xF6),)),
    ("83 02000000 00 14 00 00 00 9000", (("bRFU", 0), ("abData", h("9000")))),
    ("84 08000000 00 15 00 00 00 C0120000 00960000",
     (("dwClockFrequency", 4800), ("dwDataRate", 38400))),
)


def test_every_message_round_trips_with_its_fields():
    seen = set()
    for text, expected in ROUND_TRIPS:
        wire = h(text)
        msg = ccid.decode_message(wire)
        seen.add(msg.bMessageType)
        assert msg.bMessageType == wire[0]
        assert msg.dwLength == len(wire) - 10
        assert msg.bSlot == wire[5] and msg.bSeq == wire[6]
        for name, value in expected:
            assert getattr(msg, name) == value, (text, name, getattr(msg, name))
        assert msg.to_bytes() == wire, text
        # rebuilt from its fields alone, the message encodes the same bytes
        kw = {}
        for name, value in msg.fields()[4:]:
            kw[name] = value
        again = CCIDMessage(msg.bMessageType, msg.bSlot, msg.bSeq, **kw)
        assert again.to_bytes() == wire, text
        # direction-specific decoders agree and refuse the other direction
        if wire[0] < 0x80:
            assert ccid.decode_bulk_out(wire) == msg
            with raises(CCIDError):
                ccid.decode_bulk_in(wire)
        else:
            assert ccid.decode_bulk_in(wire) == msg
            with raises(CCIDError):
                ccid.decode_bulk_out(wire)
    assert len(seen) == 19


def test_set_parameters_named_fields():
    t0 = ccid.decode_message(h("61 05000000 00 07 00 0000 9602000A03")).abProtocolDataStructure
    assert isinstance(t0, ccid.T0Parameters)
    assert (t0.bmFindexDindex, t0.bmTCCKST0, t0.bGuardTimeT0, t0.bWaitingIntegerT0,
            t0.bClockStop) == (0x96, 0x02, 0x00, 0x0A, 0x03)
    assert (t0.Findex, t0.Dindex, t0.inverse_convention) == (9, 6, True)
    m = ccid.decode_message(h("61 07000000 00 08 01 0000 1811024D01FE05"))
    t1 = m.abProtocolDataStructure
    assert (t1.bmFindexDindex, t1.bmTCCKST1, t1.bGuardTimeT1, t1.bmWaitingIntegersT1,
            t1.bClockStop, t1.bIFSC, t1.bNadValue) == (0x18, 0x11, 0x02, 0x4D, 0x01, 0xFE, 0x05)
    assert (t1.BWI, t1.CWI, t1.crc, t1.inverse_convention) == (4, 13, True, False)
    t1.bIFSC = 0x20            # the structure is what gets encoded
    assert m.to_bytes() == h("61 07000000 00 08 01 0000 1811024D012005")
    built = CCIDMessage(ccid.PC_to_RDR_SetParameters, 0, 9, bProtocolNum=1,
                        abProtocolDataStructure=ccid.T1Parameters(bIFSC=0xFE))
    assert built.to_bytes() == h("61 07000000 00 09 01 0000 1110004D00FE00")
    # a structure of the wrong size for its protocol, or the wrong protocol
    for bad in ("61 07000000 00 08 00 0000 1811024D01FE05",
                "61 05000000 00 08 01 0000 1100000A00",
                "82 04000000 00 08 00 00 00 11000000"):
        with raises(CCIDError):
            ccid.decode_message(h(bad))
    with raises(CCIDError):
        CCIDMessage(0x61, bProtocolNum=0, abProtocolDataStructure=ccid.T1Parameters()).to_bytes()
    with raises(CCIDError, "UNKNOWN_FIELD"):
        CCIDMessage(0x61, bProtocolnum=1)
    # another protocol keeps its bytes raw
    other = ccid.decode_message(h("61 03000000 00 08 80 0000 010203"))
    assert other.abProtocolDataStructure is None and other.abData == h("010203")


VERIFY = ("69 1C000000 00 01 00 0000 00"
          "1E 82 47 04 0804 02 01 0904 00 000000 00200001 08 2020202020202020")
MODIFY_2 = ("69 19000000 00 02 00 0000 01"
            "00 82 08 00 00 08 0804 01 02 02 0904 01 02 000000 00240001 10 FF")


def test_secure_pin_verification_structure():
    m = ccid.decode_message(h(VERIFY))
    assert m.bPINOperation == ccid.PIN_VERIFICATION
    v = m.abPINDataStructure
    assert isinstance(v, ccid.PINVerification)
    assert (v.bTimeOut, v.bmFormatString, v.bmPINBlockString, v.bmPINLengthFormat) == (
        0x1E, 0x82, 0x47, 0x04)
    assert v.wPINMaxExtraDigit == 0x0408 and (v.min_pin_size, v.max_pin_size) == (4, 8)
    assert (v.bEntryValidationCondition, v.bNumberMessage, v.wLangId, v.bMsgIndex) == (
        2, 1, 0x0409, 0)
    assert v.bTeoPrologue == b"\x00\x00\x00"
    assert v.abPINApdu == h("00200001 08 2020202020202020")
    assert m.to_bytes() == h(VERIFY)
    assert CCIDMessage(0x69, 0, 1, bPINOperation=0, abPINDataStructure=v).to_bytes() == h(VERIFY)


def test_secure_pin_modification_message_indexes_follow_bNumberMessage():
    m = ccid.decode_message(h(MODIFY_2))
    p = m.abPINDataStructure
    assert isinstance(p, ccid.PINModification)
    assert (p.bInsertionOffsetOld, p.bInsertionOffsetNew, p.wPINMaxExtraDigit,
            p.bConfirmPIN, p.bEntryValidationCondition, p.bNumberMessage) == (
                0, 8, 0x0408, 1, 2, 2)
    assert (p.wLangId, p.bMsgIndex1, p.bMsgIndex2, p.bMsgIndex3) == (0x0409, 1, 2, None)
    assert p.abPINApdu == h("00240001 10 FF")
    assert m.to_bytes() == h(MODIFY_2)
    for number, count in ((0, 1), (1, 2), (2, 2), (3, 3), (0xFF, 3)):
        pm = ccid.PINModification(bNumberMessage=number, abPINApdu=h("00240000"))
        raw = pm.to_bytes()
        assert len(raw) == 13 + count + 3 + 4
        back = ccid.PINModification.from_bytes(raw)
        assert back == pm and back.to_bytes() == raw
        assert (back.bMsgIndex2 is None) == (count < 2)
        assert (back.bMsgIndex3 is None) == (count < 3)


def test_secure_other_operations_and_chained_blocks_keep_raw_data():
    m = ccid.decode_message(h("69 03000000 00 01 00 0000 06 AABB"))
    assert m.bPINOperation == 6 and m.abPINDataStructure is None and m.abPINData == h("AABB")
    # a continuation block (wLevelParameter 2) has no bPINOperation
    m = ccid.decode_message(h("69 03000000 00 01 00 0200 00 AABB"))
    assert m.bPINOperation is None and m.abData == h("00AABB")
    with raises(CCIDError):   # verification structure cut short
        ccid.decode_message(h("69 05000000 00 01 00 0000 00 1E824704"))


def test_status_and_error_names():
    assert ccid.icc_status(0x42) == ccid.ICC_STATUS_NOT_PRESENT
    assert ccid.command_status(0x42) == ccid.COMMAND_STATUS_FAILED
    assert ccid.command_status(0x80) == ccid.COMMAND_STATUS_TIME_EXTENSION
    assert ccid.make_status(1, 1) == 0x41
    names = ((0xFF, "CMD_ABORTED"), (0xFE, "ICC_MUTE"), (0xFD, "XFR_PARITY_ERROR"),
             (0xFC, "XFR_OVERRUN"), (0xFB, "HW_ERROR"), (0xF8, "BAD_ATR_TS"),
             (0xF7, "BAD_ATR_TCK"), (0xF6, "ICC_PROTOCOL_NOT_SUPPORTED"),
             (0xF5, "ICC_CLASS_NOT_SUPPORTED"), (0xF4, "PROCEDURE_BYTE_CONFLICT"),
             (0xF3, "DEACTIVATED_PROTOCOL"), (0xF2, "BUSY_WITH_AUTO_SEQUENCE"),
             (0xF0, "PIN_TIMEOUT"), (0xEF, "PIN_CANCELLED"), (0xE0, "CMD_SLOT_BUSY"),
             (0x00, "CMD_NOT_SUPPORTED"), (0x05, "BAD_PARAMETER"), (0x7F, "BAD_PARAMETER"),
             (0x81, "USER_DEFINED"), (0xC0, "USER_DEFINED"), (0xF9, "RFU"), (0x80, "RFU"))
    for code, name in names:
        assert ccid.error_name(code) == name, code
    assert "bSlot" in ccid.error_text(5)
    assert "bProtocolNum" in ccid.error_text(7, ccid.PC_to_RDR_SetParameters)
    assert "abData[2]" in ccid.error_text(12)
    assert "ICC_MUTE" in ccid.status_text(0x41, 0xFE)
    assert "multiplier 3" in ccid.status_text(0x80, 3)


def test_check_response():
    ok = ccid.decode_message(h("80 02000000 00 05 00 00 00 9000"))
    assert ccid.check_response(ok, 0, 5) is ok
    mute = ccid.decode_message(h("80 00000000 00 05 41 FE 00"))
    assert mute.failed and not mute.time_extension
    with raises(CCIDError) as r:
        ccid.check_response(mute)
    assert (r.value.code, r.value.name, r.value.response) == (0xFE, "ICC_MUTE", mute)
    assert isinstance(r.value, ccid.CcidkitError)
    busy = ccid.decode_message(h("81 00000000 00 06 40 E0 00"))
    with raises(CCIDError, "CMD_SLOT_BUSY"):
        ccid.check_response(busy)
    wtx = ccid.decode_message(h("80 00000000 00 07 80 05 00"))
    assert wtx.time_extension and wtx.bError == 5
    assert ccid.check_response(wtx) is wtx
    with raises(CCIDError, "FOREIGN_RESPONSE"):
        ccid.check_response(ok, 1, 5)
    with raises(CCIDError, "STALE_RESPONSE"):
        ccid.check_response(ok, 0, 6)
    with raises(CCIDError):
        ccid.check_response(ccid.decode_message(h("65 00000000 00 05 000000")))


def test_length_checks_and_garbage():
    bad = (
        ("", "TRUNCATED"),
        ("80 00000000 00 05 00 00", "TRUNCATED"),              # header cut short
        ("80 05000000 00 05 00 00 00 9000", "TRUNCATED"),      # announces more than present
        ("80 FFFFFFFF 00 05 00 00 00", "TOO_LONG"),            # absurd dwLength
        ("80 00000000 00 05 00 00 00 9000", "TRAILING_DATA"),
        ("62 01000000 00 05 00 0000 00", "BAD_LENGTH"),        # IccPowerOn carries no data
        ("73 04000000 00 05 000000 A00F0000", "BAD_LENGTH"),
        ("84 04000000 00 05 00 00 00 A00F0000", "BAD_LENGTH"),
        ("99 00000000 00 05 000000", "UNKNOWN_MESSAGE"),
        ("50", "TRUNCATED"),
        ("51 00 01", "BAD_LENGTH"),
    )
    for text, name in bad:
        with raises(CCIDError, name):
            ccid.decode_message(h(text))
    with raises(CCIDError) as r:
        ccid.decode_message(h("63 01000000 00 05 000000 00"))
    assert r.value.code == 1          # the bError a reader answers: offset of dwLength
    # the limit is a parameter: whole message, header included
    wire = h("80 06000000 00 05 00 00 00 010203040506")
    assert ccid.decode_message(wire, 16).abData == h("010203040506")
    with raises(CCIDError, "TOO_LONG"):
        ccid.decode_message(wire, 15)
    assert ccid.decode_message(wire + b"\x00", allow_trailing=True).dwLength == 6
    # an empty Parameters / DataRateAndClockFrequency answer (failed command) is fine
    assert ccid.decode_message(h("84 00000000 00 05 40 00 00")).dwClockFrequency is None


def test_fast_path_encoders_match_messages():
    buf = bytearray(300)
    n = ccid.encode_xfr_block_into(buf, 1, 200, h("00B0000010"), 4, 0)
    assert bytes(buf[:n]) == CCIDMessage(0x6F, 1, 200, bBWI=4, abData=h("00B0000010")).to_bytes()
    n = ccid.encode_simple_into(buf, ccid.PC_to_RDR_IccPowerOn, 0, 3, 1)
    assert bytes(buf[:n]) == h("62 00000000 00 03 01 0000")
    n = ccid.encode_header_into(buf, 0x80, 2, 0, 3, 0x40, 0xFE, 0)
    assert bytes(buf[:n]) == h("80 02000000 00 03 40 FE 00")
    assert ccid.peek_header(h("6F 05000000 02 09 000000")) == (0x6F, 5, 2, 9)
    m = CCIDMessage(0x6F, 0, 1, abData=h("0102"))
    assert m.encode_into(buf, 100) == 12 and bytes(buf[100:112]) == m.to_bytes()


def test_pin_apdus_are_hidden_in_descriptions():
    verify = CCIDMessage(0x6F, 0, 1, abData=h("0020008108 31323334FFFFFFFF"))
    text = "\n".join(verify.describe()) + repr(verify)
    assert "31323334" not in text and "hidden" in text
    t1_block = CCIDMessage(0x6F, 0, 1, abData=h("00 00 0D 0020008108 31323334FFFFFFFF 00"))
    assert "31323334" not in "\n".join(t1_block.describe())
    select = CCIDMessage(0x6F, 0, 1, abData=h("00A4040002 3F00"))
    assert "00 A4 04 00 02 3F 00" in "\n".join(select.describe())


def test_notify_slot_change_any_number_of_slots():
    one = ccid.decode_message(h("50 03"))
    assert one.slots == 4 and one.present(0) and one.changed(0)
    assert ccid.decode_interrupt(h("50 03"), 1).states() == [(True, True)]
    qemu_removed = ccid.decode_interrupt(h("50 02"), 1)
    assert not qemu_removed.present(0) and qemu_removed.changed(0)
    two = ccid.decode_interrupt(h("50 0E"), 2)          # slot 0 changed, slot 1 present+changed
    assert two.states() == [(False, True), (True, True)] and two.changed_slots() == [0, 1]
    eight = ccid.decode_interrupt(h("50 01 E0"), 8)
    assert [s for s in range(8) if eight.present(s)] == [0, 7]
    assert eight.changed_slots() == [6, 7]
    present = [i % 3 == 0 for i in range(96)]
    changed = [i % 5 == 0 for i in range(96)]
    big = ccid.NotifySlotChange.from_states(present, changed)
    wire = big.to_bytes()
    assert len(wire) == 1 + 24
    back = ccid.decode_interrupt(wire, 96)
    assert back.states() == [(present[i], changed[i]) for i in range(96)]
    assert back.to_bytes() == wire
    with raises(CCIDError, "TRUNCATED"):
        ccid.decode_interrupt(h("50 FF"), 8)             # 8 slots need 2 bytes
    with raises(CCIDError):
        one.present(4)
    with raises(CCIDError, "TOO_LONG"):
        ccid.decode_interrupt(b"\x50" + bytes(65))
    assert "  slot 0: ICC present, changed" in one.describe()


def test_hardware_error():
    e = ccid.decode_message(h("51 02 07 01"))
    assert (e.bSlot, e.bSeq, e.bHardwareErrorCode) == (2, 7, ccid.HARDWARE_ERROR_OVERCURRENT)
    assert e.to_bytes() == h("51 02 07 01")
    assert ccid.HardwareError(1, 2, 1) == ccid.decode_interrupt(h("51 01 02 01"))


def _data_block(seq, data):
    return CCIDMessage(0x80, 0, seq, abData=data).to_bytes()


def test_reassembler_partial_reads_short_packets_and_zlp():
    r = ccid.BulkInReassembler(max_packet_size=64)
    wire = _data_block(1, bytes(range(200)))            # 210 bytes: 64+64+64+18
    assert r.feed(wire[:64]) == () and r.feed(wire[64:128]) == ()
    assert r.pending == 128
    assert r.feed(wire[128:192]) == ()
    got = r.feed(wire[192:])
    assert len(got) == 1 and got[0].abData == bytes(range(200)) and r.pending == 0
    # several packets in one read
    assert r.feed(wire[:192]) == () and r.feed(wire[192:])[0].bSeq == 1
    # a message filling its last packet exactly, then the zero-length packet
    exact = _data_block(2, bytes(54))                   # 64 bytes
    assert r.feed(exact)[0].bSeq == 2
    assert r.feed(b"") == () and r.pending == 0
    assert r.feed(_data_block(3, b""))[0].bSeq == 3
    # a short packet ends the transfer early
    r.feed(wire[:64])
    with raises(CCIDError, "TRUNCATED"):
        r.feed(wire[64:100])
    assert r.pending == 0
    r.feed(wire[:64])
    with raises(CCIDError, "TRUNCATED"):
        r.feed(b"")
    # one transfer carries one message
    with raises(CCIDError, "TRAILING_DATA"):
        r.feed(_data_block(4, b"\x90\x00") + _data_block(5, b""))
    # an absurd announcement fails at the header, before any data arrives
    small = ccid.BulkInReassembler(64, max_message_length=300)
    with raises(CCIDError, "TOO_LONG"):
        small.feed(h("80 FFFFFF7F 00 01 00 00 00") + bytes(54))
    with raises(CCIDError, "UNKNOWN_MESSAGE"):
        small.feed(h("6F 00000000 00 01 000000"))
    # a complete but malformed message leaves nothing behind
    with raises(CCIDError, "BAD_LENGTH"):
        small.feed(h("84 03000000 00 01 00 00 00 010203"))
    assert small.pending == 0 and small.feed(_data_block(6, b""))[0].bSeq == 6


def test_reassembler_stream_mode_splits_anywhere():
    stream = _data_block(1, h("9000")) + _data_block(2, bytes(70)) + _data_block(3, b"")
    for step in (1, 7, 13, len(stream)):
        r = ccid.BulkInReassembler(max_packet_size=None)
        seqs = []
        for i in range(0, len(stream), step):
            for m in r.feed(stream[i:i + step]):
                seqs.append(m.bSeq)
        assert seqs == [1, 2, 3], step
    raw = ccid.BulkInReassembler(None, decode=False).feed(_data_block(9, b"\x01"))
    assert raw == (_data_block(9, b"\x01"),)


def test_seq_tracker_wraps_and_matches():
    t = ccid.SeqTracker(start=254)
    assert [t.issue(0), t.issue(1, ccid.PC_to_RDR_XfrBlock), t.issue(2)] == [254, 255, 0]
    assert t.outstanding() == [(0, 254), (1, 255), (2, 0)]
    assert t.busy_slots() == [0, 1, 2] and t.is_busy(1)
    # time extension keeps the command outstanding; its final answer clears it
    wtx = ccid.decode_message(h("80 00000000 01 FF 80 02 00"))
    assert t.match_response(wtx) == ccid.PC_to_RDR_XfrBlock
    assert (1, 255) in t.outstanding()
    done = ccid.decode_message(h("80 02000000 01 FF 00 00 00 9000"))
    assert t.match_response(done) == ccid.PC_to_RDR_XfrBlock
    assert (1, 255) not in t.outstanding()
    with raises(CCIDError, "STALE_RESPONSE"):      # answered already
        t.match_response(done)
    with raises(CCIDError, "STALE_RESPONSE"):      # never sent
        t.match(0, 77)
    with raises(CCIDError, "FOREIGN_RESPONSE"):    # bSeq 254 went to slot 0
        t.match(2, 254)
    assert t.outstanding() == [(0, 254), (2, 0)]
    # the wrong kind of answer (unless it reports a failure)
    t2 = ccid.SeqTracker()
    s = t2.issue(0, ccid.PC_to_RDR_GetSlotStatus)
    with raises(CCIDError, "UNEXPECTED_RESPONSE"):
        t2.match(0, s, bMessageType=ccid.RDR_to_PC_DataBlock)
    assert t2.match(0, s, bMessageType=ccid.RDR_to_PC_DataBlock, failed=True) == 0x65


def test_seq_tracker_busy_slots():
    t = ccid.SeqTracker(max_busy=2)
    a = t.issue(0)
    with raises(CCIDError, "CMD_SLOT_BUSY"):       # one command per slot
        t.issue(0)
    t.issue(1)
    with raises(CCIDError, "CMD_SLOT_BUSY"):       # bMaxCCIDBusySlots reached
        t.issue(2)
    abort = t.issue(0, ccid.PC_to_RDR_Abort)       # Abort goes to a busy slot
    assert abort != a and t.outstanding()[:2] == [(0, a), (0, abort)]
    assert t.forget(0, a) and not t.forget(1, abort)
    t.forget_slot(0)
    assert t.outstanding() == [(1, 1)]
    many = ccid.SeqTracker()
    for slot in range(256):
        many.issue(slot)
    with raises(CCIDError, "SEQ_EXHAUSTED"):
        many.issue(999)


def test_class_requests():
    assert ccid.abort_request(0, 1, 0x22) == (0x21, 0x01, 0x2201, 0, 0)
    assert ccid.setup_packet(ccid.abort_request(2, 1, 0x22)) == h("21 01 0122 0200 0000")
    assert ccid.parse_abort_request(0x2201) == (1, 0x22)
    assert ccid.get_clock_frequencies_request(0, 3) == (0xA1, 0x02, 0, 0, 12)
    assert ccid.setup_packet(ccid.get_data_rates_request(1, 2)) == h("A1 03 0000 0100 0800")
    assert ccid.parse_dword_array(h("A00F0000 401F0000")) == [4000, 8000]
    assert ccid.parse_dword_array(h("80250000 004B0000 00960000"), 2) == [9600, 19200]
    with raises(CCIDError):
        ccid.parse_dword_array(h("802500"))
    with raises(CCIDError):
        ccid.parse_dword_array(h("80250000"), 2)
