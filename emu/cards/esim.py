"""An eSIM-like card with Multiple Enabled Profiles: one port per profile.

Each port is its own logical card (a USIM with its own file tree, ICCID,
IMSI, phone book, PINs and session state). The port is chosen by the NAD
byte of the T=1 blocks (ISO/IEC 7816-3 §11.3.2.1: DAD in b7-b5, SAD in
b3-b1): ``esim.ports`` maps the NAD a reader sends (DAD = port number, SAD =
0: 00, 10, 20, ...) to the port's card, which is what emu/card/t1.py's
``T1Card`` takes::

    t1 = T1Card(esim.ports, ifsc=esim.ifsc)

The ATR offers T=1 only. ``process_apdu`` without a NAD goes to port 0.
Power and reset events reach every port; all ports keep their state in one
card image (one section per port).
"""

from ..cardos import CardImage, build_card_atr
from ..cardos.errors import CardOSError
from ..cardos.session import SessionLog, METHOD, EVENT
from .usim import UsimCard, DEFAULT_HISTORICAL

DEFAULT_PORTS = 2
MAX_PORTS = 8
DEFAULT_IFSC = 254


def port_nad(port):
    """The NAD a reader sends to reach ``port``: DAD = port, SAD = 0."""
    return (port & 0x07) << 4


def _profile(port):
    """ICCID, IMSI and phone book of the profile enabled on ``port``."""
    iccid = "89882110000001%04d%d" % (port, port)
    imsi = "00101%010d" % (1000 + port)
    contacts = (
        (1, "Port %d owner" % port, "+3361000000%d" % port),
        (2, "Profile %d" % port, "06100000%02d" % port),
    )
    return iccid, imsi, contacts


class EsimCard:
    """The eSIM-like card (see the module documentation)."""

    def __init__(self, image=None, ports=DEFAULT_PORTS, ifsc=DEFAULT_IFSC, records=20,
                 ta1=0x96, bwi=4, cwi=5, pin1_enabled=False):
        if not isinstance(ports, int) or not 1 <= ports <= MAX_PORTS:
            raise CardOSError("an eSIM has 1..%d ports" % MAX_PORTS, name="BAD_FILE")
        if image is not None and not isinstance(image, CardImage):
            image = CardImage(image)
        self.image = image
        self.ifsc = ifsc
        self.atr = build_card_atr(protocols=(1,), ta1=ta1, ifsc=ifsc, bwi=bwi, cwi=cwi,
                                  classes="ABC", historical=DEFAULT_HISTORICAL)
        self.ports = {}
        self.port_list = []
        for n in range(ports):
            iccid, imsi, contacts = _profile(n)
            card = UsimCard(image=image, image_key="port%d" % n, records=records,
                            contacts=contacts, iccid=iccid, imsi=imsi, protocols=(1,),
                            ifsc=ifsc, pin1_enabled=pin1_enabled)
            card.atr = self.atr
            card.port = n
            self.ports[port_nad(n)] = card
            self.port_list.append(card)
        self.session = SessionLog()
        self.events = self.session.events

    def port(self, n):
        return self.port_list[n]

    def process_apdu(self, apdu):
        self.session.activity()
        return self.port_list[0].process_apdu(apdu)

    def event(self, name, **detail):
        self.session.record(name, detail, EVENT)
        for card in self.port_list:
            card.event(name, **detail)

    def power_on(self):
        self.session.record("power_on", {}, METHOD)
        for card in self.port_list:
            card.power_on()
        return self.atr

    def power_off(self):
        self.session.record("power_off", {}, METHOD)
        for card in self.port_list:
            card.power_off()

    def reset(self, warm=True):
        self.session.record("reset_warm" if warm else "reset_cold", {}, METHOD)
        for card in self.port_list:
            card.reset(warm)
        return self.atr

    def close(self):
        for card in self.port_list:
            card.close()


CARD_CLASS = EsimCard


def make(image=None, **options):
    return EsimCard(image=image, **options)
