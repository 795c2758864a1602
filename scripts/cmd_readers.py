"""`ccidkit readers`: the readers, named as pcsc-lite names them.

    ccidkit readers                                   # real readers (pyusb + libusb)
    ccidkit readers --emulated gemalto-pctwin --card usim
    ccidkit readers --emulated sysmosimbank-96 --json # 96 entries: 12 readers x 8 slots
    ccidkit readers --profiles                        # the emulated reader profiles

One line (one JSON object) per slot: ``Name XX YY`` where XX is the reader
number pcsc-lite gives (the lowest free one, in enumeration order) and YY
the slot, then whether a card is there and its ATR.

Exit status: 0 readers listed, 1 no reader (the message says why), 2 usage
error (unknown profile or card).
"""

import json
import sys

from ccidkit.core.hexutil import to_hex
from ccidkit.core.host import reader_options as ro


def register(sub):
    p = sub.add_parser("readers", help="list smart card readers (real or emulated)",
                       description="List the readers with pcsc-lite style names, "
                                   "their cards and ATRs.")
    ro.add_reader_arguments(p)
    p.add_argument("--json", action="store_true", help="machine-readable output (a list)")
    p.add_argument("--profiles", action="store_true",
                   help="list the emulated reader profiles and exit")
    p.set_defaults(func=run)


def describe(mgr, names):
    """One dict per reader name: number, slot, USB identity, card and ATR."""
    out = []
    profiles = {}
    for r in getattr(mgr, "emulated", None) or []:
        profiles[r.serial] = r.profile_id
    for i, name in enumerate(names):
        e, slot = mgr.find(name)
        reader = e.reader
        t = reader.transport
        s = reader.slots[slot]
        item = {
            "index": i,
            "name": name,
            "reader_number": e.index,
            "slot": slot,
            "vid": "%04X" % t.vid,
            "pid": "%04X" % t.pid,
            "serial": t.serial,
            "bus_path": t.bus_path,
            "exchange_level": reader.level_name,
            "card_present": bool(s.present),
            "atr": to_hex(s.atr) if s.atr else None,
            "emulated": bool(profiles),
        }
        if profiles:
            item["profile"] = profiles.get(t.serial)
        out.append(item)
    return out


def run(args):
    if args.profiles:
        for pid in ro.profile_ids():
            print(pid)
        return 0
    try:
        mgr = ro.open_manager(args)
        names = ro.reader_names(mgr)
        if not names:
            raise ro.no_readers_error(mgr)
    except ro.ReaderOptionsError as e:
        sys.stderr.write("ccidkit readers: %s\n" % e.message)
        return 1 if e.name in ("NO_READERS", "NO_LIBUSB") else 2
    items = describe(mgr, names)
    if args.json:
        print(json.dumps(items, indent=2))
        return 0
    for it in items:
        print("%d: %s" % (it["index"], it["name"]))
        if it["card_present"]:
            print("   card: %s" % (("ATR " + it["atr"]) if it["atr"] else "present, mute"))
        else:
            print("   card: none")
    return 0
