"""PIN objects: reference data with a retry counter (ISO/IEC 7816-4 §7.5.6 - §7.5.10).

A PIN has a value (padded with FF to ``length`` bytes, as TS 102 221 §9.5.1
wants PINs), a retry counter, an optional unblocking PIN (PUK) with its own
counter, and an enabled flag (TS 102 221 DISABLE/ENABLE VERIFICATION
REQUIREMENT). The counter is decremented and persisted before the
comparison: a card killed between the two has lost one try, never gained
one. ``store`` is called after every change of persistent state.
"""

import hmac

from .errors import CardOSError

PAD = 0xFF


class PIN:
    def __init__(self, ref, value, retries=3, puk=None, puk_retries=10, enabled=True,
                 length=8, min_length=4, store=None):
        if not isinstance(ref, int) or not 0 < ref < 0x100:
            raise CardOSError("PIN reference must be 01..FF, not %r" % (ref,), name="BAD_PIN")
        if not 1 <= retries <= 1000000 or not 1 <= puk_retries <= 1000000:
            raise CardOSError("retry counters must be 1..1000000", name="BAD_PIN")
        self.ref = ref
        self.length = length
        self.min_length = min_length
        self.value = self.pad(value)
        self.retries = retries
        self.remaining = retries
        self.puk = None if puk is None else self.pad(puk)
        self.puk_retries = puk_retries
        self.puk_remaining = puk_retries
        self.enabled = enabled
        self.store = store

    # --- values ---------------------------------------------------------------------------

    def pad(self, value):
        if isinstance(value, str):
            value = value.encode("ascii")
        value = bytes(value)
        if len(value) > self.length:
            raise CardOSError("PIN %02X longer than %d bytes" % (self.ref, self.length), name="BAD_PIN")
        return value + bytes((PAD,)) * (self.length - len(value))

    def well_formed(self, candidate):
        """A candidate as the card accepts it: exactly ``length`` bytes, at least
        ``min_length`` of them before the FF padding."""
        if len(candidate) != self.length:
            return False
        n = len(candidate.rstrip(bytes((PAD,))))
        return n >= self.min_length

    @property
    def blocked(self):
        return self.remaining == 0

    @property
    def puk_blocked(self):
        return self.puk is not None and self.puk_remaining == 0

    def _save(self):
        if self.store is not None:
            self.store()

    # --- operations (each returns True/False; the counters are persisted first) -------------

    def verify(self, candidate):
        """Compare ``candidate``; False when wrong or blocked (check ``remaining``)."""
        if self.blocked:
            return False
        self.remaining -= 1
        self._save()
        ok = hmac.compare_digest(bytes(candidate), self.value)
        if ok:
            self.remaining = self.retries
            self._save()
        return ok

    def change(self, old, new):
        if not self.verify(old):
            return False
        self.value = bytes(new)
        self._save()
        return True

    def unblock(self, puk, new=None):
        """RESET RETRY COUNTER with the PUK; ``new`` replaces the value when given."""
        if self.puk is None or self.puk_remaining == 0:
            return False
        self.puk_remaining -= 1
        self._save()
        if not hmac.compare_digest(bytes(puk), self.puk):
            return False
        self.puk_remaining = self.puk_retries
        self.remaining = self.retries
        if new is not None:
            self.value = bytes(new)
        self._save()
        return True

    def set_enabled(self, enabled):
        self.enabled = enabled
        self._save()

    # --- persistence ----------------------------------------------------------------------

    def state(self):
        return {"value": self.value.hex(), "remaining": self.remaining, "enabled": self.enabled,
                "puk": None if self.puk is None else self.puk.hex(),
                "puk_remaining": self.puk_remaining}

    def load_state(self, st):
        try:
            value = bytes.fromhex(st["value"])
            remaining = int(st["remaining"])
            puk_remaining = int(st["puk_remaining"])
            enabled = bool(st["enabled"])
            puk = st.get("puk")
            puk = None if puk is None else bytes.fromhex(puk)
        except (KeyError, TypeError, ValueError, OverflowError) as e:
            raise CardOSError("PIN %02X in the card image: %s" % (self.ref, e), name="IMAGE_CORRUPT")
        if len(value) != self.length or not 0 <= remaining <= self.retries \
                or not 0 <= puk_remaining <= self.puk_retries:
            raise CardOSError("PIN %02X in the card image is out of range" % self.ref,
                              name="IMAGE_CORRUPT")
        self.value = value
        self.remaining = remaining
        self.enabled = enabled
        self.puk = puk
        self.puk_remaining = puk_remaining

    def __repr__(self):
        # never the value
        return "<PIN %02X %d/%d tries%s>" % (self.ref, self.remaining, self.retries,
                                             "" if self.enabled else " disabled")
