"""Reader quirks: ONE table keyed by "VVVV:PPPP", read by the driver and nowhere else.

Each entry is a dict of overrides; the driver looks up every knob through
``quirks_for(vid, pid)`` and never tests a VID or PID itself. Knobs:

    name              who the reader is (for logs and reports)
    max_baud          cap on the card data rate the speed policy may choose (bit/s)
    data_rates        the rates (bit/s) the driver allows, instead of GET_DATA_RATES
    exchange          force the exchange level: "TPDU", "short APDU", "extended APDU"
    max_busy_slots    replaces bMaxCCIDBusySlots
    max_message_length  replaces dwMaxCCIDMessageLength (bytes, header included)
    max_response      longest answer the reader delivers intact (bytes of abData)
    pin_support       replaces bPINSupport (0 = none)
    no_escape         PC_to_RDR_Escape is not implemented
    no_abort          neither the ABORT request nor PC_to_RDR_Abort is implemented
    answers_in_order  XfrBlock answers come from a queue and carry the bSeq at its
                      head, so after an unanswered XfrBlock each answer carries the
                      bSeq of the one before; the driver pairs them by order
    stale_first_notify  the first NotifySlotChange tells of an insertion from before
                      the host looked (its "changed" bit is no card swap)
    why               the evidence, one line
"""

QUIRKS = {
    # Alcor Micro AU9560: PPS to fast rates fails with some cards (an Acos-ID
    # card among them) although the descriptor lists them; ~200 kbit/s is safe.
    "058F:9540": {
        "name": "Alcor Micro AU9560",
        "max_baud": 200000,
        "why": "PPS / SetParameters above ~200 kbit/s fail with some cards",
    },
    # QEMU's usb-ccid (7.2): announces TPDU level but hands XfrBlock data to
    # the card as a whole APDU; T=0 only (its dwProtocols says so truly); one
    # busy slot; silently drops answers over 374 bytes (short APDU level keeps
    # every answer at 258 bytes or less, so none is dropped); bPINSupport and
    # dwMaxCCIDMessageLength are not true; its answer queue keeps the bSeq of
    # an XfrBlock the card never answered until the card is removed; the
    # insertion of the card it starts with comes at the first interrupt poll.
    "08E6:4433": {
        "name": "QEMU usb-ccid",
        "exchange": "short APDU",
        "max_busy_slots": 1,
        "max_message_length": 271,
        "max_response": 374,
        "pin_support": 0,
        "no_escape": True,
        "no_abort": True,
        "answers_in_order": True,
        "stale_first_notify": True,
        "why": "emulation: APDU passthrough, Secure/Escape/Abort answered with bStatus 40, "
               "answers paired with commands by a queue, not by bSeq, "
               "insertion notified at the first interrupt poll",
    },
}


def quirk_key(vid, pid):
    return "%04X:%04X" % (vid & 0xFFFF, pid & 0xFFFF)


def quirks_for(vid, pid, extra=None):
    """The quirks of a reader (a new dict), with ``extra`` overrides applied on top."""
    out = {}
    entry = QUIRKS.get(quirk_key(vid, pid))
    if entry:
        for k in entry:
            out[k] = entry[k]
    if extra:
        for k in extra:
            out[k] = extra[k]
    return out
