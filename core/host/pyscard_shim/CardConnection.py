"""``smartcard.CardConnection`` of the shim: a connection to the card in one reader.

``CardConnection`` carries pyscard's protocol constants and observer events;
``PCSCCardConnection`` (what ``reader.createConnection()`` returns) does the
work through the shim's ``scard`` functions, with pyscard 2.x's defaults:
``connect()`` asks for T=0 or T=1 in shared mode and disposes of the card
with SCARD_UNPOWER_CARD at ``disconnect()``; ``transmit`` returns ``(data,
sw1, sw2)`` with ``data`` a list of ints.
"""

from .CardConnectionEvent import CardConnectionEvent
from .Exceptions import CardConnectionException, NoCardException, SmartcardException
from .Observer import Observable
from . import scard as _s


class CardConnection(Observable):
    T0_protocol = 0x00000001
    T1_protocol = 0x00000002
    RAW_protocol = 0x00010000
    T15_protocol = 0x00000008

    def __init__(self, reader):
        Observable.__init__(self)
        self.reader = reader
        self.errorcheckingchain = None
        self.defaultprotocol = CardConnection.T0_protocol | CardConnection.T1_protocol

    def _event(self, kind, args=None):
        self.setChanged()
        self.notifyObservers(CardConnectionEvent(kind, args))

    def addSWExceptionToFilter(self, exClass):
        if self.errorcheckingchain is not None:
            self.errorcheckingchain[0].addFilterException(exClass)

    def connect(self, protocol=None, mode=None, disposition=None):
        self._event("connect")

    def reconnect(self, protocol=None, mode=None, disposition=None):
        self._event("reconnect")

    def disconnect(self):
        self._event("disconnect")

    def release(self):
        self._event("release")

    def getATR(self):
        return None

    def getProtocol(self):
        return self.defaultprotocol

    def setProtocol(self, protocol):
        self.defaultprotocol = protocol

    def getReader(self):
        return self.reader

    def setErrorCheckingChain(self, errorcheckingchain):
        self.errorcheckingchain = errorcheckingchain

    def transmit(self, command, protocol=None):
        """(data, sw1, sw2) for the command APDU ``command`` (a list of ints)."""
        self._event("command", [command, protocol])
        data, sw1, sw2 = self.doTransmit(command, protocol)
        self._event("response", [data, sw1, sw2])
        if self.errorcheckingchain is not None:
            self.errorcheckingchain[0](data, sw1, sw2)
        return data, sw1, sw2

    def doTransmit(self, command, protocol):
        return [], 0, 0

    def control(self, controlCode, command=None):
        """The reader's answer (a list of ints) to SCardControl(controlCode, command)."""
        if command is None:
            command = []
        self._event("command", [controlCode, command])
        data = self.doControl(controlCode, command)
        self._event("response", data)
        if self.errorcheckingchain is not None:
            self.errorcheckingchain[0](data)
        return data

    def doControl(self, controlCode, command):
        return []

    def getAttrib(self, attribId):
        self._event("attrib", [attribId])
        data = self.doGetAttrib(attribId)
        if self.errorcheckingchain is not None:
            self.errorcheckingchain[0](data)
        return data

    def doGetAttrib(self, attribId):
        return []

    def __enter__(self):
        return self

    def __exit__(self, exc_type, exc_value, tb):
        self.release()


def _pcsc_mask(protocol):
    out = 0
    if protocol is not None:
        if protocol & CardConnection.T0_protocol:
            out |= _s.SCARD_PROTOCOL_T0
        if protocol & CardConnection.T1_protocol:
            out |= _s.SCARD_PROTOCOL_T1
        if protocol & CardConnection.RAW_protocol:
            out |= _s.SCARD_PROTOCOL_RAW
        if protocol & CardConnection.T15_protocol:
            out |= _s.SCARD_PROTOCOL_T15
    return out


_PCI = {CardConnection.T0_protocol: (_s.SCARD_PCI_T0, "T0"),
        CardConnection.T1_protocol: (_s.SCARD_PCI_T1, "T1"),
        CardConnection.RAW_protocol: (_s.SCARD_PCI_RAW, "RAW")}

_NAMES = {_s.SCARD_PROTOCOL_T0: "T0", _s.SCARD_PROTOCOL_T1: "T1", _s.SCARD_PROTOCOL_RAW: "RAW",
          _s.SCARD_PROTOCOL_T15: "T15", _s.SCARD_PROTOCOL_T0 | _s.SCARD_PROTOCOL_T1: "T0 or T1"}

_FROM_PCSC = {_s.SCARD_PROTOCOL_T0: CardConnection.T0_protocol,
              _s.SCARD_PROTOCOL_T1: CardConnection.T1_protocol,
              _s.SCARD_PROTOCOL_RAW: CardConnection.RAW_protocol,
              _s.SCARD_PROTOCOL_T15: CardConnection.T15_protocol,
              _s.SCARD_PROTOCOL_T0 | _s.SCARD_PROTOCOL_T1:
                  CardConnection.T0_protocol | CardConnection.T1_protocol}


class PCSCCardConnection(CardConnection):
    """A CardConnection over the shim's PC/SC layer (one context per connection)."""

    def __init__(self, reader):
        CardConnection.__init__(self, reader)
        self.hcard = None
        self.hcontext = None
        self.disposition = None
        hr, hcontext = _s.SCardEstablishContext(_s.SCARD_SCOPE_USER)
        if hr != _s.SCARD_S_SUCCESS:
            raise CardConnectionException("Failed to establish context : " +
                                          _s.SCardGetErrorMessage(hr), hresult=hr)
        self.hcontext = hcontext

    def __del__(self):
        try:
            self.release()
        except (SmartcardException, AttributeError, TypeError):
            pass

    def release(self):
        if self.hcontext is not None:
            CardConnection.release(self)
            self.disconnect()
            hr = _s.SCardReleaseContext(self.hcontext)
            self.hcontext = None
            if hr not in (_s.SCARD_S_SUCCESS, _s.SCARD_E_INVALID_VALUE,
                          _s.SCARD_E_INVALID_HANDLE):
                raise CardConnectionException("Failed to release context: " +
                                              _s.SCardGetErrorMessage(hr), hresult=hr)

    def _set_active(self, active):
        CardConnection.setProtocol(self, _FROM_PCSC.get(active, 0))

    def connect(self, protocol=None, mode=None, disposition=None):
        CardConnection.connect(self, protocol)
        pcsc_protocol = _pcsc_mask(protocol) or _pcsc_mask(self.getProtocol())
        if mode is None:
            mode = _s.SCARD_SHARE_SHARED
        self.disposition = _s.SCARD_UNPOWER_CARD if disposition is None else disposition
        if self.hcontext is None:
            raise CardConnectionException("Context already released")
        hr, hcard, active = _s.SCardConnect(self.hcontext, str(self.reader), mode,
                                            pcsc_protocol)
        if hr != _s.SCARD_S_SUCCESS:
            self.hcard = None
            if hr in (_s.SCARD_W_REMOVED_CARD, _s.SCARD_E_NO_SMARTCARD):
                raise NoCardException("Unable to connect", hresult=hr)
            raise CardConnectionException(
                "Unable to connect with protocol: %s. %s" % (
                    _NAMES.get(pcsc_protocol, str(pcsc_protocol)),
                    _s.SCardGetErrorMessage(hr)), hresult=hr)
        self.hcard = hcard
        self._set_active(active)

    def reconnect(self, protocol=None, mode=None, disposition=None):
        CardConnection.reconnect(self, protocol)
        if self.hcard is None:
            raise CardConnectionException("Card not connected")
        pcsc_protocol = _pcsc_mask(protocol) or _pcsc_mask(self.getProtocol())
        if mode is None:
            mode = _s.SCARD_SHARE_SHARED
        self.disposition = _s.SCARD_RESET_CARD if disposition is None else disposition
        hr, active = _s.SCardReconnect(self.hcard, mode, pcsc_protocol, self.disposition)
        if hr != _s.SCARD_S_SUCCESS:
            self.hcard = None
            if hr in (_s.SCARD_W_REMOVED_CARD, _s.SCARD_E_NO_SMARTCARD):
                raise NoCardException("Unable to reconnect", hresult=hr)
            raise CardConnectionException(
                "Unable to reconnect with protocol: %s. %s" % (
                    _NAMES.get(pcsc_protocol, str(pcsc_protocol)),
                    _s.SCardGetErrorMessage(hr)), hresult=hr)
        self._set_active(active)

    def disconnect(self):
        if self.hcard is None:
            return
        CardConnection.disconnect(self)
        hr = _s.SCardDisconnect(self.hcard, self.disposition)
        self.hcard = None
        if hr != _s.SCARD_S_SUCCESS:
            raise CardConnectionException("Failed to disconnect: " +
                                          _s.SCardGetErrorMessage(hr), hresult=hr)

    def getATR(self):
        """The card's ATR, a list of ints."""
        if self.hcard is None:
            raise CardConnectionException("Card not connected")
        hr, _reader, _state, _proto, atr = _s.SCardStatus(self.hcard)
        if hr != _s.SCARD_S_SUCCESS:
            raise CardConnectionException("Failed to get status: " +
                                          _s.SCardGetErrorMessage(hr), hresult=hr)
        return atr

    def doTransmit(self, command, protocol=None):
        if protocol is None:
            protocol = self.getProtocol()
        pci = _PCI.get(protocol)
        if pci is None:
            raise CardConnectionException(
                "Invalid protocol in transmit: must be CardConnection.T0_protocol, "
                "CardConnection.T1_protocol, or CardConnection.RAW_protocol")
        if self.hcard is None:
            raise CardConnectionException("Card not connected")
        hr, response = _s.SCardTransmit(self.hcard, pci[0], command)
        if hr != _s.SCARD_S_SUCCESS:
            raise CardConnectionException("Failed to transmit with protocol %s. %s" % (
                pci[1], _s.SCardGetErrorMessage(hr)), hresult=hr)
        if len(response) < 2:
            raise CardConnectionException("Card returned no valid response", hresult=hr)
        return list(response[:-2]), response[-2], response[-1]

    def doControl(self, controlCode, command=None):
        if command is None:
            command = []
        if self.hcard is None:
            raise CardConnectionException("Card not connected")
        hr, response = _s.SCardControl(self.hcard, controlCode, command)
        if hr != _s.SCARD_S_SUCCESS:
            raise SmartcardException("Failed to control " + _s.SCardGetErrorMessage(hr),
                                     hresult=hr)
        return list(response)

    def doGetAttrib(self, attribId):
        hr, response = _s.SCardGetAttrib(self.hcard, attribId)
        if hr != _s.SCARD_S_SUCCESS:
            raise SmartcardException("Failed to getAttrib " + _s.SCardGetErrorMessage(hr),
                                     hresult=hr)
        return response
