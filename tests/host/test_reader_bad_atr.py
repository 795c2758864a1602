"""The emulated reader and a card whose ATR does not parse: a failed
RDR_to_PC_DataBlock with the CCID bError (§6.2.6), never an exception."""

import pytest

from ccidkit.core import ccid as C
from ccidkit.core.driver import Reader, ReaderError
from ccidkit.core.host.emulated import open_emulated
from ccidkit.emu.card.minicard import MiniCard
from ccidkit.emu.reader import EmulatedReader


class BadAtrCard(MiniCard):
    def __init__(self, atr):
        MiniCard.__init__(self)
        self.bad_atr = atr

    @property
    def atr(self):
        return self.bad_atr

    @atr.setter
    def atr(self, value):
        pass


CASES = [
    (b"", C.ICC_MUTE, "ICC_MUTE"),                        # nothing at all
    (bytes.fromhex("12 34 56"), C.BAD_ATR_TS, "BAD_ATR_TS"),  # TS neither 3B nor 3F
    (bytes.fromhex("3B 80 80 01 02"), C.BAD_ATR_TCK, "BAD_ATR_TCK"),  # TCK should be 01
]


def _power_on(em):
    em.bulk_out(C.CCIDMessage(C.PC_to_RDR_IccPowerOn, bSlot=0, bSeq=3, bPowerSelect=1).to_bytes())
    for _ in range(10):
        m = C.decode_bulk_in(bytes(em.bulk_in(65536, 5000)))
        if not m.time_extension:           # time extensions aside
            return m
    raise AssertionError("no final answer")


@pytest.mark.parametrize("atr,bError,name", CASES)
def test_power_on_answers_the_ccid_error(atr, bError, name):
    em = EmulatedReader("gemalto-pctwin", cards={0: BadAtrCard(atr)})
    m = _power_on(em)
    assert (m.bMessageType, m.bSeq, m.command_status, m.bError) == (0x80, 3, 1, bError)
    assert m.error_name == name
    assert m.abData == b""
    # the slot stays unpowered and usable: a good card afterwards powers on
    em.slots[0].card = MiniCard()
    m = _power_on(em)
    assert m.command_status == 0 and m.abData == bytes(MiniCard().atr)


def test_correct_tck_still_powers_on():
    em = EmulatedReader("gemalto-pctwin", cards={0: BadAtrCard(bytes.fromhex("3B 80 80 01 01"))})
    m = _power_on(em)
    assert m.command_status == 0 and m.abData == bytes.fromhex("3B 80 80 01 01")


@pytest.mark.parametrize("atr,bError,name", CASES)
def test_driver_reports_a_reader_error(atr, bError, name):
    backend, ts = open_emulated("gemalto-pctwin", cards={0: BadAtrCard(atr)})
    r = Reader(ts[0]).open()
    with pytest.raises(ReaderError) as e:
        r.power_on(0)
    # every voltage class tried and refused (Reader.power_on's contract row)
    assert e.value.name == "IFD_ERROR_POWER_ACTION"
    assert (name if bError != C.ICC_MUTE else "card mute") in str(e.value)
