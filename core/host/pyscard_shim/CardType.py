"""``smartcard.CardType`` of the shim: which cards a CardRequest accepts."""

from .Exceptions import InvalidATRMaskLengthException


class CardType:
    def matches(self, atr, reader=None):
        return False


class AnyCardType(CardType):
    def matches(self, atr, reader=None):
        return True


class ATRCardType(CardType):
    """Cards whose ATR, ANDed with ``mask``, equals ``atr`` ANDed with it."""

    def __init__(self, atr, mask=None):
        self.atr = list(atr)
        self.mask = None if mask is None else list(mask)
        if self.mask is not None:
            if len(self.mask) != len(self.atr):
                raise InvalidATRMaskLengthException(self.mask)
            self.maskedatr = [a & m for a, m in zip(self.atr, self.mask)]
        else:
            self.maskedatr = self.atr

    def matches(self, atr, reader=None):
        atr = list(atr)
        if len(atr) != len(self.atr):
            return False
        if self.mask is not None:
            atr = [a & m for a, m in zip(atr, self.mask)]
        return atr == self.maskedatr
