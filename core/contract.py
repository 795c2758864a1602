"""The written error contract of every layer, as data.

One row per (public entry point, documented condition):

    (layer, entry, condition, exception, name, state, next_step)

``exception`` is the class the entry point raises (or "-" when the
condition is answered with a value, e.g. a status word or an
EFI_STATUS); ``name`` the error's ``name`` attribute (an ISO, CCID, IFD,
SCARD or protocol name users recognise) or the value returned; ``state``
what the object is left in; ``next_step`` what a caller does next.

The only outcomes a decoder or state machine may have are a value or one
of the rows of its entry point: tests/host/test_contract.py provokes
every row, the fuzz campaigns (scripts/fuzz.py) check arbitrary inputs
against the table, and ``ccidkit errors-doc`` renders docs/errors.md
from it. Portable (docs/subset.md): plain tuples, no dict order relied on.
"""

LAYERS = (
    ("atr", "ATR and PPS (core/atr.py, core/pps.py)"),
    ("apdu", "APDU (core/apdu.py)"),
    ("ccid", "CCID messages and descriptors (core/ccid.py, core/ccid_descriptor.py)"),
    ("t1", "T=1 block protocol (core/t1.py)"),
    ("t0", "T=0 procedure bytes and TPDUs (core/t0.py)"),
    ("transport", "Transport (core/transport.py)"),
    ("driver", "CCID driver (core/driver.py)"),
    ("pcsc", "PC/SC API (core/pcsc.py)"),
    ("cards", "Virtual cards (emu/card, emu/cardos, emu/cards)"),
    ("bridges", "Bridges (emu/vicc.py, emu/vscard.py, emu/usbredir.py)"),
    ("emulation", "Emulated readers (emu/reader.py)"),
)

# Recurring state / next-step texts.
_NONE = "no state (pure function)"
_DROP = "nothing kept"
_FIX_INPUT = "fix the input; nothing to retry"
_FAILED_STREAM = "decoder failed for good: every later feed() raises the same error"
_CLOSE_STREAM = "close the connection (a length-prefixed stream cannot resynchronise)"

ROWS = (
    # -- ATR / PPS ------------------------------------------------------------
    ("atr", "parse_atr(data)", "text that is not hex", "ATRError", "ATR_NOT_HEX",
     _NONE, _FIX_INPUT),
    ("atr", "parse_atr(data)", "no bytes", "ATRError", "ATR_EMPTY", _NONE,
     "the card did not answer: power it off, retry activation at most once"),
    ("atr", "parse_atr(data)", "TS is neither 3B nor 3F (after inverse decoding)",
     "ATRError", "ATR_BAD_TS", _NONE,
     "deactivate the card (ISO/IEC 7816-3 §8.1: reject the card)"),
    ("atr", "parse_atr(data)", "truncated, TCK wrong or over 33 bytes",
     "-", "ATR with .warnings", "an ATR whose warnings list says what is wrong",
     "use it leniently (as pcsc-lite) or reject it by checking .warnings"),
    ("atr", "build_pps_request(protocol, fi, di, n)", "protocol/Fi/Di out of range",
     "PPSError", "PPS_BAD_REQUEST", _NONE, "choose other parameters"),
    ("atr", "parse_pps_response(request, response)", "request is not a PPS request",
     "PPSError", "PPS_BAD_REQUEST", _NONE, "programming error: build the request first"),
    ("atr", "parse_pps_response(request, response)", "no answer bytes",
     "PPSError", "PPS_NO_RESPONSE", _NONE,
     "deactivate and reactivate the card, then keep the default Fd/Dd (§9.3)"),
    ("atr", "parse_pps_response(request, response)", "answer cut short",
     "PPSError", "PPS_TRUNCATED", _NONE, "as PPS_NO_RESPONSE"),
    ("atr", "parse_pps_response(request, response)", "PPSS is not FF",
     "PPSError", "PPS_BAD_PPSS", _NONE, "as PPS_NO_RESPONSE"),
    ("atr", "parse_pps_response(request, response)", "PCK check fails",
     "PPSError", "PPS_BAD_PCK", _NONE, "as PPS_NO_RESPONSE"),
    ("atr", "parse_pps_response(request, response)", "bytes after PCK",
     "PPSError", "PPS_EXTRA_BYTES", _NONE, "as PPS_NO_RESPONSE"),
    ("atr", "parse_pps_response(request, response)", "protocol differs from the request",
     "PPSError", "PPS_PROTOCOL_MISMATCH", _NONE, "as PPS_NO_RESPONSE"),
    ("atr", "parse_pps_response(request, response)", "PPS1/PPS2/PPS3 the request did not send",
     "PPSError", "PPS_UNREQUESTED", _NONE, "as PPS_NO_RESPONSE"),
    # -- APDU -----------------------------------------------------------------
    ("apdu", "CommandAPDU.parse(raw)", "fewer than 4 bytes", "APDUError", "APDU_TOO_SHORT",
     _NONE, _FIX_INPUT),
    ("apdu", "CommandAPDU.parse(raw)", "Lc/Le encoding does not match the length",
     "APDUError", "BAD_LENGTH", _NONE, _FIX_INPUT),
    ("apdu", "CommandAPDU(cla, ins, p1, p2, data, ne)", "a header byte outside 0..255",
     "APDUError", "BAD_FIELD", _NONE, _FIX_INPUT),
    ("apdu", "CommandAPDU(cla, ins, p1, p2, data, ne)", "more than 65535 data bytes",
     "APDUError", "DATA_TOO_LONG", _NONE, "split with chain()"),
    ("apdu", "CommandAPDU(cla, ins, p1, p2, data, ne)", "Ne outside 0..65536",
     "APDUError", "BAD_NE", _NONE, _FIX_INPUT),
    ("apdu", "ResponseAPDU.parse(raw)", "fewer than 2 bytes", "APDUError",
     "RESPONSE_TOO_SHORT", _NONE, "treat as a transmission error"),
    ("apdu", "transmit_with_auto_response(cmd, transmit, max_rounds)",
     "61xx/6Cxx answers beyond max_rounds", "APDUError", "TOO_MANY_ROUNDS",
     "the card may hold unread data", "reset the card or SELECT again"),
    ("apdu", "chain(cmd, max_lc)", "max_lc outside 1..255", "APDUError", "BAD_CHAIN",
     _NONE, _FIX_INPUT),
    # -- CCID -----------------------------------------------------------------
    ("ccid", "decode_bulk_in(buf) / decode_bulk_out(buf) / decode_message(buf)",
     "fewer than 10 bytes or fewer than dwLength announces", "CCIDError", "TRUNCATED",
     _DROP, "read more (BulkInReassembler) or drop the message"),
    ("ccid", "decode_bulk_in(buf) / decode_bulk_out(buf) / decode_message(buf)",
     "unknown bMessageType", "CCIDError", "UNKNOWN_MESSAGE", _DROP,
     "answer CMD_NOT_SUPPORTED (reader side) or drop (host side)"),
    ("ccid", "decode_bulk_in(buf) / decode_bulk_out(buf)",
     "a message of the other direction", "CCIDError", "UNEXPECTED_MESSAGE", _DROP,
     "drop the message"),
    ("ccid", "decode_bulk_in(buf) / decode_bulk_out(buf) / decode_message(buf)",
     "dwLength above max_length (e.g. a peer announcing 4 GB)", "CCIDError", "TOO_LONG",
     "nothing allocated for the announced length", "drop the message; resynchronise the pipe"),
    ("ccid", "decode_bulk_in(buf) / decode_bulk_out(buf)", "bytes after dwLength",
     "CCIDError", "TRAILING_DATA", _DROP, "drop the message"),
    ("ccid", "decode_bulk_in(buf) / decode_bulk_out(buf)",
     "dwLength differs from the message's fixed length", "CCIDError", "BAD_LENGTH", _DROP,
     "drop the message"),
    ("ccid", "BulkInReassembler.feed(data)", "header announces more than max_message_length",
     "CCIDError", "TOO_LONG", "reassembler reset", "drop the message; resynchronise the pipe"),
    ("ccid", "check_response(msg, bSlot, bSeq)", "command failed (bmCommandStatus 1)",
     "CCIDError", "bError name (ICC_MUTE, HW_ERROR, CMD_SLOT_BUSY...)", "message kept in .response",
     "act on the bError (§6.2.6)"),
    ("ccid", "decode_interrupt(buf)", "empty, not 50/51, or a bad length",
     "CCIDError", "TRUNCATED / UNKNOWN_MESSAGE / BAD_LENGTH / TOO_LONG", _DROP, "drop the interrupt; poll GetSlotStatus"),
    ("ccid", "parse_ccid_descriptor(data)", "shorter than 54 bytes or wrong type",
     "CCIDError", "TRUNCATED / NOT_CCID", _NONE, "the interface is not usable as CCID"),
    ("ccid", "find_ccid_interfaces(config)", "malformed configuration descriptor",
     "CCIDError", "MALFORMED / TRUNCATED", _NONE, "skip the device"),
    # -- T=1 ------------------------------------------------------------------
    ("t1", "decode_block(data, edc) / check_block(data, edc)",
     "shorter than prologue + epilogue", "T1Error", "T1_BAD_LEN", _NONE, "send R-block (other error)"),
    ("t1", "decode_block(data, edc) / check_block(data, edc)", "EDC (LRC/CRC) wrong",
     "T1Error", "T1_EDC_ERROR", _NONE, "send R-block (EDC error), ISO/IEC 7816-3 §11.6.3.2 rule 7.1"),
    ("t1", "decode_block(data, edc) / check_block(data, edc)", "LEN FF or LEN not the block size",
     "T1Error", "T1_BAD_LEN", _NONE, "send R-block (other error)"),
    ("t1", "decode_block(data, edc) / check_block(data, edc)", "NAD FF", "T1Error",
     "T1_BAD_NAD", _NONE, "send R-block (other error)"),
    ("t1", "decode_block(data, edc) / check_block(data, edc)", "reserved PCB bits",
     "T1Error", "T1_BAD_PCB", _NONE, "send R-block (other error)"),
    ("t1", "i_block(ns, more, inf) / Block.encode()", "INF over 254 bytes", "T1Error",
     "T1_TOO_LONG", _NONE, "chain the data"),
    ("t1", "T1Reader.receive(data) / T1Reader.timeout()",
     "call with no block outstanding", "T1Error", "T1_USAGE", "unchanged",
     "programming error: start() first"),
    ("t1", "T1Reader.receive(data) / T1Reader.timeout()",
     "invalid or missing blocks, retries exhausted and RESYNCH failed", "T1Error",
     "T1_RESYNCH_FAILED", "engine failed; the card state is unknown",
     "deactivate the card (§11.6.3.2 rule 6.4)"),
    ("t1", "T1Reader.receive(data) / T1Reader.timeout()",
     "the card never answered the exchange", "T1Error", "T1_CARD_MUTE",
     "engine failed", "report ICC_MUTE; deactivate or reset the card"),
    ("t1", "T1Reader.receive(data) / T1Reader.timeout()",
     "RESYNCH succeeded after errors: the APDU may not have run", "T1Error", "T1_RESYNCHED",
     "engine reset (N(S)=N(R)=0), usable", "the APDU outcome is unknown: do not resend blindly"),
    ("t1", "T1Reader.receive(data)", "more S(WTX) requests than the limit", "T1Error",
     "T1_WTX_LIMIT", "engine failed", "reset the card"),
    ("t1", "T1Reader.receive(data)", "card sent S(ABORT)", "T1Error", "T1_ABORTED",
     "engine idle", "the chain was abandoned: resend the APDU if the application allows"),
    ("t1", "T1Reader.start(apdu)", "empty APDU or an exchange in progress", "T1Error",
     "T1_USAGE", "unchanged", "programming error"),
    # -- T=0 ------------------------------------------------------------------
    ("t0", "check_header(header)", "not 5 bytes, CLA FF, INS 6x/9x", "T0Error", "BAD_TPDU",
     _NONE, _FIX_INPUT),
    ("t0", "ProcedureEngine.feed(data)", "procedure byte neither NULL, ACK, ~ACK nor SW1",
     "T0Error", "INVALID_PROCEDURE_BYTE", "engine done, no result", "deactivate the card"),
    ("t0", "ProcedureEngine.feed(data)", "ACK with nothing left to move / bytes after SW2",
     "T0Error", "PROTOCOL / UNEXPECTED_BYTES", "engine done, no result", "deactivate the card"),
    ("t0", "ProcedureEngine.feed(data)", "more NULL bytes than max_null", "T0Error",
     "TOO_MANY_NULL", "engine done, no result", "report a mute card"),
    ("t0", "T0Reader.transceive(apdu, link)", "the link returns None (no answer in WT)",
     "T0Error", "TIMEOUT", "engine idle", "report ICC_MUTE"),
    ("t0", "T0Reader.transceive(apdu, link)", "malformed command APDU", "T0Error",
     "BAD_APDU", "engine idle", _FIX_INPUT),
    ("t0", "T0Reader.transceive(apdu, link)", "61xx/6Cxx rounds beyond the limit", "T0Error",
     "TOO_MANY_ROUNDS", "engine idle", "reset the card"),
    # -- transport ------------------------------------------------------------
    ("transport", "Transport.bulk_in / bulk_out / interrupt_in / control",
     "nothing within timeout_ms", "TransportTimeout", "TIMEOUT", "pipe usable",
     "retry or abort (CCID §5.3.1 ABORT)"),
    ("transport", "Transport.bulk_in / bulk_out / interrupt_in / control",
     "endpoint halted", "TransportStall", "STALL", "endpoint halted",
     "CLEAR_FEATURE(ENDPOINT_HALT), then retry once"),
    ("transport", "Transport.bulk_in / bulk_out / interrupt_in / control",
     "device gone", "ReaderRemoved", "NO_DEVICE", "transport dead", "close it; wait for a new device"),
    # -- driver ---------------------------------------------------------------
    ("driver", "Reader.transmit(slot, apdu) / transmit_many / power_on / connect",
     "no card in the slot, or card removed during the exchange", "ReaderError",
     "IFD_ICC_NOT_PRESENT", "slot marked absent and unpowered", "wait for a card event"),
    ("driver", "Reader.transmit(slot, apdu) / transmit_many / power_on / connect",
     "card mute, CCID answer missing, or time extensions beyond the limit",
     "ReaderError", "IFD_RESPONSE_TIMEOUT", "slot kept; card state unknown",
     "reset the card (power_on) before the next APDU"),
    ("driver", "Reader.transmit(slot, apdu) / transmit_many / power_on / connect",
     "reader unplugged", "ReaderError", "IFD_NO_SUCH_DEVICE",
     "reader closed: every later call raises the same", "drop the reader; rescan"),
    ("driver", "Reader.transmit(slot, apdu) / transmit_many / power_on / connect",
     "protocol error the engines could not recover (T=1 resynch failed, bad CCID answer)",
     "ReaderError", "IFD_COMMUNICATION_ERROR", "slot kept; card state unknown",
     "reset the card; the APDU may or may not have run"),
    ("driver", "Reader.transmit(slot, apdu) / transmit_many / power_on / connect",
     "bulk-IN stalled and CLEAR_FEATURE(ENDPOINT_HALT) failed, or stalled again after it "
     "(one clear and one retry per answer; a single stall is recovered)",
     "ReaderError", "IFD_COMMUNICATION_ERROR", "slot kept; card state unknown",
     "reset the card; the APDU may or may not have run"),
    ("driver", "Reader.transmit(slot, apdu)", "slot not powered", "ReaderError",
     "CARD_UNPOWERED", "unchanged", "power_on / connect first"),
    ("driver", "Reader.transmit(slot, apdu)", "request_abort() during the exchange",
     "ReaderError", "CANCELLED", "slot usable", "resend if the application wants"),
    ("driver", "Reader.set_protocol(slot, preferred)", "card and reader share no protocol",
     "ReaderError", "IFD_PROTOCOL_NOT_SUPPORTED", "card powered, protocol unset",
     "ask for another protocol"),
    ("driver", "Reader.set_protocol(slot, preferred)", "PPS refused at every speed",
     "ReaderError", "IFD_ERROR_PTS_FAILURE", "card reset at default speed", "use the default speed"),
    ("driver", "Reader.power_on(slot)", "no voltage class works", "ReaderError",
     "IFD_ERROR_POWER_ACTION", "slot unpowered", "report the card as unusable"),
    ("driver", "Reader.escape / secure / control", "reader does not offer it", "ReaderError",
     "IFD_NOT_SUPPORTED", "unchanged", "fall back (software PIN entry, ...)"),
    # -- PC/SC ----------------------------------------------------------------
    ("pcsc", "SCardConnect / SCardTransmit / SCardStatus / ...",
     "handle or context not valid", "PCSCError", "SCARD_E_INVALID_HANDLE", "unchanged",
     "establish a context / connect again"),
    ("pcsc", "SCardConnect(hContext, szReader, ...)", "reader name unknown", "PCSCError",
     "SCARD_E_UNKNOWN_READER", "unchanged", "SCardListReaders"),
    ("pcsc", "SCardConnect(hContext, szReader, ...)", "no card in the reader", "PCSCError",
     "SCARD_E_NO_SMARTCARD", "unchanged", "SCardGetStatusChange until SCARD_STATE_PRESENT"),
    ("pcsc", "SCardConnect / SCardReconnect", "share mode conflicts with another handle",
     "PCSCError", "SCARD_E_SHARING_VIOLATION", "unchanged", "retry later"),
    ("pcsc", "SCardConnect / SCardTransmit", "protocol not available / PCI mismatch",
     "PCSCError", "SCARD_E_PROTO_MISMATCH", "unchanged", "reconnect with another protocol"),
    ("pcsc", "SCardTransmit(hCard, pci, apdu)", "card removed since connect", "PCSCError",
     "SCARD_W_REMOVED_CARD", "handle stale", "SCardDisconnect, wait for a card"),
    ("pcsc", "SCardTransmit(hCard, pci, apdu)", "card reset by another handle", "PCSCError",
     "SCARD_W_RESET_CARD", "handle stale until reconnect", "SCardReconnect"),
    ("pcsc", "SCardTransmit(hCard, pci, apdu)", "reader gone", "PCSCError",
     "SCARD_E_READER_UNAVAILABLE", "handle stale", "SCardDisconnect, SCardListReaders"),
    ("pcsc", "SCardTransmit(hCard, pci, apdu)", "driver error (IFD_*)", "PCSCError",
     "SCARD_E_NOT_TRANSACTED / SCARD_E_TIMEOUT (from_reader_error)", "handle kept",
     "SCardReconnect(SCARD_RESET_CARD)"),
    ("pcsc", "SCardGetStatusChange(hContext, dwTimeout, states)", "nothing changed in dwTimeout",
     "PCSCError", "SCARD_E_TIMEOUT", "unchanged", "call again"),
    ("pcsc", "SCardGetStatusChange(hContext, dwTimeout, states)", "SCardCancel called",
     "PCSCError", "SCARD_E_CANCELLED", "unchanged", "stop waiting"),
    # -- cards ----------------------------------------------------------------
    ("cards", "card.process_apdu(apdu)", "any bytes, however malformed", "-",
     "a response ending in SW1 SW2 (6700, 6D00, 6E00...)", "card state per ISO/IEC 7816-4",
     "read the status word"),
    ("cards", "T1Card.receive_block(data)", "bad EDC / malformed block", "-",
     "R-block (EDC or other error), or the last block again (§11.6.3.2 rule 7)",
     "card engine unchanged", "the reader retransmits"),
    ("cards", "T0Card.process_tpdu(tpdu)", "any TPDU", "-",
     "procedure bytes and SW, or None (card silent)", "card engine ready for the next TPDU",
     "None reads as a mute card"),
    ("cards", "make_card(name, image, **options)", "unknown card or option, bad image",
     "CardOSError", "UNKNOWN_CARD / BAD_OPTION / NO_IMAGE / IMAGE_CORRUPT / IMAGE_IO", "no card made",
     _FIX_INPUT),
    # -- bridges --------------------------------------------------------------
    ("bridges", "vicc.Decoder.feed(data) / decode_frame(data)",
     "length above max_payload (e.g. FFFF)", "ViccError", "VICC_TOO_LONG",
     _FAILED_STREAM, _CLOSE_STREAM),
    ("bridges", "vicc.Decoder.feed(data) / decode_frame(data)", "zero-length frame",
     "ViccError", "VICC_EMPTY", _FAILED_STREAM, _CLOSE_STREAM),
    ("bridges", "vicc.Decoder.feed(data) / decode_frame(data)", "1-byte frame not a control code",
     "ViccError", "VICC_BAD_CONTROL", _FAILED_STREAM, _CLOSE_STREAM),
    ("bridges", "vicc.decode_frame(data)", "not exactly one frame", "ViccError",
     "VICC_TRUNCATED", _DROP, _FIX_INPUT),
    ("bridges", "vscard.Decoder.feed(data) / decode_message(data)",
     "length above max_payload (e.g. 4 GB)", "VSCardError", "VSC_TOO_LONG",
     _FAILED_STREAM, _CLOSE_STREAM),
    ("bridges", "vscard.Decoder.feed(data) / decode_message(data)", "unknown message type",
     "VSCardError", "VSC_UNKNOWN_TYPE", _FAILED_STREAM, _CLOSE_STREAM),
    ("bridges", "vscard.decode_message(data)", "not exactly one message", "VSCardError",
     "VSC_TRUNCATED", _DROP, _FIX_INPUT),
    ("bridges", "vscard.decode_init(payload) / decode_error(payload)", "malformed payload",
     "VSCardError", "VSC_BAD_INIT / VSC_BAD_ERROR", _NONE, _CLOSE_STREAM),
    ("bridges", "usbredir.Codec.feed(data)", "length above max_length (e.g. 4 GB)",
     "UsbredirError", "USBREDIR_TOO_LONG", _FAILED_STREAM, _CLOSE_STREAM),
    ("bridges", "usbredir.Codec.feed(data)", "unknown packet type", "UsbredirError",
     "USBREDIR_UNKNOWN_TYPE", _FAILED_STREAM, _CLOSE_STREAM),
    ("bridges", "usbredir.Codec.feed(data)", "a packet before the hello", "UsbredirError",
     "USBREDIR_NO_HELLO", _FAILED_STREAM, _CLOSE_STREAM),
    ("bridges", "usbredir.Codec.feed(data)", "hello or body of the wrong size", "UsbredirError",
     "USBREDIR_BAD_HELLO / USBREDIR_BAD_LENGTH", _FAILED_STREAM, _CLOSE_STREAM),
    ("bridges", "usbredir.Codec.feed(data)", "a packet only this side sends", "UsbredirError",
     "USBREDIR_WRONG_SIDE", _FAILED_STREAM, _CLOSE_STREAM),
    # -- emulated readers -----------------------------------------------------
    ("emulation", "EmulatedReader.bulk_out / bulk_in / interrupt_in / control",
     "faults.unplug_on_command or unplug()", "ReaderGone", "LIBUSB_ERROR_NO_DEVICE",
     "reader gone until plug()", "the host transport maps it to ReaderRemoved"),
    ("emulation", "EmulatedReader.bulk_in / interrupt_in", "nothing to read before timeout",
     "ReaderTimeout", "LIBUSB_ERROR_TIMEOUT", "virtual clock advanced by the timeout", "read again"),
    ("emulation", "EmulatedReader.bulk_out / bulk_in / interrupt_in / control",
     "faults.stall(endpoint)", "ReaderStall", "LIBUSB_ERROR_PIPE", "endpoint halted",
     "CLEAR_FEATURE(ENDPOINT_HALT)"),
    ("emulation", "EmulatedReader.bulk_out(data)", "malformed CCID message", "-",
     "the command's RDR_to_PC answer, failed, bError = offset of the bad field (§6.2.6)", "slot unchanged",
     "read the answer"),
)

FIELDS = ("layer", "entry", "condition", "exception", "name", "state", "next_step")


def rows_for(layer):
    """The rows of one layer, in table order."""
    return [r for r in ROWS if r[0] == layer]


def names_for(entry_prefix):
    """Every documented ``name`` of the entry points starting with ``entry_prefix``
    (a row's "A / B" names are split)."""
    out = []
    for r in ROWS:
        if r[1].startswith(entry_prefix):
            for n in r[4].split(" / "):
                if n not in out:
                    out.append(n)
    return out


def exceptions_for(entry_prefix):
    """The exception class names of the entry points starting with ``entry_prefix``."""
    out = []
    for r in ROWS:
        if r[1].startswith(entry_prefix) and r[3] != "-" and r[3] not in out:
            out.append(r[3])
    return out
