"""CardOS: command processing over the file system, PINs and logical channels.

The card interface of docs/architecture.md: ``atr``, ``process_apdu(apdu)``
(never raises for any bytes: malformed commands get the ISO/IEC 7816-4 §5.6
status word), ``power_on`` / ``power_off`` / ``reset(warm)``, ``event(name,
**detail)`` with ``events``, ``close()``.

Commands (ISO/IEC 7816-4 §11, TS 102 221 §11 where the UICC differs):
SELECT (A4: by FID, child DF, EF, parent, DF name with first/next
occurrence, path from the MF or the current DF), READ/UPDATE BINARY (B0/D6,
offset or SFI), READ/UPDATE RECORD (B2/DC: absolute/current, next,
previous; SFI), GET RESPONSE (C0), GET DATA (CA), VERIFY (20), CHANGE
REFERENCE DATA (24), DISABLE/ENABLE VERIFICATION REQUIREMENT (26/28), RESET
RETRY COUNTER (2C), MANAGE CHANNEL (70), STATUS (80 F2).

With ``gsm=True`` the same file tree also answers the GSM SIM of TS 51.011
in class A0: SELECT answered 9Fxx and read with GET RESPONSE (the §9.2.1
format), READ/UPDATE BINARY and RECORD, STATUS, VERIFY/CHANGE/DISABLE/
ENABLE/UNBLOCK CHV, with the §9.4 status words.

Applets: ``add_application(aid, applet, fid=...)`` creates an ADF whose
applet sees every command while the channel's current DF is in that ADF:
``applet.process(os, channel, cmd) -> bytes or None`` (None: let the OS
handle it; raising ``CardStatus(sw)`` ends the command with ``sw``;
``os.reply(channel, cmd, data)`` answers at most Ne bytes and keeps the rest
for GET RESPONSE behind 61xx); optional ``applet.select(os, channel) -> FCI
bytes or None`` and ``applet.reset(os)`` at every power-on and reset.
``os.pin(ref)`` gives the PIN objects, ``os.nv`` a JSON-able dict persisted
with the card image (``os.save()`` after changing it).
"""

import threading

from ...core.apdu import APDUError, CommandAPDU
from ..card.t0 import DEFAULT_OUTGOING_INS
from .errors import CardOSError, CardStatus, gsm_sw
from . import errors as E
from .fs import (DF, FID_MF, FID_CURRENT_ADF, STRUCT_TRANSPARENT, STRUCT_CYCLIC,
                 ALW, NEV, fcp, fci, gsm_response, tlv)
from .image import CardImage
from .pin import PIN
from .session import SessionLog, METHOD, EVENT

INS_SELECT = 0xA4
INS_READ_BINARY = 0xB0
INS_UPDATE_BINARY = 0xD6
INS_READ_RECORD = 0xB2
INS_UPDATE_RECORD = 0xDC
INS_GET_RESPONSE = 0xC0
INS_GET_DATA = 0xCA
INS_VERIFY = 0x20
INS_CHANGE = 0x24
INS_DISABLE = 0x26
INS_ENABLE = 0x28
INS_RESET_RETRY = 0x2C
INS_MANAGE_CHANNEL = 0x70
INS_STATUS = 0xF2

CLA_GSM = 0xA0


def _sw_bytes(sw):
    return bytes((sw >> 8, sw & 0xFF))


def fail(sw, gsm=None):
    raise CardStatus(sw, gsm)


class Channel:
    """Volatile state of one logical channel (ISO/IEC 7816-4 §5.1.1.2)."""

    def __init__(self, number, df):
        self.number = number
        self.df = df
        self.ef = None
        self.record = 0            # current record number, 0 = none
        self.verified = set()      # PIN references verified on this channel
        self.leftover = None       # (data, sw) waiting for GET RESPONSE
        self.aid_match = None      # the ADF last selected by DF name (for "next occurrence")
        self.applet_state = {}

    def current(self):
        return self.ef if self.ef is not None else self.df


class CardOS:
    """A card operating system over a file tree (see the module documentation).

    One lock serialises commands and session events, so a bridge thread and
    a test driving events can share a card.

    ``mf`` the DF 3F00 with its files; ``pins`` PIN objects; ``atr`` the ATR
    bytes (build them with ``build_card_atr``); ``image`` a path or a
    CardImage for persistence (None: nothing persists) with the section
    ``image_key``; ``max_channels`` 1..20 (basic + further channels);
    ``extended`` whether extended-length APDUs are accepted (else 6700);
    ``gsm`` whether class A0 is the TS 51.011 SIM; ``data_objects`` tag ->
    bytes for GET DATA.
    """

    # ISO/IEC 7816-3 §12.2: the INS whose T=0 TPDU carries data to the card; with the
    # engine's defaults, DISABLE / ENABLE VERIFICATION REQUIREMENT (TS 102 221 §11.1.10-11).
    # 26/28 carry a PIN; CB (GET DATA, odd INS) always carries a BER-TLV tag list (7816-4 §11.4.3)
    T0_OUTGOING_INS = tuple(DEFAULT_OUTGOING_INS) + (0x26, 0x28, 0xCB)

    def __init__(self, mf, atr, pins=(), image=None, image_key="card", max_channels=4,
                 extended=False, gsm=False, data_objects=None, proprietary_class=True):
        self.lock = threading.RLock()
        if not isinstance(mf, DF) or mf.fid != FID_MF:
            raise CardOSError("the file tree starts with DF 3F00", name="BAD_FILE")
        if not 1 <= max_channels <= 20:
            raise CardOSError("1..20 logical channels", name="BAD_FILE")
        self.mf = mf
        self.atr = bytes(atr)
        self.max_channels = max_channels
        self.extended = extended
        self.gsm = gsm
        self.proprietary_class = proprietary_class
        self.data_objects = dict(data_objects or {})
        self.pins = {}
        for p in pins:
            self.add_pin(p)
        self.nv = {}
        if image is not None and not isinstance(image, CardImage):
            image = CardImage(image)
        self.image = image
        self.image_key = image_key
        self.session = SessionLog()
        self.events = self.session.events
        self.commands = 0
        self.counts = {}
        self.powered = False
        self.protocol = None
        self.closed = False
        self.channels = {}
        self._gsm_mode = False
        if image is not None:
            st = image.section(image_key)
            if st is not None:
                self.load_state(st)
        self._reset_volatile()

    # --- set-up -----------------------------------------------------------------------------

    def add_pin(self, pin):
        if not isinstance(pin, PIN):
            raise CardOSError("not a PIN object: %r" % (pin,), name="BAD_PIN")
        if pin.ref in self.pins:
            raise CardOSError("PIN %02X defined twice" % pin.ref, name="BAD_PIN")
        pin.store = self.save
        self.pins[pin.ref] = pin
        return pin

    def pin(self, ref):
        """The PIN object with reference ``ref`` (KeyError if none)."""
        return self.pins[ref]

    def add_application(self, aid, applet, fid=0x7FF0, parent=None, pins=()):
        """An ADF named ``aid`` whose commands go to ``applet`` first; returns the DF."""
        adf = DF(fid, aid=aid, applet=applet, pins=pins)
        (parent or self.mf).add(adf)
        return adf

    def find(self, path):
        """The file at ``path`` (FIDs from the MF, the MF included), or None."""
        path = tuple(path)
        if not path or path[0] != FID_MF:
            return None
        f = self.mf
        for fid in path[1:]:
            if not f.is_df:
                return None
            f = f.child(fid)
            if f is None:
                return None
        return f

    # --- persistence --------------------------------------------------------------------------

    def state(self):
        files = {}
        for f in self.mf.walk():
            if f.is_df or not f.persistent:
                continue
            if f.structure == STRUCT_TRANSPARENT:
                files[f.path_key()] = bytes(f.data).hex()
            else:
                files[f.path_key()] = [bytes(r).hex() for r in f.records]
        pins = {}
        for ref in sorted(self.pins):
            pins["%02X" % ref] = self.pins[ref].state()
        return {"files": files, "pins": pins, "nv": self.nv}

    def load_state(self, st):
        files = st.get("files", {})
        pins = st.get("pins", {})
        nv = st.get("nv", {})
        if not isinstance(files, dict) or not isinstance(pins, dict) or not isinstance(nv, dict):
            raise CardOSError("card image section %r is malformed" % self.image_key,
                              name="IMAGE_CORRUPT")
        for key, value in files.items():
            try:
                path = tuple(int(p, 16) for p in key.split("/"))
            except ValueError:
                raise CardOSError("card image: bad file path %r" % key, name="IMAGE_CORRUPT")
            f = self.find(path)
            if f is None or f.is_df:
                continue   # a file this card no longer has
            try:
                if f.structure == STRUCT_TRANSPARENT:
                    data = bytes.fromhex(value)
                    if len(data) != f.size:
                        raise ValueError("%d bytes, the EF has %d" % (len(data), f.size))
                    f.data[:] = data
                else:
                    recs = [bytes.fromhex(r) for r in value]
                    if len(recs) != f.count or any(len(r) != f.record_length for r in recs):
                        raise ValueError("%d records, the EF has %d of %d bytes"
                                         % (len(recs), f.count, f.record_length))
                    for i, r in enumerate(recs):
                        f.records[i][:] = r
            except (TypeError, ValueError) as e:
                raise CardOSError("card image: EF %s: %s" % (key, e), name="IMAGE_CORRUPT")
        for key, value in pins.items():
            try:
                ref = int(key, 16)
            except ValueError:
                raise CardOSError("card image: bad PIN reference %r" % key, name="IMAGE_CORRUPT")
            if ref in self.pins:
                if not isinstance(value, dict):
                    raise CardOSError("card image: PIN %s" % key, name="IMAGE_CORRUPT")
                self.pins[ref].load_state(value)
        self.nv = nv

    def save(self):
        """Write the non-volatile state to the card image now (no-op without one)."""
        if self.image is not None:
            self.image.save(self.image_key, self.state())

    def close(self):
        with self.lock:
            self.save()
            self.closed = True

    # --- session events -----------------------------------------------------------------------

    def _reset_volatile(self):
        # ISO/IEC 7816-4 §5.1.1.2 / 7816-3 §6.2: after a reset only the basic channel is open,
        # the MF is current and no security status is set.
        self.channels = {0: Channel(0, self.mf)}
        for df in self.mf.walk():
            if df.is_df and df.applet is not None and hasattr(df.applet, "reset"):
                df.applet.reset(self)

    def event(self, name, **detail):
        """Record a session event (card.events) and apply what it means for the card.

        After the state method of the same name (see emu/cardos/session.py) the
        event is the same happening: recorded once.
        """
        with self.lock:
            self.session.record(name, detail, EVENT)
            self._apply(name, detail)

    def _apply(self, name, detail):
        if name == "power_on" or name == "reset_warm" or name == "reset_cold":
            self.powered = True
            self.protocol = None
            self._reset_volatile()
        elif name == "power_off":
            self.powered = False
            self.protocol = None
            self._reset_volatile()
        elif name == "pps":
            self.protocol = detail.get("protocol")

    def _method(self, name):
        with self.lock:
            self.session.record(name, {}, METHOD)
            self._apply(name, {})

    def power_on(self):
        self._method("power_on")
        return self.atr

    def power_off(self):
        self._method("power_off")

    def reset(self, warm=True):
        self._method("reset_warm" if warm else "reset_cold")
        return self.atr

    # --- APDU processing ------------------------------------------------------------------

    def count(self, ins):
        return self.counts.get(ins, 0)

    def process_apdu(self, apdu):
        """A whole command APDU in, response data + SW1 SW2 out. Never raises."""
        with self.lock:
            return self._process_apdu(bytes(apdu))

    def _process_apdu(self, apdu):
        self.session.activity()
        self.commands += 1
        if len(apdu) >= 2:
            self.counts[apdu[1]] = self.counts.get(apdu[1], 0) + 1
        self._gsm_mode = False
        ch = None
        try:
            try:
                cmd = CommandAPDU.parse(apdu)
            except APDUError:
                # ISO/IEC 7816-4 §5.1: Lc/Le not consistent with the body: wrong length
                return _sw_bytes(E.SW_WRONG_LENGTH)
            ch = self._channel_for(cmd)
            if cmd.ins != INS_GET_RESPONSE:
                ch.leftover = None
            return self._dispatch(ch, cmd)
        except CardStatus as st:
            if ch is not None and st.sw != 0x9000:
                ch.leftover = None
            sw = st.sw
            if self._gsm_mode:
                sw = st.gsm if st.gsm is not None else gsm_sw(sw)
            return _sw_bytes(sw)
        except CardOSError:
            # the card image could not be written: ISO/IEC 7816-4 §5.6 memory failure
            return _sw_bytes(0x6581)

    def _channel_for(self, cmd):
        """Decode CLA (ISO/IEC 7816-4 §5.4.1, TS 102 221 §10.1.1); the channel object."""
        cla = cmd.cla
        ins = cmd.ins
        if cla == 0xFF:
            fail(E.SW_CLA_NOT_SUPPORTED)     # FF is PPS, never a class
        if cla == CLA_GSM and self.gsm:
            self._gsm_mode = True
            if (ins & 0xF0) == 0x60 or (ins & 0xF0) == 0x90:
                fail(E.SW_INS_NOT_SUPPORTED)
            return self.channels[0]
        b8_6 = cla >> 5
        if b8_6 == 0 or b8_6 == 4:
            # first interindustry values 0X (and the UICC's 8X): b5 chaining, b4-b3 SM, b2-b1 channel
            sm = (cla >> 2) & 0x03
            chan = cla & 0x03
        elif b8_6 == 2 or b8_6 == 3 or b8_6 == 6:
            # further interindustry values 4X-7X (and CX-DX): b6 SM, b5 chaining,
            # b4-b1 channel 4..19
            sm = (cla >> 5) & 0x01
            chan = 4 + (cla & 0x0F)
        else:
            fail(E.SW_CLA_NOT_SUPPORTED)
        if (cla & 0x80) and not self.proprietary_class:
            fail(E.SW_CLA_NOT_SUPPORTED)
        if (ins & 0xF0) == 0x60 or (ins & 0xF0) == 0x90:
            fail(E.SW_INS_NOT_SUPPORTED)     # ISO/IEC 7816-3 §10.3.2: invalid INS
        if sm:
            fail(E.SW_SM_NOT_SUPPORTED)
        if chan >= self.max_channels or chan not in self.channels:
            fail(E.SW_CHANNEL_NOT_SUPPORTED)
        return self.channels[chan]

    def _dispatch(self, ch, cmd):
        if cmd.extended and not self.extended:
            fail(E.SW_WRONG_LENGTH)
        adf = ch.df.adf()
        if adf is not None and adf.applet is not None and not self._gsm_mode:
            r = adf.applet.process(self, ch, cmd)
            if r is not None:
                return bytes(r)
        ins = cmd.ins
        if self._gsm_mode:
            return self._dispatch_gsm(ch, cmd)
        proprietary = bool(cmd.cla & 0x80)
        if cmd.cla & 0x10:
            fail(E.SW_CHAINING_NOT_SUPPORTED)
        if proprietary:
            # TS 102 221 §10.1.1: the UICC's own commands use class 8X/CX
            if ins == INS_STATUS:
                return self._status(ch, cmd)
            if ins in _INTERINDUSTRY:
                fail(E.SW_CLA_NOT_SUPPORTED)
            fail(E.SW_INS_NOT_SUPPORTED)
        handler = _INTERINDUSTRY.get(ins)
        if handler is None:
            if ins == INS_STATUS:
                fail(E.SW_CLA_NOT_SUPPORTED)
            fail(E.SW_INS_NOT_SUPPORTED)
        return handler(self, ch, cmd)

    # --- answers ------------------------------------------------------------------------------

    def reply(self, ch, cmd, data, sw=0x9000):
        """``data`` + SW for ``cmd``: at most Ne bytes, the rest behind 61xx for GET RESPONSE."""
        data = bytes(data)
        if not data:
            return _sw_bytes(sw)
        ne = cmd.ne or 0
        if len(data) <= ne:
            ch.leftover = None
            return data + _sw_bytes(sw)
        # ISO/IEC 7816-4 §5.1.3 / 7816-3 §12.2: announce what did not fit (or what
        # a command without Le produced) with 61xx
        ch.leftover = (data[ne:], sw)
        rest = len(data) - ne
        return data[:ne] + bytes((0x61, rest if rest < 256 else 0))

    def _get_response(self, ch, cmd):
        # ISO/IEC 7816-4 §7.6.1
        if cmd.p1 or cmd.p2:
            fail(E.SW_WRONG_P1P2)
        if cmd.data:
            fail(E.SW_WRONG_LENGTH)
        if ch.leftover is None:
            fail(E.SW_CONDITIONS)
        if cmd.ne is None:
            fail(E.SW_WRONG_LENGTH)
        data, sw = ch.leftover
        ne = cmd.ne
        wildcard = ne == 65536 or (ne == 256 and not cmd.extended)
        if ne > len(data) and not wildcard:
            n = len(data)
            return bytes((0x6C, n if n < 256 else 0))   # §5.6: exact length in SW2; data kept
        return self.reply(ch, cmd, data, sw)

    # --- security ------------------------------------------------------------------------

    def allowed(self, ch, ac):
        if ac == ALW:
            return True
        if ac == NEV:
            return False
        pin = self.pins.get(ac)
        if pin is None:
            return False
        if not pin.enabled:
            return True
        return ac in ch.verified

    def _check(self, ch, ac):
        if not self.allowed(ch, ac):
            fail(E.SW_SECURITY)

    def _enter(self, ch, df, ef):
        """Make ``ef`` (or ``df`` itself) current on ``ch``; local PINs do not survive
        leaving their application (TS 102 221 §9.5.1)."""
        old = ch.df.adf()
        new = df.adf()
        if old is not new:
            ch.verified = set(r for r in ch.verified if not (r & 0x80))
            ch.applet_state = {}
        ch.df = df
        ch.ef = ef
        ch.record = 0

    # --- SELECT -------------------------------------------------------------------------------

    def _find_fid(self, ch, fid):
        # TS 102 221 §8.4.1 / TS 51.011 §6.5: the MF, the current ADF (7FFF), the current DF,
        # its children, its parent and the parent's other DFs.
        if fid == FID_MF:
            return self.mf
        cur = ch.df
        if fid == FID_CURRENT_ADF:
            return cur.adf()
        if cur.fid == fid:
            return cur
        c = cur.child(fid)
        if c is not None:
            return c
        parent = cur.parent
        if parent is not None:
            if parent.fid == fid:
                return parent
            s = parent.child(fid)
            if s is not None and s.is_df:
                return s
        return None

    def _walk_path(self, start, data):
        if len(data) < 2 or len(data) % 2:
            fail(E.SW_NC_INCONSISTENT_P1P2)
        f = start
        for i in range(0, len(data), 2):
            fid = (data[i] << 8) | data[i + 1]
            if i == 0 and fid == FID_MF and start is self.mf:
                continue
            if not f.is_df:
                fail(E.SW_FILE_NOT_FOUND)
            f = f.child(fid)
            if f is None:
                fail(E.SW_FILE_NOT_FOUND)
        return f

    def _adfs(self):
        return [f for f in self.mf.walk() if f.is_df and f.aid is not None]

    def _select_target(self, ch, cmd):
        p1 = cmd.p1
        data = cmd.data
        if p1 == 0x00:
            if not data:
                return self.mf            # §11.1.1: P1-P2 0000, no data: the MF
            if len(data) != 2:
                fail(E.SW_NC_INCONSISTENT_P1P2)
            f = self._find_fid(ch, (data[0] << 8) | data[1])
        elif p1 == 0x01 or p1 == 0x02:
            if len(data) != 2:
                fail(E.SW_NC_INCONSISTENT_P1P2)
            f = ch.df.child((data[0] << 8) | data[1])
            if f is not None and f.is_df != (p1 == 0x01):
                f = None
        elif p1 == 0x03:
            if data:
                fail(E.SW_NC_INCONSISTENT_P1P2)
            f = ch.df.parent
        elif p1 == 0x04:
            if not data:
                fail(E.SW_WRONG_LENGTH)
            if len(data) > 16:
                fail(E.SW_NC_INCONSISTENT_P1P2)
            # §11.1.1: DF name, possibly right-truncated; b2-b1 of P2 first/next occurrence
            matches = [a for a in self._adfs() if a.aid[:len(data)] == data]
            occurrence = cmd.p2 & 0x03
            f = None
            if occurrence == 0x00:
                f = matches[0] if matches else None
            elif occurrence == 0x02:
                if ch.aid_match in matches:
                    i = matches.index(ch.aid_match) + 1
                    f = matches[i] if i < len(matches) else None
                else:
                    f = matches[0] if matches else None
            else:
                fail(E.SW_WRONG_P1P2)
            if f is not None:
                ch.aid_match = f
        elif p1 == 0x08 or p1 == 0x09:
            f = self._walk_path(self.mf if p1 == 0x08 else ch.df, data)
        else:
            fail(E.SW_WRONG_P1P2)
        if f is None:
            fail(E.SW_FILE_NOT_FOUND)
        return f

    def _select(self, ch, cmd):
        p2 = cmd.p2
        if p2 & 0xF0 or (p2 & 0x03 and cmd.p1 != 0x04):
            fail(E.SW_WRONG_P1P2)
        f = self._select_target(ch, cmd)
        if f.is_df:
            self._enter(ch, f, None)
        else:
            self._enter(ch, f.parent, f)
        what = p2 & 0x0C
        if what == 0x0C:
            return _sw_bytes(0x9000)
        if f.is_df and f.applet is not None and hasattr(f.applet, "select"):
            custom = f.applet.select(self, ch)
            if custom is not None:
                return self.reply(ch, cmd, custom)
        if what == 0x04:
            return self.reply(ch, cmd, self.fcp(f))
        if what == 0x08:
            return self.reply(ch, cmd, tlv(0x64, b""))
        return self.reply(ch, cmd, self.fci(f))

    def _pin_refs(self, df):
        refs = list(df.pins)
        return [r for r in refs if r in self.pins]

    def _pin_enabled(self, ref):
        return self.pins[ref].enabled

    def fcp(self, f):
        return fcp(f, self._pin_refs(f) if f.is_df else (), self._pin_enabled)

    def fci(self, f):
        return fci(f, self._pin_refs(f) if f.is_df else (), self._pin_enabled)

    def _status(self, ch, cmd):
        # TS 102 221 §11.1.2: P1 00/01/02, P2 00 FCP, 01 DF name, 0C nothing
        if cmd.p1 > 0x02:
            fail(E.SW_WRONG_P1P2)
        if cmd.data:
            fail(E.SW_WRONG_LENGTH)
        df = ch.df
        if cmd.p2 == 0x00:
            return self.reply(ch, cmd, self.fcp(df))
        if cmd.p2 == 0x01:
            adf = df.adf()
            if adf is None:
                return self.reply(ch, cmd, tlv(0x84, b""))
            return self.reply(ch, cmd, tlv(0x84, adf.aid))
        if cmd.p2 == 0x0C:
            return _sw_bytes(0x9000)
        fail(E.SW_WRONG_P1P2)

    # --- BINARY -------------------------------------------------------------------------------

    def _binary_target(self, ch, cmd):
        p1 = cmd.p1
        if p1 & 0x80:
            # §7.2.2: b8 of P1 set: SFI in b5-b1, offset in P2
            if p1 & 0x60:
                fail(E.SW_WRONG_P1P2)
            ef = ch.df.child_by_sfi(p1 & 0x1F)
            if ef is None:
                fail(E.SW_FILE_NOT_FOUND)
            self._enter(ch, ch.df, ef)
            offset = cmd.p2
        else:
            ef = ch.ef
            if ef is None:
                fail(E.SW_NO_CURRENT_EF)
            offset = (p1 << 8) | cmd.p2
        if ef.structure != STRUCT_TRANSPARENT:
            fail(E.SW_INCOMPATIBLE_FILE)
        return ef, offset

    def _read_binary(self, ch, cmd):
        if cmd.data:
            fail(E.SW_WRONG_LENGTH)
        ef, offset = self._binary_target(ch, cmd)
        self._check(ch, ef.read_ac)
        if cmd.ne is None:
            fail(E.SW_WRONG_LENGTH)
        if offset >= ef.size:
            fail(E.SW_WRONG_P1P2_OFFSET)
        ne = cmd.ne
        chunk = bytes(ef.data[offset:offset + ne])
        if self._gsm_mode:
            if len(chunk) < ne:
                fail(E.GSM_OUT_OF_RANGE, E.GSM_OUT_OF_RANGE)
            return chunk + _sw_bytes(0x9000)
        wildcard = ne == 65536 or (ne == 256 and not cmd.extended)
        if len(chunk) < ne and not wildcard:
            return chunk + _sw_bytes(E.SW_EOF_BEFORE_NE)
        return chunk + _sw_bytes(0x9000)

    def _update_binary(self, ch, cmd):
        if not cmd.data:
            fail(E.SW_WRONG_LENGTH)
        ef, offset = self._binary_target(ch, cmd)
        self._check(ch, ef.update_ac)
        if offset >= ef.size:
            fail(E.SW_WRONG_P1P2_OFFSET)
        if offset + len(cmd.data) > ef.size:
            fail(E.SW_WRONG_LENGTH, E.GSM_OUT_OF_RANGE)
        old = bytes(ef.data[offset:offset + len(cmd.data)])
        ef.data[offset:offset + len(cmd.data)] = cmd.data
        try:
            self.save()
        except CardOSError:
            ef.data[offset:offset + len(cmd.data)] = old
            raise
        return _sw_bytes(0x9000)

    # --- RECORD -------------------------------------------------------------------------------

    def _record_target(self, ch, cmd):
        p2 = cmd.p2
        sfi = p2 >> 3
        if sfi == 0x1F:
            fail(E.SW_WRONG_P1P2)
        if sfi:
            ef = ch.df.child_by_sfi(sfi)
            if ef is None:
                fail(E.SW_FILE_NOT_FOUND)
            self._enter(ch, ch.df, ef)
        else:
            ef = ch.ef
            if ef is None:
                fail(E.SW_NO_CURRENT_EF)
        if ef.structure == STRUCT_TRANSPARENT:
            fail(E.SW_INCOMPATIBLE_FILE)
        return ef

    def _record_number(self, ch, cmd, ef):
        """(record number, whether the record pointer moves) for P1/P2 (§7.3.3, TS 102 221 §11.1.5)."""
        mode = cmd.p2 & 0x07
        n = ef.count
        cyclic = ef.structure == STRUCT_CYCLIC
        if mode == 0x04:
            rec = cmd.p1 or ch.record
            if rec == 0 or rec > n:
                fail(E.SW_RECORD_NOT_FOUND)
            return rec, False
        if mode == 0x02 or mode == 0x03:
            if cmd.p1:
                fail(E.SW_WRONG_P1P2)
            cur = ch.record
            if mode == 0x02:
                rec = 1 if cur == 0 else cur + 1
                if rec > n:
                    if not cyclic:
                        fail(E.SW_RECORD_NOT_FOUND)
                    rec = 1
            else:
                rec = n if cur == 0 else cur - 1
                if rec == 0:
                    if not cyclic:
                        fail(E.SW_RECORD_NOT_FOUND)
                    rec = n
            return rec, True
        fail(E.SW_WRONG_P1P2)

    def _read_record(self, ch, cmd):
        if cmd.data:
            fail(E.SW_WRONG_LENGTH)
        ef = self._record_target(ch, cmd)
        self._check(ch, ef.read_ac)
        if cmd.ne is None:
            fail(E.SW_WRONG_LENGTH)
        rec, moves = self._record_number(ch, cmd, ef)
        data = bytes(ef.records[rec - 1])
        ne = cmd.ne
        wildcard = ne == 65536 or (ne == 256 and not cmd.extended)
        if ne != len(data) and not (wildcard and not self._gsm_mode):
            # TS 102 221 §10.2.1.2: 6Cxx with the record length (51.011: 67XX)
            fail(0x6C00 | len(data), E.SW_WRONG_LENGTH)
        if moves:
            ch.record = rec
        return data + _sw_bytes(0x9000)

    def _update_record(self, ch, cmd):
        if not cmd.data:
            fail(E.SW_WRONG_LENGTH)
        ef = self._record_target(ch, cmd)
        self._check(ch, ef.update_ac)
        if len(cmd.data) != ef.record_length:
            fail(E.SW_WRONG_LENGTH)
        rec, moves = self._record_number(ch, cmd, ef)
        old = bytes(ef.records[rec - 1])
        ef.records[rec - 1][:] = cmd.data
        try:
            self.save()
        except CardOSError:
            ef.records[rec - 1][:] = old
            raise
        if moves:
            ch.record = rec
        return _sw_bytes(0x9000)

    # --- GET DATA -------------------------------------------------------------------------------

    def _get_data(self, ch, cmd):
        # ISO/IEC 7816-4 §7.4.2: P1-P2 is the tag of the data object
        if cmd.data:
            fail(E.SW_WRONG_LENGTH)
        tag = (cmd.p1 << 8) | cmd.p2
        value = self.data_objects.get(tag)
        if value is None:
            fail(E.SW_REF_NOT_FOUND)
        if cmd.ne is None:
            fail(E.SW_WRONG_LENGTH)
        return self.reply(ch, cmd, value)

    # --- PINs ---------------------------------------------------------------------------------

    def _pin_for(self, ref):
        pin = self.pins.get(ref)
        if pin is None:
            fail(E.SW_REF_NOT_FOUND)
        return pin

    def _wrong(self, pin, puk=False):
        left = pin.puk_remaining if puk else pin.remaining
        return 0x63C0 | (left if left < 15 else 15)

    def _verify(self, ch, cmd):
        # ISO/IEC 7816-4 §7.5.6, TS 102 221 §11.1.9
        if cmd.p1 != 0x00:
            fail(E.SW_WRONG_P1P2)
        pin = self._pin_for(cmd.p2)
        if not cmd.data:
            if self._gsm_mode:
                fail(E.SW_WRONG_LENGTH)
            if pin.blocked:
                fail(E.SW_BLOCKED)
            if pin.ref in ch.verified or not pin.enabled:
                return _sw_bytes(0x9000)
            fail(self._wrong(pin))
        if not pin.well_formed(cmd.data):
            fail(E.SW_WRONG_LENGTH)
        if self._gsm_mode and not pin.enabled:
            fail(E.SW_CONDITIONS, E.GSM_CHV_STATUS)
        if pin.blocked:
            fail(E.SW_BLOCKED)
        if pin.verify(cmd.data):
            ch.verified.add(pin.ref)
            return _sw_bytes(0x9000)
        ch.verified.discard(pin.ref)
        fail(self._wrong(pin))

    def _change(self, ch, cmd):
        # §7.5.7: P1 00, data = current value || new value
        if cmd.p1 != 0x00:
            fail(E.SW_WRONG_P1P2)
        pin = self._pin_for(cmd.p2)
        n = pin.length
        if len(cmd.data) != 2 * n:
            fail(E.SW_WRONG_LENGTH)
        old = cmd.data[:n]
        new = cmd.data[n:]
        if not pin.well_formed(old) or not pin.well_formed(new):
            fail(E.SW_WRONG_DATA, E.SW_WRONG_LENGTH)
        if not pin.enabled:
            fail(E.SW_CONDITIONS)
        if pin.blocked:
            fail(E.SW_BLOCKED)
        if pin.change(old, new):
            ch.verified.add(pin.ref)
            return _sw_bytes(0x9000)
        ch.verified.discard(pin.ref)
        fail(self._wrong(pin))

    def _enable_disable(self, ch, cmd):
        # TS 102 221 §11.1.10 / §11.1.11: data = the PIN; 51.011 DISABLE/ENABLE CHV
        enable = cmd.ins == INS_ENABLE
        if cmd.p1 != 0x00:
            fail(E.SW_WRONG_P1P2)
        pin = self._pin_for(cmd.p2)
        if not pin.well_formed(cmd.data):
            fail(E.SW_WRONG_LENGTH)
        if pin.enabled == enable:
            fail(E.SW_CONDITIONS, E.GSM_CHV_STATUS)
        if pin.blocked:
            fail(E.SW_BLOCKED)
        if not pin.verify(cmd.data):
            ch.verified.discard(pin.ref)
            fail(self._wrong(pin))
        pin.set_enabled(enable)
        if enable:
            ch.verified.add(pin.ref)
        return _sw_bytes(0x9000)

    def _reset_retry(self, ch, cmd):
        # §7.5.10: P1 00 PUK || new PIN, P1 01 PUK only
        if cmd.p1 not in (0x00, 0x01):
            fail(E.SW_WRONG_P1P2)
        pin = self._pin_for(cmd.p2)
        n = pin.length
        want = 2 * n if cmd.p1 == 0x00 else n
        if len(cmd.data) != want:
            fail(E.SW_WRONG_LENGTH)
        if pin.puk is None:
            fail(E.SW_REF_DATA_NOT_USABLE)
        puk = cmd.data[:n]
        new = cmd.data[n:] if cmd.p1 == 0x00 else None
        if new is not None and not pin.well_formed(new):
            fail(E.SW_WRONG_DATA, E.SW_WRONG_LENGTH)
        if pin.puk_blocked:
            fail(E.SW_BLOCKED)
        if pin.unblock(puk, new):
            ch.verified.add(pin.ref)
            return _sw_bytes(0x9000)
        fail(self._wrong(pin, puk=True))

    # --- MANAGE CHANNEL -----------------------------------------------------------------------

    def _manage_channel(self, ch, cmd):
        # ISO/IEC 7816-4 §7.1.2
        if cmd.data:
            fail(E.SW_WRONG_LENGTH)
        if self.max_channels == 1:
            fail(E.SW_CHANNEL_NOT_SUPPORTED)
        if cmd.p1 == 0x00:
            if cmd.p2 == 0x00:
                free = [n for n in range(1, self.max_channels) if n not in self.channels]
                if not free:
                    fail(E.SW_CHANNEL_NOT_SUPPORTED)
                number = free[0]
                if cmd.ne is None:
                    fail(E.SW_WRONG_LENGTH)
            else:
                number = cmd.p2
                if number >= self.max_channels:
                    fail(E.SW_WRONG_P1P2)
                if number in self.channels:
                    fail(E.SW_CONDITIONS)
            new = Channel(number, self.mf)
            if ch.number != 0:
                # opened from a non-basic channel: the new one starts where that one is
                new.df = ch.df
            self.channels[number] = new
            if cmd.p2 == 0x00:
                return self.reply(ch, cmd, bytes((number,)))
            return _sw_bytes(0x9000)
        if cmd.p1 == 0x80:
            number = cmd.p2 if cmd.p2 else ch.number
            if number == 0:
                fail(E.SW_WRONG_P1P2)
            if number >= self.max_channels:
                fail(E.SW_WRONG_P1P2)
            if number not in self.channels:
                fail(E.SW_CHANNEL_NOT_SUPPORTED)
            del self.channels[number]
            return _sw_bytes(0x9000)
        fail(E.SW_WRONG_P1P2)

    # --- the GSM SIM face (TS 51.011 §9) ------------------------------------------------------

    def _chv_ref(self, p2):
        # §9.2.9: CHV1 = 01, CHV2 = 02; the UICC's PIN1 (01) and PIN2 (81)
        if p2 == 0x01:
            return 0x01
        if p2 == 0x02:
            return 0x81
        fail(E.SW_WRONG_P1P2)

    def _chv_status(self, which):
        ref = 0x01 if which.endswith("1") else 0x81
        pin = self.pins.get(ref)
        if pin is None:
            return 0x00
        left = pin.puk_remaining if which.startswith("UNBLOCK") else pin.remaining
        if which.startswith("UNBLOCK") and pin.puk is None:
            return 0x00
        return 0x80 | (left if left < 15 else 15)

    def gsm_response(self, f):
        pin1 = self.pins.get(0x01)
        return gsm_response(f, self._chv_status, chv1_disabled=(pin1 is not None and not pin1.enabled))

    def _dispatch_gsm(self, ch, cmd):
        ins = cmd.ins
        if ins == INS_SELECT:
            # §9.2.1: P1 P2 00 00, P3 02, data = FID; answer 9F + length of the response
            if cmd.p1 or cmd.p2:
                fail(E.SW_WRONG_P1P2)
            if len(cmd.data) != 2:
                fail(E.SW_WRONG_LENGTH)
            fid = (cmd.data[0] << 8) | cmd.data[1]
            f = self._find_fid(ch, fid)
            if f is None or (f.is_df and f.aid is not None):
                fail(E.SW_FILE_NOT_FOUND)
            if f.is_df:
                self._enter(ch, f, None)
            else:
                self._enter(ch, f.parent, f)
            resp = self.gsm_response(f)
            ch.leftover = (resp, 0x9000)
            return bytes((0x9F, len(resp)))
        if ins == INS_GET_RESPONSE:
            # §9.2.18: P3 may ask for less than what is available
            if cmd.p1 or cmd.p2:
                fail(E.SW_WRONG_P1P2)
            if cmd.data:
                fail(E.SW_WRONG_LENGTH)
            if ch.leftover is None:
                fail(E.SW_CONDITIONS, E.SW_NO_DIAGNOSIS)
            data, sw = ch.leftover
            ne = cmd.ne or 256
            if ne > len(data):
                fail(E.SW_WRONG_LENGTH)
            return data[:ne] + _sw_bytes(sw)
        if ins == INS_STATUS:
            if cmd.p1 or cmd.p2:
                fail(E.SW_WRONG_P1P2)
            resp = self.gsm_response(ch.df)
            ne = cmd.ne or 256
            return resp[:ne] + _sw_bytes(0x9000)
        if ins in (INS_READ_BINARY, INS_UPDATE_BINARY):
            if cmd.p1 & 0x80:
                fail(E.SW_WRONG_P1P2)   # no SFI in 51.011
            return _INTERINDUSTRY[ins](self, ch, cmd)
        if ins in (INS_READ_RECORD, INS_UPDATE_RECORD):
            if cmd.p2 & 0xF8:
                fail(E.SW_WRONG_P1P2)
            return _INTERINDUSTRY[ins](self, ch, cmd)
        if ins in (INS_VERIFY, INS_CHANGE, INS_DISABLE, INS_ENABLE):
            if cmd.p1:
                fail(E.SW_WRONG_P1P2)
            ref = self._chv_ref(cmd.p2)
            if ins in (INS_DISABLE, INS_ENABLE) and ref != 0x01:
                fail(E.SW_WRONG_P1P2)   # §9.2.11: only CHV1 can be disabled
            inner = CommandAPDU(0x00, ins, 0, ref, cmd.data, ne=cmd.ne)
            return _INTERINDUSTRY[ins](self, ch, inner)
        if ins == INS_RESET_RETRY:
            # §9.2.14 UNBLOCK CHV: P2 00 = CHV1, 02 = CHV2; data UNBLOCK CHV || new CHV
            if cmd.p1:
                fail(E.SW_WRONG_P1P2)
            if cmd.p2 == 0x00:
                ref = 0x01
            elif cmd.p2 == 0x02:
                ref = 0x81
            else:
                fail(E.SW_WRONG_P1P2)
            inner = CommandAPDU(0x00, ins, 0, ref, cmd.data, ne=cmd.ne)
            return self._reset_retry(ch, inner)
        fail(E.SW_INS_NOT_SUPPORTED)


_INTERINDUSTRY = {
    INS_SELECT: CardOS._select,
    INS_READ_BINARY: CardOS._read_binary,
    INS_UPDATE_BINARY: CardOS._update_binary,
    INS_READ_RECORD: CardOS._read_record,
    INS_UPDATE_RECORD: CardOS._update_record,
    INS_GET_RESPONSE: CardOS._get_response,
    INS_GET_DATA: CardOS._get_data,
    INS_VERIFY: CardOS._verify,
    INS_CHANGE: CardOS._change,
    INS_DISABLE: CardOS._enable_disable,
    INS_ENABLE: CardOS._enable_disable,
    INS_RESET_RETRY: CardOS._reset_retry,
    INS_MANAGE_CHANNEL: CardOS._manage_channel,
}

__all__ = ["CardOS", "Channel"]
