"""``smartcard.CardConnectionObserver`` of the shim, with pyscard's console observer."""

from .Observer import Observer
from .util import toHexString


class CardConnectionObserver(Observer):
    def update(self, cardconnection, ccevent):
        """Called with the connection and a CardConnectionEvent."""


class ConsoleCardConnectionObserver(CardConnectionObserver):
    """Prints connections, commands and responses as pyscard's does."""

    def update(self, cardconnection, ccevent):
        if ccevent.type == "connect":
            print("connecting to " + str(cardconnection.getReader()))
        elif ccevent.type == "reconnect":
            print("reconnecting to " + str(cardconnection.getReader()))
        elif ccevent.type == "disconnect":
            print("disconnecting from " + str(cardconnection.getReader()))
        elif ccevent.type == "release":
            print("release from " + str(cardconnection.getReader()))
        elif ccevent.type == "command":
            print("> " + toHexString(list(ccevent.args[0])))
        elif ccevent.type == "response":
            if ccevent.args[0]:
                print("< " + toHexString(list(ccevent.args[0])) + " " +
                      toHexString(list(ccevent.args[-2:])))
            else:
                print("< [] " + toHexString(list(ccevent.args[-2:])))
