"""``smartcard.Card`` of the shim: a card seen in a reader (reader and ATR)."""

from .util import toHexString


class Card:
    def __init__(self, reader, atr):
        self.reader = reader
        self.atr = atr

    def __repr__(self):
        return toHexString(list(self.atr)) + " / " + str(self.reader)

    def __eq__(self, other):
        if isinstance(other, Card):
            return list(self.atr) == list(other.atr) and str(self.reader) == str(other.reader)
        return False

    def __ne__(self, other):
        return not self.__eq__(other)

    def __hash__(self):
        return hash(repr(self))

    def createConnection(self):
        from .System import Reader, readers
        if isinstance(self.reader, Reader):
            return self.reader.createConnection()
        for r in readers():
            if str(r) == str(self.reader):
                return r.createConnection()
        return None
