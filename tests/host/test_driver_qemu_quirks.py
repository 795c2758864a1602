"""QEMU's usb-ccid (08E6:4433) as the driver meets it: the quirks-table row
keeps every exchange within what that reader carries, and its answer queue
(answers carry the bSeq at the head of a queue, so one unanswered XfrBlock
shifts every later pairing by one) is survived by pairing in order."""

import os
import sys

sys.path.insert(0, os.path.join(os.path.dirname(os.path.dirname(__file__)), "portable"))

from test_driver import FakeReader, h  # noqa: E402

from ccidkit.core.ccid import RDR_to_PC_DataBlock  # noqa: E402
from ccidkit.core.driver import EXCHANGE_SHORT_APDU, Reader, ReaderError  # noqa: E402
from ccidkit.core.quirks import quirks_for  # noqa: E402
from ccidkit.emu.card.minicard import MiniCard, ef_content  # noqa: E402

import pytest  # noqa: E402

SELECT_2F00 = h("00 A4 00 0C 02 2F 00")


class QemuLikeReader(FakeReader):
    """The answer queue of QEMU 7.2's usb-ccid: each XfrBlock's bSeq joins a
    queue; each answer from the card takes the bSeq at the head. ``silent``
    XfrBlocks (a card that never answers) stay in the queue; removing the
    card empties it. It announces TPDU level (the quirk forces short APDU)."""

    def __init__(self, **kw):
        FakeReader.__init__(self, level="TPDU", vid=0x08E6, pid=0x4433, features=0x000104FE,
                            max_message=65554, pin=1, **kw)
        self.level = "short"              # what it really does: APDU passthrough
        self.queue = []
        self.silent = 0
        self.apdus = []

    def xfr(self, msg, fs):
        self.queue.append(msg.bSeq)
        if self.silent:
            self.silent -= 1
            return
        data = bytes(msg.abData)
        self.apdus.append(data)
        msg.bSeq = self.queue.pop(0)
        return self.answer(msg, RDR_to_PC_DataBlock, 0, 0, 0, fs.card.process_apdu(data))

    def remove_and_insert(self):
        self.queue = []


def open_reader():
    t = QemuLikeReader()
    log = []
    r = Reader(t, log=log.append).open()
    r.connect(0)
    return t, r, log


def test_the_quirks_row_names_every_defect():
    q = quirks_for(0x08E6, 0x4433)
    assert q["exchange"] == "short APDU" and q["pin_support"] == 0
    assert q["max_busy_slots"] == 1 and q["max_message_length"] == 271
    assert q["max_response"] == 374 and q["answers_in_order"] is True
    assert q["stale_first_notify"] is True
    t, r, _ = open_reader()
    assert r.exchange == EXCHANGE_SHORT_APDU and r.max_busy == 1 and r.pin_support == 0


def test_an_unanswered_apdu_does_not_break_the_next_ones():
    t, r, log = open_reader()
    assert r.transmit(0, SELECT_2F00) == h("90 00")
    t.silent = 1
    with pytest.raises(ReaderError) as e:
        r.transmit(0, h("00 B0 00 00 10"))
    assert e.value.name == "IFD_RESPONSE_TIMEOUT"
    assert len(t.queue) == 1                          # the reader still holds it
    content = ef_content(0x2F00)
    # each later answer carries the bSeq of the XfrBlock before it, and is
    # still given to the command it answers, with the right bytes
    for off in (0, 16, 32):
        ans = r.transmit(0, bytes((0x00, 0xB0, 0, off, 16)))
        assert ans == content[off:off + 16] + b"\x90\x00"
    assert len([line for line in log if "paired by order" in line]) == 3
    assert r.stale == 0
    # a second silent command shifts the pairing once more; still survived
    t.silent = 1
    with pytest.raises(ReaderError):
        r.transmit(0, h("00 B0 00 00 10"))
    assert r.transmit(0, bytes((0x00, 0xB0, 0, 48, 16))) == content[48:64] + b"\x90\x00"
    assert len(r.unanswered) == 2


def test_without_the_quirk_the_shifted_answers_are_lost():
    # the same reader under another name: the driver pairs by bSeq only and
    # every answer after the silent command is dropped as stale
    t = QemuLikeReader()
    t.vid, t.pid = 0x1234, 0x5678
    r = Reader(t, quirks={"exchange": "short APDU", "max_busy_slots": 1}).open()
    r.connect(0)
    t.silent = 1
    with pytest.raises(ReaderError):
        r.transmit(0, h("00 B0 00 00 10"))
    with pytest.raises(ReaderError) as e:
        r.transmit(0, SELECT_2F00)
    assert e.value.name == "IFD_RESPONSE_TIMEOUT"
    assert r.stale >= 1


def test_card_removal_empties_the_queue_on_both_sides():
    t, r, _ = open_reader()
    t.silent = 1
    with pytest.raises(ReaderError):
        r.transmit(0, h("00 B0 00 00 10"))
    assert r.unanswered
    r._set_present(r.slots[0], False)           # the NotifySlotChange of a removal
    assert r.unanswered == []


def test_the_first_notify_slot_change_is_no_card_swap():
    # QEMU's usb-ccid tells of the insertion (50 03: present, changed) only at
    # the first interrupt poll, which may come after the card was powered
    t, r, _ = open_reader()
    t.interrupts.append(b"\x50\x03")
    before = r.slots[0].events
    assert r.poll_events(0) == []
    assert r.slots[0].events == before
    assert r.transmit(0, SELECT_2F00) == h("90 00")           # the session goes on
    # a later 50 03 means removed and inserted between two looks: a swap
    t.interrupts.append(b"\x50\x03")
    assert r.poll_events(0) == [0]
    assert r.slots[0].events == before + 2


def test_other_readers_take_a_first_changed_bit_as_a_swap():
    t = QemuLikeReader()
    t.vid, t.pid = 0x1234, 0x5678
    r = Reader(t, quirks={"exchange": "short APDU", "max_busy_slots": 1}).open()
    r.connect(0)
    before = r.slots[0].events
    t.interrupts.append(b"\x50\x03")
    assert r.poll_events(0) == [0] and r.slots[0].events == before + 2
