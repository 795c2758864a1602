"""The card OS: file system, SELECT modes, BINARY/RECORD, GET RESPONSE, PINs, channels,
session events, applets, ATR from capabilities."""

import pytest

from ccidkit.core.atr import parse_atr
from ccidkit.emu.cardos import (NEV, DF, PIN, RecordEF, TransparentEF, CardOS, CardOSError,
                                build_card_atr, historical_bytes, tlv)

AID_A = bytes.fromhex("D2760000850101")
AID_B = bytes.fromhex("D2760000850102")
BIG = bytes((i * 7) & 0xFF for i in range(600))


def h(text):
    return bytes.fromhex(text.replace(" ", ""))


def sw(resp):
    return resp[-2:].hex().upper()


class Counter:
    """A tiny applet: 80 10 counts up in os.nv; SELECT answers its own FCI."""

    def __init__(self):
        self.resets = 0

    def reset(self, os):
        self.resets += 1

    def select(self, os, ch):
        return tlv(0x6F, tlv(0x84, AID_B) + tlv(0xA5, tlv(0x50, b"counter")))

    def process(self, os, ch, cmd):
        if cmd.cla == 0x80 and cmd.ins == 0x10:
            if not os.allowed(ch, 0x81):
                return h("6982")
            os.nv["count"] = os.nv.get("count", 0) + 1
            os.save()
            return bytes((os.nv["count"],)) + h("9000")
        return None


def make_os(image=None, **kw):
    mf = DF(0x3F00, pins=(0x01,))
    mf.add(TransparentEF(0x2F01, data=BIG, sfi=1))
    mf.add(RecordEF(0x2F02, 5, 3, [b"one", b"two", b"three"], sfi=2))
    mf.add(RecordEF(0x2F03, 2, 3, [b"a1", b"b2", b"c3"], cyclic=True))
    df = mf.add(DF(0x7F00, pins=(0x01,)))
    df.add(TransparentEF(0x6F01, data=b"secret", read=0x01, update=0x01))
    df.add(TransparentEF(0x6F02, data=b"never", read=NEV, update=NEV))
    df.add(DF(0x5F00)).add(TransparentEF(0x4F00, data=b"deep"))
    mf.add(DF(0x7F01))
    adf = mf.add(DF(0x7FF0, aid=AID_A, pins=(0x01, 0x81)))
    adf.add(TransparentEF(0x6F03, data=b"local", read=0x81, update=0x81))
    pins = [PIN(0x01, "1234", puk="12345678", retries=3, puk_retries=2),
            PIN(0x81, "5678", retries=3)]
    card = CardOS(mf, build_card_atr(protocols=(0, 1)), pins=pins, image=image, extended=True,
                  data_objects={0x5F52: b"\x80\x31", 0x0042: b"X" * 300}, **kw)
    card.counter = Counter()
    card.add_application(AID_B, card.counter, fid=0x7FF1, pins=(0x81,))
    card.power_on()
    return card


# --- SELECT -------------------------------------------------------------------------------------

def test_select_modes_and_where_they_lead():
    c = make_os()
    t = c.process_apdu
    assert t(h("00A4000C02 7F00")) == h("9000")               # child DF by FID
    assert t(h("00A4000C02 6F01")) == h("9000")               # EF in the current DF
    assert c.channels[0].ef.fid == 0x6F01
    assert t(h("00A4000C02 7F01")) == h("9000")               # sibling DF of the current DF
    assert t(h("00A4000C02 6F01")) == h("6A82")               # not a child of 7F01
    assert t(h("00A4030C")) == h("9000")                      # parent: the MF
    assert c.channels[0].df.fid == 0x3F00
    assert t(h("00A4030C")) == h("6A82")                      # the MF has no parent
    assert t(h("00A4010C02 7F00")) == h("9000")               # P1 01: child DF
    assert t(h("00A4010C02 6F01")) == h("6A82")               # ... an EF is not one
    assert t(h("00A4020C02 6F01")) == h("9000")               # P1 02: EF under the current DF
    assert t(h("00A4020C02 5F00")) == h("6A82")               # ... a DF is not one
    assert t(h("00A4080C06 7F00 5F00 4F00")) == h("9000")     # path from the MF
    assert t(h("00B0000004")) == b"deep" + h("9000")
    assert t(h("00A4090C02 4F00")) == h("9000")               # path from the current DF (5F00)
    assert t(h("00A4080C04 7F00 4F00")) == h("6A82")
    assert t(h("00A4000C02 3F00")) == h("9000")
    assert t(h("00A40C")) == h("6700")                        # 3 bytes: not an APDU
    assert t(h("00A4000C")) == h("9000")                      # no data: the MF
    assert t(h("00A4000C03 7F0000")) == h("6A87")
    assert t(h("00A4080C03 7F0000")) == h("6A87")
    assert t(h("00A4050C02 7F00")) == h("6A86")
    assert t(h("00A4001C02 7F00")) == h("6A86")
    assert t(h("00A4000D02 7F00")) == h("6A86")               # occurrence bits only with a name


def test_select_answers_fcp_fci_and_nothing():
    c = make_os()
    t = c.process_apdu
    fcp = h("6217 8202 4121 8302 2F01 8A01 05 8C03 030000 8002 0258 8801 08")
    assert t(h("00A4000402 2F01 00")) == fcp + h("9000")
    assert t(h("00A4000002 2F01 00")) == h("6F17") + fcp[2:] + h("9000")
    assert t(h("00A4000802 2F01 00")) == h("6400 9000")
    rec = h("621A 8205 4221 0005 03 8302 2F02 8A01 05 8C03 030000 8002 000F 8801 10")
    assert t(h("00A4000402 2F02 00")) == rec + h("9000")
    # a DF lists the PINs of its PIN status template, enabled ones flagged in PS_DO
    df = t(h("00A4000402 7F00 00"))
    assert df == h("6216 8202 7821 8302 7F00 8A01 05 8C01 00 C606 900180 830101 9000")
    c.pin(0x01).enabled = False
    assert t(h("00A4000402 7F00 00"))[-8:-2] == h("900100 830101")


def test_select_by_name_first_next_and_truncated():
    c = make_os()
    t = c.process_apdu
    r = t(h("00A4040407 D2760000850101 00"))
    assert r[:2] == h("6222") and AID_A in r and sw(r) == "9000"
    # right-truncated name: first occurrence, then the next, then no more
    assert t(h("00A4040C06 D27600008501")) == h("9000")
    assert c.channels[0].df.fid == 0x7FF0
    assert t(h("00A4040E06 D27600008501")) == h("9000")
    assert c.channels[0].df.fid == 0x7FF1
    assert t(h("00A4040E06 D27600008501")) == h("6A82")
    assert t(h("00A4040C05 A000000001")) == h("6A82")
    assert t(h("00A4040D06 D27600008501")) == h("6A86")       # "last occurrence": unsupported
    assert t(h("00A4040C11 " + "00" * 17)) == h("6A87")
    # the applet of an ADF answers its own FCI
    assert t(h("00A4040007 D2760000850102 00")) == h("6F14 8407 D2760000850102 A509 5007") \
        + b"counter" + h("9000")
    assert t(h("00A4000C02 7FFF")) == h("9000")               # 7FFF: the current ADF
    assert c.channels[0].df.fid == 0x7FF1
    assert t(h("00A4000C02 3F00")) == h("9000")
    assert t(h("00A4000C02 7FFF")) == h("6A82")               # no current ADF


# --- BINARY ---------------------------------------------------------------------------------------

def test_read_binary_offsets_sfi_and_lengths():
    c = make_os()
    t = c.process_apdu
    assert t(h("00B0000010")) == h("6986")                     # no current EF
    assert t(h("00B0810010")) == BIG[:16] + h("9000")          # SFI 1, offset 0
    assert c.channels[0].ef.fid == 0x2F01
    assert t(h("00B0020004")) == BIG[512:516] + h("9000")
    assert t(h("00B0024F10")) == BIG[591:] + h("6282")         # end of file before Ne
    assert t(h("00B0024F00")) == BIG[591:] + h("9000")         # Le 00: all up to 256
    assert t(h("00B0025800")) == h("6B00")                     # offset = size
    assert t(h("00B07FFF01")) == h("6B00")
    assert t(h("00B0 0000 000000")) == BIG + h("9000")         # extended Le 0000
    assert t(h("00B0000000")) == BIG[:256] + h("9000")
    assert t(h("00B00000")) == h("6700")                       # no Le
    assert t(h("00B0A00010")) == h("6A86")                     # b8 set, b7-b6 not zero
    assert t(h("00B0830010")) == h("6A82")                     # no EF with SFI 3
    assert t(h("00B0820010")) == h("6981")                     # SFI 2 is a record EF
    assert t(h("00A4000C02 2F02")) == h("9000")
    assert t(h("00B0000005")) == h("6981")


def test_update_binary():
    c = make_os()
    t = c.process_apdu
    assert t(h("00A4000C02 2F01")) == h("9000")
    assert t(h("00D6025603 414243")) == h("6700")              # would run past the end
    assert t(h("00D6025602 4142")) == h("9000")
    assert t(h("00B0025602")) == b"AB" + h("9000")
    assert t(h("00D6025802 4142")) == h("6B00")
    assert t(h("00D60000")) == h("6700")
    assert t(h("00D68100 02 5A5A")) == h("9000")
    assert t(h("00B0000002")) == b"ZZ" + h("9000")


# --- RECORD ---------------------------------------------------------------------------------------

def test_read_record_modes():
    c = make_os()
    t = c.process_apdu
    one, two, three = b"one\xff\xff", b"two\xff\xff", b"three"
    assert t(h("00B2011405")) == one + h("9000")              # SFI 2, record 1
    assert t(h("00B2010405")) == one + h("9000")
    assert t(h("00B2000405")) == h("6A83")                    # no current record yet
    assert t(h("00B2000205")) == one + h("9000")              # next: the first
    assert t(h("00B2000205")) == two + h("9000")
    assert t(h("00B2000405")) == two + h("9000")              # current record
    assert t(h("00B2030405")) == three + h("9000")            # absolute: pointer stays
    assert t(h("00B2000305")) == one + h("9000")              # previous of 2
    assert t(h("00B2000305")) == h("6A83")                    # linear: no record before 1
    assert t(h("00B2040405")) == h("6A83")
    assert t(h("00B2010404")) == h("6C05")                    # Le must be the record length
    assert t(h("00B2010400")) == one + h("9000")              # Le 00: the whole record
    assert t(h("00B2010205")) == h("6A86")                    # next with P1 != 0
    assert t(h("00B2010105")) == h("6A86")                    # mode 1 unsupported
    assert t(h("00B201FC05")) == h("6A86")                    # SFI 31
    assert t(h("00B2010C05")) == h("6981")                    # SFI 1 is transparent
    assert t(h("00B2011C05")) == h("6A82")                    # no EF with SFI 3


def test_cyclic_records_wrap_and_update_record():
    c = make_os()
    t = c.process_apdu
    assert t(h("00A4000C02 2F03")) == h("9000")
    got = [t(h("00B2000202"))[:2] for _ in range(4)]
    assert got == [b"a1", b"b2", b"c3", b"a1"]
    assert t(h("00B2000302")) == b"c3" + h("9000")
    assert t(h("00A4000C02 2F02")) == h("9000")
    assert t(h("00DC020405 4142434445")) == h("9000")
    assert t(h("00B2020405")) == b"ABCDE" + h("9000")
    assert t(h("00DC020404 41424344")) == h("6700")
    assert t(h("00DC050405 4142434445")) == h("6A83")
    assert t(h("00DC0204")) == h("6700")
    assert t(h("00DC000205 5A5A5A5A5A")) == h("9000")          # next: record 1
    assert t(h("00B2010405")) == b"ZZZZZ" + h("9000")


# --- GET RESPONSE and GET DATA ----------------------------------------------------------------

def test_get_response_after_61xx_and_6cxx():
    c = make_os()
    t = c.process_apdu
    r = t(h("00A4000402 2F01"))                                # case 3: no Le
    assert r == h("6119")
    assert t(h("00C0000020")) == h("6C19")
    assert t(h("00C0000019"))[:2] == h("6217")                # the data was kept for it
    c2 = make_os()
    t2 = c2.process_apdu
    assert t2(h("00A4000402 2F01")) == h("6119")
    assert t2(h("00C000001C")) == h("6C19")                   # too long: exact length, kept
    assert t2(h("00C0000000"))[-2:] == h("9000")             # Le 00: all of it
    assert t2(h("00C0000000")) == h("6985")
    c3 = make_os()
    t3 = c3.process_apdu
    assert t3(h("00A4000402 2F01")) == h("6119")
    part = t3(h("00C0000010"))
    assert part[-2:] == h("6109") and part[:2] == h("6217")
    rest = t3(h("00C0000009"))
    assert rest[-2:] == h("9000")
    assert part[:-2] + rest[:-2] == h("6217 8202 4121 8302 2F01 8A01 05 8C03 030000 8002 0258 8801 08")
    assert t3(h("00C0000010")) == h("6985")                   # nothing left
    assert t3(h("00A4000402 2F01")) == h("6119")
    assert t3(h("00B0000001")) == BIG[:1] + h("9000")           # another command drops it
    assert t3(h("00C0000019")) == h("6985")
    assert t3(h("00A4000402 2F01")) == h("6119")
    assert t3(h("00C0010000")) == h("6A86")


def test_get_data():
    c = make_os()
    t = c.process_apdu
    assert t(h("00CA5F5200")) == h("8031 9000")
    assert t(h("00CA5F5302")) == h("6A88")
    r = t(h("00CA004200"))
    assert r == b"X" * 256 + h("612C")
    assert t(h("00C000002C")) == b"X" * 44 + h("9000")
    assert t(h("00CA0042 000000")) == b"X" * 300 + h("9000")


# --- PINs -------------------------------------------------------------------------------------------

def pin_apdu(ins, p2, *values, p1=0):
    data = b"".join(v.encode() + b"\xff" * (8 - len(v)) for v in values)
    return bytes((0x00, ins, p1, p2, len(data))) + data


def test_verify_counts_blocks_and_unblocks():
    c = make_os()
    t = c.process_apdu
    assert t(h("00A4080C04 7F00 6F01")) == h("9000")
    assert t(h("00B0000006")) == h("6982")
    assert t(h("0020000100")) == h("63C3")                    # status: 3 tries, not verified
    assert t(pin_apdu(0x20, 0x01, "0000")) == h("63C2")
    assert t(pin_apdu(0x20, 0x01, "1234")) == h("9000")
    assert t(h("0020000100")) == h("9000")                    # verified
    assert t(h("00B0000006")) == b"secret" + h("9000")
    assert c.pin(0x01).remaining == 3
    assert [t(pin_apdu(0x20, 0x01, "0000")) for _ in range(4)] == \
        [h("63C2"), h("63C1"), h("63C0"), h("6983")]
    assert t(h("00B0000006")) == h("6982")                    # a failed VERIFY clears it
    assert t(pin_apdu(0x20, 0x01, "1234")) == h("6983")
    assert t(h("0020000100")) == h("6983")
    # RESET RETRY COUNTER: wrong PUK counts down, then P1 00 PUK + new PIN
    assert t(pin_apdu(0x2C, 0x01, "00000000", "4321")) == h("63C1")
    assert t(pin_apdu(0x2C, 0x01, "12345678", "4321")) == h("9000")
    assert t(h("00B0000006")) == b"secret" + h("9000")
    assert t(pin_apdu(0x20, 0x01, "1234")) == h("63C2")
    assert t(pin_apdu(0x20, 0x01, "4321")) == h("9000")
    # P1 01: PUK only, the value stays
    t(pin_apdu(0x20, 0x01, "0000"))
    assert t(pin_apdu(0x2C, 0x01, "12345678", p1=1)) == h("9000")
    assert c.pin(0x01).remaining == 3
    # the PUK blocks too
    assert [t(pin_apdu(0x2C, 0x01, "00000000", p1=1)) for _ in range(3)] == \
        [h("63C1"), h("63C0"), h("6983")]
    assert t(pin_apdu(0x2C, 0x81, "00000000", p1=1)) == h("6984")   # PIN 81 has no PUK


def test_pin_format_and_references():
    c = make_os()
    t = c.process_apdu
    assert t(h("0020000104 31323334")) == h("6700")           # not 8 bytes
    assert t(pin_apdu(0x20, 0x01, "12")) == h("6700")         # under the minimum length
    assert t(pin_apdu(0x20, 0x02, "1234")) == h("6A88")       # no such reference
    assert t(pin_apdu(0x20, 0x01, "1234", p1=1)) == h("6A86")
    assert c.pin(0x01).remaining == 3                         # none of these counted


def test_change_disable_enable():
    c = make_os()
    t = c.process_apdu
    assert t(pin_apdu(0x24, 0x01, "0000", "9999")) == h("63C2")
    assert t(pin_apdu(0x24, 0x01, "1234", "99")) == h("6A80")
    assert t(pin_apdu(0x24, 0x01, "1234")) == h("6700")
    assert t(pin_apdu(0x24, 0x01, "1234", "9999")) == h("9000")
    assert t(pin_apdu(0x20, 0x01, "1234")) == h("63C2")
    assert t(pin_apdu(0x20, 0x01, "9999")) == h("9000")
    # DISABLE VERIFICATION REQUIREMENT: the PIN-protected EF opens to all
    c.power_off()
    c.power_on()
    assert t(h("00A4080C04 7F00 6F01")) == h("9000")
    assert t(h("00B0000006")) == h("6982")
    assert t(pin_apdu(0x26, 0x01, "0000")) == h("63C2")
    assert t(pin_apdu(0x26, 0x01, "9999")) == h("9000")
    assert not c.pin(0x01).enabled
    assert t(h("00B0000006")) == b"secret" + h("9000")
    assert t(pin_apdu(0x26, 0x01, "9999")) == h("6985")      # already disabled
    assert t(pin_apdu(0x24, 0x01, "9999", "1111")) == h("6985")
    assert t(h("0020000100")) == h("9000")
    assert t(pin_apdu(0x28, 0x01, "9999")) == h("9000")
    assert t(pin_apdu(0x28, 0x01, "9999")) == h("6985")
    c.power_off()
    c.power_on()
    assert t(h("00A4080C04 7F00 6F01")) == h("9000")
    assert t(h("00B0000006")) == h("6982")


def test_local_pin_status_ends_with_its_application():
    c = make_os()
    t = c.process_apdu
    assert t(h("00A4040C07") + AID_A) == h("9000")
    assert t(h("00A4000C02 6F03")) == h("9000")
    assert t(h("00B0000005")) == h("6982")
    assert t(pin_apdu(0x20, 0x81, "5678")) == h("9000")
    assert t(pin_apdu(0x20, 0x01, "1234")) == h("9000")
    assert t(h("00B0000005")) == b"local" + h("9000")
    assert t(h("00A4000C02 3F00")) == h("9000")
    assert t(h("00A4040C07") + AID_A) == h("9000")
    assert t(h("00A4000C02 6F03")) == h("9000")
    assert t(h("00B0000005")) == h("6982")                    # local PIN 81 dropped
    assert t(h("0020000100")) == h("9000")                    # global PIN 01 kept


# --- logical channels ---------------------------------------------------------------------------

def test_manage_channel_and_independent_channels():
    c = make_os(max_channels=6)
    t = c.process_apdu
    assert t(h("0070000001")) == h("01 9000")
    assert t(h("0070000001")) == h("02 9000")
    assert t(h("00A4000C02 2F01")) == h("9000")
    assert t(h("01A4000C02 2F02")) == h("9000")
    assert t(h("00B0000002")) == BIG[:2] + h("9000")
    assert t(h("01B2010405")) == b"one\xff\xff" + h("9000")
    assert t(h("01B0000002")) == h("6981")
    # security status is per channel
    assert t(pin_apdu(0x20, 0x01, "1234")) == h("9000")
    assert t(h("0120000100")) == h("63C3")
    assert t(h("0070000300")) == h("9000")                    # open channel 3 by number
    assert t(h("0070000300")) == h("6985")                    # already open
    assert t(h("0070000600")) == h("6A86")                    # beyond the card's channels
    assert t(h("0070000001")) == h("04 9000")                 # further interindustry: 4
    assert t(h("40A4000C02 2F01")) == h("9000")               # CLA 40 = channel 4
    assert t(h("40B0000002")) == BIG[:2] + h("9000")
    assert t(h("0070000001")) == h("05 9000")
    assert t(h("0070000001")) == h("6881")                    # all taken
    assert t(h("0070800100")) == h("9000")
    assert t(h("01B0000002")) == h("6881")                    # closed
    assert t(h("0070800100")) == h("6881")
    assert t(h("0270800000")) == h("9000")                    # P2 00: the channel of CLA
    assert t(h("02B0000002")) == h("6881")
    assert t(h("0070800000")) == h("6A86")                    # the basic channel stays
    assert t(h("0070400000")) == h("6A86")
    assert t(h("41B0000002")) == h("6986")                    # channel 5: open, no EF yet
    c.power_off()
    c.power_on()
    assert sorted(c.channels) == [0]
    assert t(h("03B0000002")) == h("6881")


def test_channel_opened_from_a_channel_starts_in_its_df():
    c = make_os()
    t = c.process_apdu
    assert t(h("0070000001")) == h("01 9000")
    assert t(h("01A4000C02 7F00")) == h("9000")
    assert t(h("0170000001")) == h("02 9000")
    assert c.channels[2].df.fid == 0x7F00
    assert t(h("0070000001")) == h("03 9000")
    assert c.channels[3].df.fid == 0x3F00


def test_single_channel_card():
    c = make_os(max_channels=1)
    assert c.process_apdu(h("0070000001")) == h("6881")
    assert c.process_apdu(h("01A4000C02 2F01")) == h("6881")


# --- session events, applets ---------------------------------------------------------------------

def test_events_recorded_in_order_and_volatile_state_cleared():
    c = make_os()
    t = c.process_apdu
    assert t(pin_apdu(0x20, 0x01, "1234")) == h("9000")
    assert t(h("00A4000C02 2F01")) == h("9000")
    assert t(h("0070000001")) == h("01 9000")
    c.event("pps", protocol=1, fi=512, di=32)
    c.event("connect")
    c.event("begin_transaction")
    c.event("end_transaction")
    assert c.protocol == 1
    assert c.reset(warm=True) == c.atr
    assert c.channels[0].ef is None and sorted(c.channels) == [0] and c.protocol is None
    assert t(h("0020000100")) == h("63C3")
    assert t(pin_apdu(0x20, 0x01, "1234")) == h("9000")
    c.reset(warm=False)
    assert t(h("0020000100")) == h("63C3")
    c.power_off()
    c.event("disconnect")
    assert [e[0] for e in c.events] == [
        "power_on", "pps", "connect", "begin_transaction", "end_transaction", "reset_warm",
        "reset_cold", "power_off", "disconnect"]
    assert c.events[1] == ("pps", {"protocol": 1, "fi": 512, "di": 32})
    assert not c.powered


def test_a_method_and_its_event_are_one_happening():
    c = make_os()
    assert [e[0] for e in c.events] == ["power_on"]
    c.event("power_on")                                         # the twin of power_on()
    c.reset(warm=True)
    c.event("reset_warm", source="vpcd")
    c.event("reset_cold")
    c.reset(warm=False)
    c.reset(warm=False)                                         # a second reset is a second one
    c.power_off()
    c.process_apdu(h("00A4000C02 3F00"))
    c.event("power_off")                                        # a command came between
    assert c.events == [("power_on", {}), ("reset_warm", {"source": "vpcd"}),
                        ("reset_cold", {}), ("reset_cold", {}), ("power_off", {}),
                        ("power_off", {})]


def test_bridge_delivery_records_each_event_once():
    vicc = pytest.importorskip("ccidkit.emu.vicc")
    c = make_os()
    for name in ("power_off", "power_on", "reset_warm", "reset_cold"):
        vicc.deliver_event(c, name)
    assert [e[0] for e in c.events] == ["power_on", "power_off", "power_on", "reset_warm",
                                        "reset_cold"]


def test_applet_handles_its_commands_and_persists_nv(tmp_path):
    path = str(tmp_path / "os.json")
    c = make_os(image=path)
    t = c.process_apdu
    assert t(h("8010000001")) == h("6D00")                     # outside the applet: the OS
    assert t(h("00A4040C07") + AID_B) == h("9000")
    assert t(h("8010000001")) == h("6982")
    assert t(pin_apdu(0x20, 0x81, "5678")) == h("9000")        # the OS still serves VERIFY
    assert t(h("8010000001")) == h("01 9000")
    assert t(h("8010000001")) == h("02 9000")
    assert c.counter.resets >= 1
    c.close()
    again = make_os(image=path)
    assert again.nv == {"count": 2}


# --- ATR ------------------------------------------------------------------------------------------

@pytest.mark.parametrize("kw,atr,protocols", [
    (dict(), "3B 10 96", [0]),
    (dict(ta1=None), "3B 00", [0]),
    (dict(classes="ABC"), "3B 90 96 80 1F C7 5E", [0]),
    (dict(protocols=(1,)), "3B 90 96 81 31 FE 45 0D", [1]),
    (dict(protocols=(0, 1), ifsc=32, historical=b"\x80\x57ccidkit"),
     "3B 99 96 80 31 20 45 80 57 63 63 69 64 6B 69 74 77", [0, 1]),
    (dict(protocols=(1,), classes="C", clock_stop="none", ifsc=254, bwi=7, cwi=3),
     "3B 90 96 81 B1 FE 73 1F 04 A0", [1]),
])
def test_atr_from_capabilities(kw, atr, protocols):
    raw = build_card_atr(**kw)
    assert raw == h(atr)
    parsed = parse_atr(raw)
    assert parsed.protocols == protocols and not parsed.warnings
    if 1 in protocols:
        assert parsed.ifsc == kw.get("ifsc", 254)


@pytest.mark.parametrize("kw,hist,lines", [
    (dict(), "80 31 E0 73 F6 21 1B", ["command chaining: no", "extended Lc and Le: no",
                                      "logical channel numbers assigned by the interface device "
                                      "and the card, at most 4"]),
    (dict(max_channels=1), "80 31 E0 73 F6 21 00", ["no logical channel"]),
    (dict(max_channels=20, extended=True, chaining=True), "80 31 E0 73 F6 21 DF",
     ["command chaining: yes", "extended Lc and Le: yes", "at most 8"]),
    (dict(partial_aid=False, ef_dir=False), "80 31 80 73 B6 21 1B",
     ["application selection by full DF name"]),
])
def test_historical_bytes_state_the_capabilities(kw, hist, lines):
    hb = historical_bytes(**kw)
    assert hb == h(hist)
    text = "\n".join(parse_atr(build_card_atr(historical=hb)).explain())
    for line in lines:
        assert line in text
    assert "implicit" not in text
    if not kw.get("partial_aid", True):
        assert "partial DF name" not in text


def test_atr_same_as_minicard_builder():
    from ccidkit.emu.card.minicard import build_atr
    assert build_card_atr(protocols=(0, 1), ifsc=32, historical=b"\x80\x57ccidkit") == build_atr()


@pytest.mark.parametrize("kw", [
    dict(protocols=()), dict(protocols=(2,)), dict(protocols=(0, 0)), dict(ifsc=0),
    dict(historical=b"x" * 16), dict(classes="D"), dict(classes="A", clock_stop="sometimes"),
])
def test_atr_builder_refuses_impossible_capabilities(kw):
    with pytest.raises(CardOSError):
        build_card_atr(**kw)


def test_bad_definitions():
    mf = DF(0x3F00)
    mf.add(TransparentEF(0x2F01, data=b"x"))
    with pytest.raises(CardOSError):
        mf.add(TransparentEF(0x2F01, data=b"y"))
    with pytest.raises(CardOSError):
        mf.add(TransparentEF(0x7FFF, data=b"y"))
    with pytest.raises(CardOSError):
        RecordEF(0x2F02, 0, 1)
    with pytest.raises(CardOSError):
        TransparentEF(0x2F02, size=1, data=b"toolong")
    with pytest.raises(CardOSError):
        TransparentEF(0x2F02, data=b"x", read="sometimes")
    with pytest.raises(CardOSError):
        CardOS(DF(0x3F01), b"\x3b\x00")
    with pytest.raises(CardOSError):
        CardOS(mf, b"\x3b\x00", pins=[PIN(1, "1234"), PIN(1, "5678")])
    with pytest.raises(CardOSError):
        PIN(1, "123456789")
    assert "1234" not in repr(PIN(1, "1234"))


# --- the registry -------------------------------------------------------------------------------

def test_registry_makes_cards_by_name():
    from ccidkit.emu.cards import card_names, make_card
    from ccidkit.emu.card.minicard import MiniCard
    from ccidkit.emu.cards.esim import EsimCard
    from ccidkit.emu.cards.usim import UsimCard
    assert {"usim", "esim", "mini", "auth"} <= set(card_names())
    assert isinstance(make_card("usim", records=3), UsimCard)
    assert isinstance(make_card("esim", ports=1), EsimCard)
    mini = make_card("mini", protocols=(1,))
    assert isinstance(mini, MiniCard) and parse_atr(mini.atr).protocols == [1]


@pytest.mark.parametrize("name,kw,err", [
    ("nosuch", {}, "UNKNOWN_CARD"),
    ("usim", {"recrods": 3}, "BAD_OPTION"),
    ("esim", {"port": 2}, "BAD_OPTION"),
    ("mini", {"colour": "red"}, "BAD_OPTION"),
    ("mini", {"image": "x.json"}, "NO_IMAGE"),
])
def test_registry_refusals(name, kw, err):
    from ccidkit.emu.cards import make_card
    with pytest.raises(CardOSError) as e:
        make_card(name, **kw)
    assert e.value.name == err


def test_registry_card_whose_module_is_missing(monkeypatch):
    from ccidkit.emu import cards
    monkeypatch.setitem(cards.CARDS, "later", ("ccidkit.emu.cards.later_card", "not yet"))
    with pytest.raises(CardOSError) as e:
        cards.make_card("later")
    assert e.value.name == "UNKNOWN_CARD" and "emu/cards/later_card.py" in str(e.value)
