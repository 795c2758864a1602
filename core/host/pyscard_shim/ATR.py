"""``smartcard.ATR`` of the shim: pyscard's ATR object, decoded by ccidkit.core.atr.

    atr = ATR([0x3B, 0x16, 0x94, ...])
    atr.isT1Supported(); atr.getTA1(); atr.getHistoricalBytes(); atr.dump()

``TA``, ``TB``, ``TC``, ``TD`` are lists indexed from 0 (TA[0] is TA1), one
entry per interface-byte group, None where the byte is absent.
"""

from ccidkit.core.atr import ATRError, parse_atr

from .Exceptions import SmartcardException
from .util import toHexString


class ATR:
    def __init__(self, atr):
        atr = list(atr)
        if len(atr) < 2:
            raise SmartcardException("ATR sequences must be at least 2 bytes long")
        if atr[0] not in (0x3B, 0x3F):
            raise SmartcardException("invalid TS 0x%02x" % atr[0])
        try:
            self._parsed = parse_atr(bytes(atr))
        except ATRError as e:
            raise SmartcardException("invalid ATR: %s" % e.message)
        p = self._parsed
        self.atr = atr
        self.TS = atr[0]
        self.T0 = atr[1]
        self.K = self.T0 & 0x0F
        groups = p.interface
        self.TA = [g[0] for g in groups] or [None]
        self.TB = [g[1] for g in groups] or [None]
        self.TC = [g[2] for g in groups] or [None]
        self.TD = [g[3] for g in groups] or [None]
        self.interfaceBytesCount = sum([len([b for b in g if b is not None]) for g in groups])
        self.historicalBytes = list(p.historical)
        self.TCK = p.tck
        self.hasChecksum = p.tck is not None
        self.FI = self.TA[0] >> 4 if self.TA[0] is not None else None
        self.DI = self.TA[0] & 0x0F if self.TA[0] is not None else None
        self.II = (self.TB[0] >> 5) & 0x03 if self.TB[0] is not None else None
        self.PI1 = self.TB[0] & 0x1F if self.TB[0] is not None else None
        self.N = self.TC[0]

    def getChecksum(self):
        return self.TCK

    def getHistoricalBytes(self):
        return self.historicalBytes

    def getHistoricalBytesCount(self):
        return len(self.historicalBytes)

    def getInterfaceBytesCount(self):
        return self.interfaceBytesCount

    def getTA1(self):
        return self.TA[0]

    def getTB1(self):
        return self.TB[0]

    def getTC1(self):
        return self.TC[0]

    def getTD1(self):
        return self.TD[0]

    def getBitRateFactor(self):
        return self._parsed.di if self.DI is not None and self._parsed.di else 1

    def getClockRateConversion(self):
        return self._parsed.fi if self.FI is not None and self._parsed.fi else 372

    def getProgrammingVoltage(self):
        return 5 * (1 + self.PI1) if self.PI1 is not None else 5

    def getGuardTime(self):
        return self.N

    def getSupportedProtocols(self):
        out = {}
        for td in self.TD:
            if td is not None:
                out["T=%d" % (td & 0x0F)] = True
        if self.TD[0] is None:
            out["T=0"] = True
        return out

    def isT0Supported(self):
        return "T=0" in self.getSupportedProtocols()

    def isT1Supported(self):
        return "T=1" in self.getSupportedProtocols()

    def isT15Supported(self):
        return "T=15" in self.getSupportedProtocols()

    def render(self):
        return "\n".join(self._parsed.explain())

    def dump(self):
        print(self.render())

    def __str__(self):
        return toHexString(self.atr)
