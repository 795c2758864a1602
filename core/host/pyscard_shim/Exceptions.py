"""``smartcard.Exceptions`` of the shim: the exception classes pyscard scripts catch.

Same names, constructor shapes and ``hresult`` attribute as pyscard 2.x; the
text ends with the PC/SC message and the code, e.g. ``Unable to connect: ...
(0x8010000C)``.
"""

from .scard import SCardGetErrorMessage


class SmartcardException(Exception):
    """Base of the shim's exceptions; ``hresult`` the PC/SC code or -1."""

    def __init__(self, *args, message="", hresult=-1):
        if not message and args:
            message = args[0]
            args = args[1:]
        if hresult == -1 and args:
            hresult = args[0]
            args = args[1:]
        Exception.__init__(self, message, *args)
        self.hresult = int(hresult)

    def __str__(self):
        text = Exception.__str__(self)
        if self.hresult != -1:
            code = self.hresult & 0xFFFFFFFF
            text = (text + ": " if text else "") + "%s (0x%08X)" % (
                SCardGetErrorMessage(code), code)
        return text


class CardConnectionException(SmartcardException):
    """A CardConnection method failed."""


class CardRequestException(SmartcardException):
    """A CardRequest wait failed."""


class CardRequestTimeoutException(SmartcardException):
    """A CardRequest timed out."""

    def __init__(self, *args, hresult=-1):
        if hresult == -1 and args:
            hresult = args[0]
            args = args[1:]
        SmartcardException.__init__(self, "Time-out during card request", *args,
                                    hresult=hresult)


class CardServiceException(SmartcardException):
    """A CardService method failed."""


class CardServiceStoppedException(SmartcardException):
    """The card service (the resource manager) was stopped."""


class CardServiceNotFoundException(SmartcardException):
    """No card service (resource manager)."""


class InvalidATRMaskLengthException(SmartcardException):
    def __init__(self, mask):
        SmartcardException.__init__(self, "Invalid ATR mask length: %s" % (mask,))


class InvalidReaderException(SmartcardException):
    def __init__(self, readername):
        SmartcardException.__init__(self, "Invalid reader: %s" % (readername,))


class ListReadersException(SmartcardException):
    def __init__(self, hresult):
        SmartcardException.__init__(self, "Failed to list readers", hresult=hresult)


class NoCardException(SmartcardException):
    """No card in the reader."""

    def __init__(self, message, hresult):
        SmartcardException.__init__(self, message, hresult=hresult)


class NoReadersException(SmartcardException):
    """No reader at all."""

    def __init__(self, *args):
        SmartcardException.__init__(self, "No reader found", *args)
