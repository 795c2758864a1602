"""``smartcard.Observer`` of the shim: the observer pattern pyscard's monitors use."""

import threading


class Observer:
    def update(self, observable, handlers):
        """Called by the observable with what changed."""


class Observable:
    def __init__(self):
        self.obs = []
        self.changed = 0
        self.mutex = threading.RLock()

    def addObserver(self, observer):
        with self.mutex:
            if observer not in self.obs:
                self.obs.append(observer)

    def deleteObserver(self, observer):
        with self.mutex:
            if observer in self.obs:
                self.obs.remove(observer)

    def notifyObservers(self, handlers=None):
        with self.mutex:
            if not self.changed:
                return
            local = list(self.obs)
            self.clearChanged()
        for observer in local:
            observer.update(self, handlers)

    def deleteObservers(self):
        with self.mutex:
            self.obs = []

    def setChanged(self):
        with self.mutex:
            self.changed = 1

    def clearChanged(self):
        with self.mutex:
            self.changed = 0

    def hasChanged(self):
        return self.changed

    def countObservers(self):
        return len(self.obs)
