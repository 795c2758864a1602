"""``smartcard.CardConnectionEvent`` of the shim."""


class CardConnectionEvent:
    """type: 'connect', 'reconnect', 'disconnect', 'release', 'command' or 'response'."""

    def __init__(self, event_type, args=None):
        self.type = event_type
        self.args = args
