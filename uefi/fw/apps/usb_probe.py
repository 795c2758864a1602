"""usb-probe: find a CCID reader through EFI_USB_IO, power its card, send one APDU.

    usb-probe [--wait-removal] [APDU-HEX]   (default APDU: ECHO 80 EE 00 00 04 DE AD BE EF 00)

Finds the first interface of class 0Bh, prints its VID:PID and the fields of
its CCID class descriptor, waits (bounded) for RDR_to_PC_NotifySlotChange on
the interrupt endpoint, asks PC_to_RDR_GetSlotStatus, powers the card on
(PC_to_RDR_IccPowerOn), prints the ATR, sends the APDU in one
PC_to_RDR_XfrBlock, prints the answer and powers the card off. With
--wait-removal it then prints ``usb-probe: waiting for card removal`` and
waits (at most REMOVAL_WAIT_MS) for the NotifySlotChange that reports the
slot empty.

Lines start with ``usb-probe:``; the ones the host tests read:
    usb-probe: reader 08E6:4433 interface 0 handle H
    usb-probe: dwFeatures 0x000104FE dwProtocols 0x00000001 ...
    usb-probe: ATR 3B ...
    usb-probe: APDU -> 80 EE ...
    usb-probe: APDU <- DE AD BE EF 90 00
Status: 0 done, 2 bad arguments, 3 no CCID interface, 4 CCID error, 5 EFI error.
"""

import sys

from ccidkit.core import ccid
from ccidkit.core.ccid import CCIDError, CCIDMessage
from ccidkit.core.ccid_descriptor import find_ccid_interfaces
from ccidkit.core.hexutil import HexError, from_hex, to_hex
from ccidkit.uefi.fw import efi

STATUS_BAD_ARGS = 2
STATUS_NO_READER = 3
STATUS_CCID_ERROR = 4
STATUS_EFI_ERROR = 5

DEFAULT_APDU = "80 EE 00 00 04 DE AD BE EF 00"

CCID_CLASS = 0x0B
# Reads ask for this much; QEMU's usb-ccid never answers with more than
# 10 + 374 bytes and a longer answer would be read on in the loop below.
READ_LENGTH = 1024
BULK_TIMEOUT_MS = 5000
MAX_READS = 64           # bounds time-extension and multi-read answers
NOTIFY_WAIT_MS = 2000
REMOVAL_WAIT_MS = 60000


def _out(line):
    sys.stdout.write("usb-probe: " + line + "\n")


def _power_select(desc):
    """bPowerSelect for IccPowerOn (CCID §6.1.1): 0 (automatic) only when dwFeatures says the
    reader selects the voltage itself; otherwise the lowest class it supports, as ISO/IEC 7816-3
    §6.2.4 activates (bVoltageSupport bits: 1 = 5 V, 2 = 3 V, 4 = 1.8 V)."""
    if desc.auto_voltage:
        return 0
    for bit, select in ((0x04, 3), (0x02, 2), (0x01, 1)):   # 1.8 V, 3 V, 5 V
        if desc.bVoltageSupport & bit:
            return select
    return 0


def _endpoints(dev):
    bulk_in = bulk_out = intr = None
    intr_mps = 8
    intr_ivl = 10
    for address, attributes, mps, interval in dev.endpoints:
        kind = attributes & 0x03           # USB 2.0 §9.6.6 bmAttributes: 2 bulk, 3 interrupt
        if kind == 2 and address & 0x80:
            bulk_in = address
        elif kind == 2:
            bulk_out = address
        elif kind == 3 and address & 0x80:
            intr = address
            intr_mps = mps
            intr_ivl = interval or 10
    return bulk_in, bulk_out, intr, intr_mps, intr_ivl


class Reader:
    """One CCID slot driven synchronously over bulk OUT/IN (bSeq kept here)."""

    def __init__(self, dev, bulk_in, bulk_out, max_packet_size):
        self.dev = dev
        self.bulk_in = bulk_in
        self.bulk_out = bulk_out
        self.seq = 0
        self.reassembler = ccid.BulkInReassembler(max_packet_size)

    def transact(self, msg):
        msg.bSlot = 0
        msg.bSeq = self.seq
        self.seq = (self.seq + 1) & 0xFF
        efi.usb_bulk_out(self.dev.handle, self.bulk_out, msg.to_bytes(), BULK_TIMEOUT_MS)
        for _ in range(MAX_READS):
            data = efi.usb_bulk_in(self.dev.handle, self.bulk_in, READ_LENGTH, BULK_TIMEOUT_MS)
            for answer in self.reassembler.feed(data):
                if answer.time_extension:
                    continue                # CCID 1.1 §6.2.6: the reader asks for more time
                return ccid.check_response(answer, 0, msg.bSeq)
        raise CCIDError("no answer to %s after %d reads" % (msg.name, MAX_READS), None,
                        "NO_ANSWER")


def _wait_slot_change(dev, intr, mps, interval, slots, wait_ms=NOTIFY_WAIT_MS, present=None):
    """The first NotifySlotChange within ``wait_ms`` (with ``present`` given:
    the first one that reports slot 0 so), or None."""
    efi.usb_interrupt_start(dev.handle, intr, min(mps, 64), min(max(interval, 1), 255))
    try:
        start = efi.ticks_us()
        while efi.ticks_us() - start < wait_ms * 1000:
            for packet in efi.usb_interrupt_poll(dev.handle, intr):
                msg = ccid.decode_interrupt(packet, slots)
                if isinstance(msg, ccid.NotifySlotChange) and (
                        present is None or msg.present(0) == present):
                    return packet, msg
            efi.stall(10000)
    finally:
        efi.usb_interrupt_stop(dev.handle, intr)
    return None


def probe(apdu, wait_removal=False):
    dev = None
    for d in efi.usb_devices():
        if d.interface_class == CCID_CLASS:
            dev = d
            break
    if dev is None:
        _out("no USB interface of class 0Bh (CCID)")
        return STATUS_NO_READER
    _out("reader %04X:%04X interface %d handle %d" % (dev.vid, dev.pid, dev.interface_number,
                                                       dev.handle))
    desc = None
    for candidate in find_ccid_interfaces(dev.config_descriptor):
        if candidate.bInterfaceNumber == dev.interface_number:
            desc = candidate
            break
    if desc is None:
        _out("interface %d has no CCID class descriptor" % dev.interface_number)
        return STATUS_NO_READER
    _out("bcdCCID %s bMaxSlotIndex %d bVoltageSupport 0x%02X" % (
        desc.ccid_version, desc.bMaxSlotIndex, desc.bVoltageSupport))
    _out("dwFeatures 0x%08X dwProtocols 0x%08X dwMaxIFSD %d dwMaxCCIDMessageLength %d" % (
        desc.dwFeatures, desc.dwProtocols, desc.dwMaxIFSD, desc.dwMaxCCIDMessageLength))
    _out("exchange level %s, bPINSupport 0x%02X, bMaxCCIDBusySlots %d" % (
        desc.exchange_level, desc.bPINSupport, desc.bMaxCCIDBusySlots))
    for w in desc.warnings:
        _out("descriptor warning: " + w)

    bulk_in, bulk_out, intr, intr_mps, intr_ivl = _endpoints(dev)
    if bulk_in is None or bulk_out is None:
        _out("bulk endpoints missing")
        return STATUS_NO_READER
    _out("endpoints: bulk-in 0x%02X bulk-out 0x%02X interrupt %s" % (
        bulk_in, bulk_out, "0x%02X" % intr if intr is not None else "none"))

    if intr is not None:
        got = _wait_slot_change(dev, intr, intr_mps, intr_ivl, desc.slots)
        if got is None:
            _out("no NotifySlotChange within %d ms" % NOTIFY_WAIT_MS)
        else:
            _out("NotifySlotChange %s: slot 0 %s" % (
                to_hex(got[0]), "present" if got[1].present(0) else "empty"))

    bulk_mps = 64
    for address, attributes, mps, interval in dev.endpoints:
        if address == bulk_in:
            bulk_mps = mps
    reader = Reader(dev, bulk_in, bulk_out, bulk_mps)
    status = reader.transact(CCIDMessage(ccid.PC_to_RDR_GetSlotStatus))
    _out("slot status: %s" % ccid.ICC_STATUS_NAMES[status.icc_status])

    answer = reader.transact(CCIDMessage(ccid.PC_to_RDR_IccPowerOn,
                                         bPowerSelect=_power_select(desc)))
    _out("ATR %s" % to_hex(answer.abData))
    _out("APDU -> %s" % to_hex(apdu))
    answer = reader.transact(CCIDMessage(ccid.PC_to_RDR_XfrBlock, abData=apdu))
    _out("APDU <- %s" % to_hex(answer.abData))
    status = reader.transact(CCIDMessage(ccid.PC_to_RDR_IccPowerOff))
    _out("powered off: %s" % ccid.ICC_STATUS_NAMES[status.icc_status])
    if wait_removal:
        if intr is None:
            _out("no interrupt endpoint to watch")
            return STATUS_NO_READER
        _out("waiting for card removal")
        got = _wait_slot_change(dev, intr, intr_mps, intr_ivl, desc.slots, REMOVAL_WAIT_MS,
                                False)
        if got is None:
            _out("no removal within %d ms" % REMOVAL_WAIT_MS)
            return STATUS_CCID_ERROR
        _out("NotifySlotChange %s: slot 0 empty" % to_hex(got[0]))
        status = reader.transact(CCIDMessage(ccid.PC_to_RDR_GetSlotStatus))
        _out("slot status: %s" % ccid.ICC_STATUS_NAMES[status.icc_status])
    return 0


def main(argv):
    wait_removal = "--wait-removal" in argv
    argv = [a for a in argv if a != "--wait-removal"]
    if len(argv) > 1:
        _out("usage: usb-probe [--wait-removal] [APDU-HEX]")
        return STATUS_BAD_ARGS
    try:
        apdu = from_hex(argv[0] if argv else DEFAULT_APDU)
    except HexError as e:
        _out("bad APDU: %s" % e)
        return STATUS_BAD_ARGS
    if len(apdu) < 4:
        _out("an APDU has at least 4 bytes")
        return STATUS_BAD_ARGS
    try:
        return probe(apdu, wait_removal)
    except CCIDError as e:
        _out("CCID error: %s" % e)
        return STATUS_CCID_ERROR
    except efi.EfiError as e:
        _out("EFI error: %s" % e)
        return STATUS_EFI_ERROR
