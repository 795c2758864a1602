"""Errors of the card OS, and the status words its commands end with.

``CardOSError`` is what the card OS raises to its *users* (a bad card
definition, an unreadable card image). ``CardStatus`` is internal: a command
handler raises it to end the command with a status word; ``process_apdu``
turns it into SW1 SW2 and never lets anything escape to the reader.
"""

from ...core.errors import CcidkitError


class CardOSError(CcidkitError):
    """A card definition or card image the card OS cannot use.

    ``name`` is one of: BAD_FILE (a file definition that makes no sense),
    FILE_EXISTS, BAD_PIN (a PIN definition), IMAGE_CORRUPT (a card image
    that is not ours or cannot be decoded), IMAGE_IO (the image cannot be
    written), UNKNOWN_CARD (make_card with a name the registry lacks, or a
    card whose module is not there), BAD_OPTION (an option the card does not
    take), NO_IMAGE (an image for a card that keeps nothing), BAD_ATR.
    """


class CardStatus(CcidkitError):
    """End the current command with status word ``sw`` (ISO/IEC 7816-4 §5.6).

    ``gsm`` is the TS 51.011 status word for the same condition when the
    command came in the GSM class (A0); None lets ``gsm_sw`` map it.
    """

    def __init__(self, sw, gsm=None, message=None):
        CcidkitError.__init__(self, message or "SW %04X" % sw, code=sw, name="SW_%04X" % sw)
        self.sw = sw
        self.gsm = gsm


# ISO/IEC 7816-4 status words the OS uses (Tables 5 and 6).
SW_OK = 0x9000
SW_EOF_BEFORE_NE = 0x6282
SW_WRONG_LENGTH = 0x6700
SW_CLA_FUNCTION = 0x6800
SW_CHANNEL_NOT_SUPPORTED = 0x6881
SW_SM_NOT_SUPPORTED = 0x6882
SW_LAST_OF_CHAIN_EXPECTED = 0x6883
SW_CHAINING_NOT_SUPPORTED = 0x6884
SW_INCOMPATIBLE_FILE = 0x6981
SW_SECURITY = 0x6982
SW_BLOCKED = 0x6983
SW_REF_DATA_NOT_USABLE = 0x6984
SW_CONDITIONS = 0x6985
SW_NO_CURRENT_EF = 0x6986
SW_WRONG_DATA = 0x6A80
SW_FUNCTION_NOT_SUPPORTED = 0x6A81
SW_FILE_NOT_FOUND = 0x6A82
SW_RECORD_NOT_FOUND = 0x6A83
SW_NOT_ENOUGH_MEMORY = 0x6A84
SW_WRONG_P1P2 = 0x6A86
SW_NC_INCONSISTENT_P1P2 = 0x6A87
SW_REF_NOT_FOUND = 0x6A88
SW_WRONG_P1P2_OFFSET = 0x6B00
SW_INS_NOT_SUPPORTED = 0x6D00
SW_CLA_NOT_SUPPORTED = 0x6E00
SW_NO_DIAGNOSIS = 0x6F00

# ETSI TS 51.011 §9.4 status words (class A0).
GSM_NO_EF = 0x9400
GSM_OUT_OF_RANGE = 0x9402
GSM_NOT_FOUND = 0x9404
GSM_INCONSISTENT = 0x9408
GSM_NO_CHV = 0x9802
GSM_ACCESS = 0x9804
GSM_CHV_STATUS = 0x9808
GSM_BLOCKED = 0x9840

_TO_GSM = {
    SW_WRONG_LENGTH: SW_WRONG_LENGTH,         # 67XX incorrect parameter P3
    SW_WRONG_P1P2: SW_WRONG_P1P2_OFFSET,      # 6BXX incorrect parameter P1 or P2
    SW_WRONG_P1P2_OFFSET: GSM_OUT_OF_RANGE,
    SW_NC_INCONSISTENT_P1P2: SW_WRONG_LENGTH,
    SW_FILE_NOT_FOUND: GSM_NOT_FOUND,
    SW_REF_NOT_FOUND: GSM_NOT_FOUND,
    SW_RECORD_NOT_FOUND: GSM_OUT_OF_RANGE,
    SW_NOT_ENOUGH_MEMORY: GSM_OUT_OF_RANGE,
    SW_NO_CURRENT_EF: GSM_NO_EF,
    SW_INCOMPATIBLE_FILE: GSM_INCONSISTENT,
    SW_SECURITY: GSM_ACCESS,
    SW_BLOCKED: GSM_BLOCKED,
    SW_CONDITIONS: GSM_CHV_STATUS,
    SW_REF_DATA_NOT_USABLE: GSM_CHV_STATUS,
    SW_WRONG_DATA: SW_WRONG_LENGTH,
    SW_FUNCTION_NOT_SUPPORTED: SW_INS_NOT_SUPPORTED,
}


def gsm_sw(sw):
    """The TS 51.011 §9.4 status word for an ISO/IEC 7816-4 one."""
    if (sw & 0xFFF0) == 0x63C0:
        # §9.4.5: unsuccessful CHV verification, at least one attempt left / none left
        return GSM_ACCESS if sw & 0x0F else GSM_BLOCKED
    if (sw >> 8) == 0x6C:
        return SW_WRONG_LENGTH
    return _TO_GSM.get(sw, sw)
