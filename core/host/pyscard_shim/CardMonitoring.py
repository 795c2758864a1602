"""``smartcard.CardMonitoring`` of the shim: observers told of insertions and removals.

    class Printer(CardObserver):
        def update(self, observable, handlers):
            added, removed = handlers
    monitor = CardMonitor()
    monitor.addObserver(Printer())       # told at once of the cards already there

A daemon thread polls the readers (every ``POLL_S`` seconds, through
SCardGetStatusChange) while the monitor has observers; it stops when the
shim is deactivated.
"""

import threading

from .CardRequest import CardRequest
from .Exceptions import CardRequestTimeoutException, SmartcardException
from .Observer import Observable, Observer

POLL_S = 0.2
_MONITORS = []


class CardObserver(Observer):
    def update(self, observable, handlers):
        """handlers: (added cards, removed cards)."""


class _Thread(threading.Thread):
    def __init__(self, monitor):
        threading.Thread.__init__(self, name="smartcard-CardMonitor")
        self.daemon = True
        self.monitor = monitor
        self.stop_event = threading.Event()
        self.request = CardRequest(timeout=POLL_S)
        self.cards = self.request.waitforcardevent()

    def run(self):
        while not self.stop_event.is_set():
            try:
                now = self.request.waitforcardevent()
            except CardRequestTimeoutException:
                continue
            except SmartcardException:
                self.stop_event.wait(POLL_S)
                continue
            added = [c for c in now if c not in self.cards]
            removed = [c for c in self.cards if c not in now]
            self.cards = now
            if added or removed:
                self.monitor.setChanged()
                self.monitor.notifyObservers((added, removed))

    def stop(self):
        self.stop_event.set()


class _Monitor(Observable):
    def __init__(self):
        Observable.__init__(self)
        self.rmthread = None

    def addObserver(self, observer):
        Observable.addObserver(self, observer)
        if self.rmthread is None:
            self.rmthread = _Thread(self)
            self.rmthread.start()
        observer.update(self, (list(self.rmthread.cards), []))

    def deleteObserver(self, observer):
        Observable.deleteObserver(self, observer)
        if self.countObservers() == 0 and self.rmthread is not None:
            self.rmthread.stop()
            self.rmthread.join(5)
            self.rmthread = None

    def __str__(self):
        return "CardMonitor"


class CardMonitor:
    """The one card monitor (pyscard's singleton)."""

    instance = None
    lock = threading.Lock()

    def __init__(self):
        with CardMonitor.lock:
            if CardMonitor.instance is None:
                CardMonitor.instance = _Monitor()
                _MONITORS.append(CardMonitor.instance)

    def __getattr__(self, name):
        return getattr(self.instance, name)


def _stop_all():
    """Stop the polling threads (the shim is being deactivated)."""
    for m in _MONITORS:
        t = m.rmthread
        if t is not None:
            t.stop()
            t.join(5)
            m.rmthread = None
