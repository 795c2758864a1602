"""The card OS of the virtual cards: an ISO/IEC 7816-4 file system, command
processing, PINs with retry counters, logical channels, persistence in a
card image and the ATR built from declared capabilities.

CPython only (the cards run beside the host tools, not in firmware).
"""

from .errors import CardOSError, CardStatus
from .fs import ALW, NEV, DF, EF, TransparentEF, RecordEF, tlv
from .pin import PIN
from .image import CardImage
from .atr import build_card_atr, historical_bytes
from .engine import CardOS, Channel

__all__ = ["CardOSError", "CardStatus", "ALW", "NEV", "DF", "EF", "TransparentEF", "RecordEF",
           "tlv", "PIN", "CardImage", "build_card_atr", "historical_bytes", "CardOS", "Channel"]
