"""A fault-injecting link between a reader-side engine and a card-side engine.

``FaultLink(card_engine, faults)`` is callable as ``link(block, timeout_us)``
(the exchange-helper convention of docs/architecture.md): it carries the
reader's block to ``card_engine.receive_block`` and returns the answer, or
None for "nothing within the timeout", applying the scripted faults on the
way. Each :class:`Fault` fires at given link-call indexes (``at``, 0-based,
an int or a tuple) or whenever ``when(index, block)`` is true, at most
``times`` times (None = no limit; by default once for ``when``, at every
index of ``at``).

Fault kinds (``to`` = "card" for the reader's block, "reader" for the answer):

- ``corrupt``   flip the last byte (the EDC) of the block;
- ``lose``      drop the block (to="card": the card never sees it);
- ``bad_ns``    flip N(S) of an I-block and recompute its EDC;
- ``nad``       replace the NAD byte with ``value`` and recompute the EDC;
- ``duplicate`` deliver the reader's block twice, return the second answer;
- ``wtx``       the card sends ``count`` S(WTX request)s (multiplier ``value``)
                before its answer;
- ``ifs``       the card offers IFSC ``value`` with S(IFS request);
- ``abort``     the card aborts the chain in progress.
"""

from ...core.t1 import put_edc

KINDS = ("corrupt", "lose", "bad_ns", "nad", "duplicate", "wtx", "ifs", "abort")


class Fault:
    def __init__(self, kind, at=None, when=None, to="card", value=None, count=1, times=-1):
        if kind not in KINDS:
            raise ValueError("unknown fault kind %r" % (kind,))
        if to != "card" and to != "reader":
            raise ValueError("to must be 'card' or 'reader'")
        if isinstance(at, int):
            at = (at,)
        if times == -1:
            times = None if at is not None else 1
        self.kind = kind
        self.at = at
        self.when = when
        self.to = to
        self.value = value
        self.count = count
        self.times = times
        self.fired = 0

    def applies(self, index, block):
        if self.times is not None and self.fired >= self.times:
            return False
        if self.at is not None and index not in self.at:
            return False
        if self.when is not None and not self.when(index, block):
            return False
        if self.at is None and self.when is None:
            return False
        self.fired += 1
        return True


class FaultLink:
    def __init__(self, card_engine, faults=(), record=False):
        self.card = card_engine
        self.faults = list(faults)
        self.record = record
        self.calls = 0            # blocks the reader handed to the link
        self.to_card = 0          # blocks the card engine received
        self.to_reader = 0        # answers handed back to the reader
        self.lost = 0
        self.corrupted = 0
        self.fired = []           # (index, kind, to) of every fault applied
        self.waits = []           # timeout_us of each call (record=True)
        self.log = []             # ("->" / "<-", bytes) (record=True)

    def _edc(self):
        return getattr(self.card, "edc", "LRC")

    def _refit(self, blk):
        e = 1 if self._edc() == "LRC" else 2
        put_edc(blk, len(blk) - e, self._edc())

    def _damage(self, f, blk):
        k = f.kind
        if k == "corrupt":
            blk[len(blk) - 1] ^= 0x5A
            self.corrupted += 1
        elif k == "bad_ns":
            if len(blk) > 3 and not blk[1] & 0x80:
                blk[1] ^= 0x40
                self._refit(blk)
        elif k == "nad":
            blk[0] = f.value & 0xFF
            self._refit(blk)

    def __call__(self, block, timeout_us):
        index = self.calls
        self.calls += 1
        blk = bytearray(block)
        if self.record:
            self.waits.append(timeout_us)
            self.log.append(("->", bytes(blk)))
        active = []
        for f in self.faults:
            if f.applies(index, blk):
                active.append(f)
                self.fired.append((index, f.kind, f.to))
        duplicate = False
        for f in active:
            if f.kind == "wtx":
                self.card.queue_wtx(2 if f.value is None else f.value, f.count)
            elif f.kind == "ifs":
                self.card.queue_ifs(f.value)
            elif f.kind == "abort":
                self.card.queue_abort()
            elif f.kind == "duplicate":
                duplicate = True
            elif f.to == "card":
                if f.kind == "lose":
                    self.lost += 1
                    return None
                self._damage(f, blk)
        self.to_card += 1
        ans = self.card.receive_block(bytes(blk))
        if duplicate:
            self.to_card += 1
            ans = self.card.receive_block(bytes(blk))
        if ans is None:
            return None
        out = bytearray(ans)
        for f in active:
            if f.to == "reader" and f.kind in ("corrupt", "lose", "bad_ns", "nad"):
                if f.kind == "lose":
                    self.lost += 1
                    return None
                self._damage(f, out)
        self.to_reader += 1
        if self.record:
            self.log.append(("<-", bytes(out)))
        return bytes(out)


def direct_link(card_engine):
    """A link without faults (a plain function)."""
    def link(block, timeout_us):
        return card_engine.receive_block(bytes(block))
    return link
