"""``smartcard.CardRequest`` of the shim: wait for a card (pyscard's CardRequest).

    req = CardRequest(timeout=10, cardType=AnyCardType())
    service = req.waitforcard()          # a PassThruCardService
    service.connection.connect()

``timeout`` in seconds (None: no limit); ``newcardonly`` ignores the cards
already there; ``readers`` limits the wait to those readers.
"""

import time

from .Card import Card
from .CardType import AnyCardType
from .Exceptions import CardRequestException, CardRequestTimeoutException
from . import scard as _s

_STEP_MS = 200


class PassThruCardService:
    """pyscard's PassThruCardService: holds the connection to the card."""

    def __init__(self, connection, cardname=None):
        self.connection = connection
        self.cardname = cardname

    def __enter__(self):
        return self

    def __exit__(self, exc_type, exc_value, tb):
        self.connection.disconnect()
        self.connection.release()

    @staticmethod
    def supports(cardname):
        return True


class CardRequest:
    def __init__(self, newcardonly=False, readers=None, cardType=None,
                 cardServiceClass=None, timeout=1):
        self.newcardonly = newcardonly
        self.readersAsked = readers
        self.cardType = cardType if cardType is not None else AnyCardType()
        self.cardServiceClass = cardServiceClass or PassThruCardService
        self.timeout = timeout
        self.hcontext = None
        self.states = {}        # reader name -> last dwEventState
        self.cards = None       # cards seen at the last waitforcardevent
        self.atrs = {}          # reader name -> (card event count, last ATR seen)

    def _context(self):
        if self.hcontext is None:
            hr, h = _s.SCardEstablishContext(_s.SCARD_SCOPE_USER)
            if hr != _s.SCARD_S_SUCCESS:
                raise CardRequestException("Failed to establish context", hresult=hr)
            self.hcontext = h
        return self.hcontext

    def getReaders(self):
        if self.readersAsked is not None:
            return [str(r) for r in self.readersAsked]
        hr, names = _s.SCardListReaders(self._context(), [])
        if hr not in (_s.SCARD_S_SUCCESS, _s.SCARD_E_NO_READERS_AVAILABLE):
            raise CardRequestException("Failed to list readers", hresult=hr)
        return names

    def _look(self, timeout_ms):
        """One SCardGetStatusChange on every reader (and PnP); [(name, state, atr)] or None."""
        names = self.getReaders()
        rs = [(_s.PNP_NOTIFICATION, self.states.get(_s.PNP_NOTIFICATION, 0))]
        for n in names:
            rs.append((n, self.states.get(n, _s.SCARD_STATE_UNAWARE)))
        hr, out = _s.SCardGetStatusChange(self._context(), timeout_ms, rs)
        if hr == _s.SCARD_E_TIMEOUT:
            return None
        if hr != _s.SCARD_S_SUCCESS:
            raise CardRequestException("Failed to get status change", hresult=hr)
        for name, ev, _atr in out:
            self.states[name] = ev & ~_s.SCARD_STATE_CHANGED
        for n in list(self.states):
            if n != _s.PNP_NOTIFICATION and n not in names:
                del self.states[n]
        return [x for x in out if x[0] != _s.PNP_NOTIFICATION]

    def _present(self, looked):
        cards = []
        for name, ev, atr in looked:
            if not ev & _s.SCARD_STATE_PRESENT or ev & _s.SCARD_STATE_MUTE:
                continue
            events = ev >> 16
            if atr:
                self.atrs[name] = (events, list(atr))
            elif self.atrs.get(name, (None,))[0] == events:
                # the same card, unpowered since (SCARD_UNPOWER_CARD): its ATR is known
                atr = self.atrs[name][1]
            cards.append(Card(name, list(atr)))
        return cards

    def _left_ms(self, deadline):
        if deadline is None:
            return _STEP_MS
        left = int((deadline - time.monotonic()) * 1000)
        return max(0, min(left, _STEP_MS))

    def waitforcard(self):
        """A card service for a matching card (CardRequestTimeoutException after timeout)."""
        deadline = None if self.timeout is None else time.monotonic() + self.timeout
        first = self._look(0) or []
        if not self.newcardonly:
            for c in self._present(first):
                if self.cardType.matches(c.atr, c.reader):
                    return self._service(c)
        known = set([repr(c) for c in self._present(first)])
        while True:
            looked = self._look(self._left_ms(deadline))
            if looked is not None:
                now = self._present(looked)
                for c in now:
                    if repr(c) not in known and self.cardType.matches(c.atr, c.reader):
                        return self._service(c)
                known = set([repr(c) for c in now])
            if deadline is not None and time.monotonic() >= deadline:
                raise CardRequestTimeoutException()

    def _service(self, card):
        from .System import Reader
        conn = Reader(card.reader).createConnection()
        return self.cardServiceClass(conn)

    def waitforcardevent(self):
        """The cards present once they differ from the last call's (first call: at once)."""
        deadline = None if self.timeout is None else time.monotonic() + self.timeout
        if self.cards is None:
            self.cards = self._present(self._look(0) or [])
            return list(self.cards)
        while True:
            looked = self._look(self._left_ms(deadline))
            if looked is not None:
                now = self._present(looked)
                if now != self.cards:
                    self.cards = now
                    return list(now)
            if deadline is not None and time.monotonic() >= deadline:
                raise CardRequestTimeoutException()

    def __enter__(self):
        return self

    def __exit__(self, exc_type, exc_value, tb):
        if self.hcontext is not None:
            _s.SCardReleaseContext(self.hcontext)
            self.hcontext = None
