"""The session log every virtual card keeps: ``card.events``, a list of (name, detail).

Two ways of telling a card about its session exist side by side: the state
methods (``power_on()``, ``power_off()``, ``reset(warm)``) and
``event(name, **detail)``. A bridge may use either, or both for one
happening (the method, then the event, as emu/vicc.py does). The log keeps
one entry per happening: an event that arrives right after the state method
of the same name (or the method right after the event), with nothing else
in between, is the same happening and is merged into the first entry (its
detail added). Two calls of the same kind are two happenings.
"""

MAX_EVENTS = 10000

EVENT_NAMES = ("power_on", "power_off", "reset_warm", "reset_cold", "pps", "connect",
               "disconnect", "begin_transaction", "end_transaction")

METHOD = "method"
EVENT = "event"


class SessionLog:
    def __init__(self, limit=MAX_EVENTS):
        self.events = []
        self.limit = limit
        self._last = None      # (name, source) of the entry a twin call may merge into

    def record(self, name, detail, source):
        """Append (name, detail); False when merged into the previous entry instead."""
        last = self._last
        if last is not None and last[0] == name and last[1] != source and self.events:
            if detail:
                self.events[-1][1].update(detail)
            self._last = None
            return False
        self.events.append((name, dict(detail)))
        if len(self.events) > self.limit:
            del self.events[:len(self.events) - self.limit]
        self._last = (name, source)
        return True

    def activity(self):
        """Something else happened (a command): no merging across it."""
        self._last = None
