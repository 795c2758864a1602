"""The root of ccidkit's exception hierarchies.

Each layer defines its own subclasses in its own module (ATRError in atr,
CCIDError in ccid, T1Error in t1, ...), each carrying a code its users
recognise (an ISO status, a CCID bError, an SCARD_E_* value). Catch
``CcidkitError`` to catch them all; never raise it directly.
"""


class CcidkitError(Exception):
    """Base of every exception the kit raises on purpose.

    ``code`` is the layer's own number for the condition (or None);
    ``name`` its symbolic name (e.g. "ICC_MUTE", "SCARD_E_TIMEOUT").
    """

    def __init__(self, message, code=None, name=None):
        super().__init__(message)
        self.message = message
        self.code = code
        self.name = name

    def __str__(self):
        if self.name:
            return self.name + ": " + self.message
        return self.message
