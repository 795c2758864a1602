"""The card's file system (ISO/IEC 7816-4 §5.3): MF, DFs (and ADFs), EFs.

Files are plain objects in a tree. An EF is transparent (a byte string) or
record-structured (linear fixed, or cyclic: records of one length). Access
conditions are ``ALW`` (always), ``NEV`` (never) or a PIN reference (int):
the operation is allowed once that PIN is verified on the channel, or while
the PIN is disabled.

Two EFs in different DFs may share their content (``link_of``): the USIM
shows its one EF ADN as 7F10/6F3A and as 7F10/5F3A/4F3A.

The FCP template (TS 102 221 §11.1.1.3, ISO/IEC 7816-4 §5.3.3) and the
TS 51.011 §9.2.1 GET RESPONSE answer are built here.
"""

from .errors import CardOSError

ALW = "ALW"
NEV = "NEV"

FID_MF = 0x3F00
FID_CURRENT_ADF = 0x7FFF

# TS 102 221 §11.1.1.4.3 / ISO/IEC 7816-4 Table 12: life cycle status "operational, activated".
LCSI_ACTIVATED = 0x05

STRUCT_TRANSPARENT = "transparent"
STRUCT_LINEAR = "linear"
STRUCT_CYCLIC = "cyclic"


def _check_fid(fid):
    if not isinstance(fid, int) or fid < 0 or fid > 0xFFFF:
        raise CardOSError("FID must be 0000..FFFF, not %r" % (fid,), name="BAD_FILE")


def _check_ac(ac):
    if ac == ALW or ac == NEV:
        return
    if isinstance(ac, int) and 0 < ac < 0x100:
        return
    raise CardOSError("access condition must be ALW, NEV or a PIN reference, not %r" % (ac,),
                      name="BAD_FILE")


def tlv(tag, value):
    """BER-TLV with a one- or two-byte tag and a definite length (ISO/IEC 7816-4 §5.2)."""
    value = bytes(value)
    n = len(value)
    if tag > 0xFF:
        t = bytes((tag >> 8, tag & 0xFF))
    else:
        t = bytes((tag,))
    if n < 0x80:
        ln = bytes((n,))
    elif n < 0x100:
        ln = bytes((0x81, n))
    else:
        ln = bytes((0x82, n >> 8, n & 0xFF))
    return t + ln + value


class CardFile:
    is_df = False

    def __init__(self, fid, name=None, sfi=None):
        _check_fid(fid)
        if sfi is not None and not (1 <= sfi <= 30):
            raise CardOSError("SFI must be 1..30, not %r" % (sfi,), name="BAD_FILE")
        self.fid = fid
        self.name = name
        self.sfi = sfi
        self.parent = None
        self.lcsi = LCSI_ACTIVATED

    def path(self):
        """The FIDs from the MF down to this file, e.g. (0x3F00, 0x7F10, 0x6F3A)."""
        out = []
        f = self
        while f is not None:
            out.append(f.fid)
            f = f.parent
        out.reverse()
        return tuple(out)

    def path_key(self):
        return "/".join("%04X" % fid for fid in self.path())

    def df(self):
        """The DF this file is in (itself for a DF)."""
        return self if self.is_df else self.parent

    def adf(self):
        """The ADF this file belongs to, or None."""
        f = self
        while f is not None:
            if f.is_df and f.aid is not None:
                return f
            f = f.parent
        return None


class DF(CardFile):
    """A dedicated file; with ``aid`` it is an application DF (ADF) selectable by name."""

    is_df = True

    def __init__(self, fid, name=None, aid=None, applet=None, pins=()):
        CardFile.__init__(self, fid, name)
        if aid is not None:
            aid = bytes(aid)
            if not 1 <= len(aid) <= 16:
                raise CardOSError("an AID has 1..16 bytes", name="BAD_FILE")
        self.aid = aid
        self.applet = applet
        self.pins = tuple(pins)   # PIN references shown in the PIN status template
        self.children = []

    def add(self, f):
        for c in self.children:
            if c.fid == f.fid:
                raise CardOSError("%04X already exists under %s" % (f.fid, self.path_key()),
                                  name="FILE_EXISTS")
            if f.sfi is not None and getattr(c, "sfi", None) == f.sfi:
                raise CardOSError("SFI %d already used under %s" % (f.sfi, self.path_key()),
                                  name="FILE_EXISTS")
        if f.fid == FID_MF or f.fid == FID_CURRENT_ADF or f.fid == 0xFFFF:
            raise CardOSError("FID %04X is reserved" % f.fid, name="BAD_FILE")
        f.parent = self
        self.children.append(f)
        return f

    def child(self, fid):
        for c in self.children:
            if c.fid == fid:
                return c
        return None

    def child_by_sfi(self, sfi):
        for c in self.children:
            if not c.is_df and c.sfi == sfi:
                return c
        return None

    def walk(self):
        """This DF and every file below it, depth first."""
        yield self
        for c in self.children:
            if c.is_df:
                for f in c.walk():
                    yield f
            else:
                yield c


class EF(CardFile):
    structure = None

    def __init__(self, fid, name=None, sfi=None, read=ALW, update=ALW, persistent=True):
        CardFile.__init__(self, fid, name, sfi)
        _check_ac(read)
        _check_ac(update)
        self.read_ac = read
        self.update_ac = update
        self.persistent = persistent
        self.link_of = None


class TransparentEF(EF):
    structure = STRUCT_TRANSPARENT

    def __init__(self, fid, size=None, data=b"", fill=0xFF, **kw):
        EF.__init__(self, fid, **kw)
        data = bytes(data)
        if size is None:
            size = len(data)
        if size < 1 or size > 0xFFFF or len(data) > size:
            raise CardOSError("transparent EF %04X: size %r, %d data bytes" % (fid, size, len(data)),
                              name="BAD_FILE")
        self.data = bytearray(data + bytes((fill,)) * (size - len(data)))

    @property
    def size(self):
        return len(self.data)

    def linked(self, fid, **kw):
        """Another EF (for another DF) with this one's content."""
        other = TransparentEF(fid, size=1, **kw)
        other.data = self.data
        other.link_of = self
        other.persistent = False
        return other


class RecordEF(EF):
    """Linear fixed (or cyclic) EF: ``count`` records of ``record_length`` bytes."""

    def __init__(self, fid, record_length, count, records=(), fill=0xFF, cyclic=False, **kw):
        EF.__init__(self, fid, **kw)
        if not (1 <= record_length <= 255) or not (1 <= count <= 254):
            raise CardOSError("record EF %04X: record length %r, %r records"
                              % (fid, record_length, count), name="BAD_FILE")
        records = list(records)
        if len(records) > count:
            raise CardOSError("record EF %04X: %d records given, %d fit" % (fid, len(records), count),
                              name="BAD_FILE")
        self.structure = STRUCT_CYCLIC if cyclic else STRUCT_LINEAR
        self.record_length = record_length
        self.records = []
        for i in range(count):
            rec = bytes(records[i]) if i < len(records) else b""
            if len(rec) > record_length:
                raise CardOSError("record %d of EF %04X is longer than %d bytes"
                                  % (i + 1, fid, record_length), name="BAD_FILE")
            self.records.append(bytearray(rec + bytes((fill,)) * (record_length - len(rec))))

    @property
    def count(self):
        return len(self.records)

    @property
    def size(self):
        return self.record_length * len(self.records)

    def linked(self, fid, **kw):
        other = RecordEF(fid, self.record_length, 1, cyclic=(self.structure == STRUCT_CYCLIC), **kw)
        other.records = self.records
        other.link_of = self
        other.persistent = False
        return other


# --- FCP (TS 102 221 §11.1.1.3, ISO/IEC 7816-4 §5.3.3) --------------------------------------

def _descriptor(f):
    # File descriptor byte (ISO/IEC 7816-4 Table 14): b7 shareable, b6-b4 111 for a DF,
    # b3-b1 the EF structure; data coding byte 21 (TS 102 221 §11.1.1.4.3).
    if f.is_df:
        return b"\x78\x21"
    if f.structure == STRUCT_TRANSPARENT:
        return b"\x41\x21"
    kind = 0x46 if f.structure == STRUCT_CYCLIC else 0x42
    return bytes((kind, 0x21, 0x00, f.record_length, f.count))


def _sc_byte(ac):
    # Compact security attribute (ISO/IEC 7816-4 §5.4.3.1): 00 always, FF never; a PIN-protected
    # operation is shown as needing security environment number 1 (a simplification).
    if ac == ALW:
        return 0x00
    if ac == NEV:
        return 0xFF
    return 0x01


def _security(f):
    if f.is_df:
        return tlv(0x8C, b"\x00")
    # access mode byte: b2 UPDATE, b1 READ; the SC bytes follow in the order b7..b1
    return tlv(0x8C, bytes((0x03, _sc_byte(f.update_ac), _sc_byte(f.read_ac))))


def pin_status_template(pin_refs, pin_enabled):
    """C6 PIN status template DO (TS 102 221 §9.5.2): PS_DO bitmap, then the key references."""
    if not pin_refs:
        return b""
    bitmap = bytearray((len(pin_refs) + 7) // 8)
    body = b""
    for i, ref in enumerate(pin_refs):
        if pin_enabled(ref):
            bitmap[i // 8] |= 0x80 >> (i % 8)
        body += tlv(0x83, bytes((ref,)))
    return tlv(0xC6, tlv(0x90, bytes(bitmap)) + body)


def fcp(f, pin_refs=(), pin_enabled=None):
    """The FCP template 62 of a file."""
    body = tlv(0x82, _descriptor(f)) + tlv(0x83, bytes((f.fid >> 8, f.fid & 0xFF)))
    if f.is_df and f.aid is not None:
        body += tlv(0x84, f.aid)
    body += tlv(0x8A, bytes((f.lcsi,)))
    body += _security(f)
    if f.is_df:
        if pin_refs and pin_enabled is not None:
            body += pin_status_template(pin_refs, pin_enabled)
    else:
        size = f.size
        body += tlv(0x80, bytes((size >> 8, size & 0xFF)))
        if f.sfi is not None:
            body += tlv(0x88, bytes((f.sfi << 3,)))
    return tlv(0x62, body)


def fci(f, pin_refs=(), pin_enabled=None):
    """FCI template 6F (ISO/IEC 7816-4 §5.3.3) wrapping the FCP's data objects."""
    inner = fcp(f, pin_refs, pin_enabled)
    return tlv(0x6F, inner[2:] if inner[1] < 0x80 else inner[3:])


# --- TS 51.011 §9.2.1 GET RESPONSE -----------------------------------------------------------

def _gsm_ac_nibble(ac):
    # §9.3: 0 ALW, 1 CHV1, 2 CHV2, F NEV
    if ac == ALW:
        return 0x0
    if ac == NEV:
        return 0xF
    return 0x1 if ac == 0x01 else 0x2


def gsm_response(f, chv_status=None, chv1_disabled=False, free_memory=0):
    """The 51.011 response to SELECT of ``f`` (read with GET RESPONSE after 9Fxx).

    ``chv_status(chv)`` gives the status byte of CHV1/CHV2 and their UNBLOCK
    CHVs (b8 initialised, b4-b1 remaining attempts) for the DF answer.
    """
    fid = bytes((f.fid >> 8, f.fid & 0xFF))
    if f.is_df:
        ndf = 0
        nef = 0
        for c in f.children:
            if c.is_df:
                ndf += 1
            else:
                nef += 1
        out = bytearray(22)
        out[2] = (free_memory >> 8) & 0xFF
        out[3] = free_memory & 0xFF
        out[4:6] = fid
        out[6] = 0x01 if f.fid == FID_MF else 0x02     # type of file: MF / DF
        out[12] = 22 - 13                              # length of the GSM specific data
        # file characteristics: b1 clock stop allowed, b8 CHV1 disabled
        out[13] = 0x01 | (0x80 if chv1_disabled else 0x00)
        out[14] = ndf
        out[15] = nef
        out[16] = 4                                    # CHVs, UNBLOCK CHVs and admin codes
        if chv_status is not None:
            out[18] = chv_status("CHV1")
            out[19] = chv_status("UNBLOCK1")
            out[20] = chv_status("CHV2")
            out[21] = chv_status("UNBLOCK2")
        return bytes(out)
    out = bytearray(15)
    size = f.size
    out[2] = size >> 8
    out[3] = size & 0xFF
    out[4:6] = fid
    out[6] = 0x04                                      # type of file: EF
    out[8] = (_gsm_ac_nibble(f.read_ac) << 4) | _gsm_ac_nibble(f.update_ac)
    out[9] = 0xFF                                      # INCREASE: never
    out[10] = 0x11                                     # REHABILITATE / INVALIDATE: CHV1
    out[11] = 0x01                                     # file status: not invalidated
    out[12] = 2                                        # length of the following data
    if f.structure == STRUCT_TRANSPARENT:
        out[13] = 0x00
        out[14] = 0x00
    else:
        out[13] = 0x03 if f.structure == STRUCT_CYCLIC else 0x01
        out[14] = f.record_length
    return bytes(out)
