"""Reader-level fault injection for the emulated CCID readers.

``reader.faults`` is a ``ReaderFaults``; each method arms one fault, which
the reader consumes when it applies (counts bound every fault):

  mute(slot)                      the card stops answering (ICC_MUTE after
                                  the waiting time) until unmute(slot)
  remove_mid_exchange(slot)       the next exchange on the slot loses the
                                  card half-way: ICC_MUTE, slot empty,
                                  NotifySlotChange
  unplug_on_command(n=1)          the reader disappears when its n-th next
                                  command arrives (ReaderGone, ENODEV)
  corrupt_t1(slot, to, times)     damage the EDC of T=1 blocks (TPDU level)
  lose_t1(slot, to, times)        drop T=1 blocks (TPDU level)
  wtx_storm(slot, count)          the next command on the slot is answered
                                  with ``count`` time-extension answers first
  stale_bseq(times=1, mode)       the reader answers with an old bSeq:
                                  mode "replace" (the real answer is lost)
                                  or "duplicate" (the previous answer again,
                                  then the real one)
  stall(endpoint, times=1)        the endpoint ("bulk_in", "bulk_out",
                                  "interrupt_in", "control") answers STALL
                                  for its next ``times`` transfers, or until
                                  CLEAR_FEATURE(ENDPOINT_HALT)
  lose_notify(times=1)            NotifySlotChange messages are dropped
  overcurrent(slot)               the next IccPowerOn on the slot fails with
                                  HW_ERROR and RDR_to_PC_HardwareError
                                  (overcurrent, §6.3.2) on the interrupt pipe

T=1 block faults go through emu/card/link.py's FaultLink, so they act on the
very bytes the card engine and the host's T=1 engine exchange.
"""

from .card.link import Fault

ENDPOINTS = ("bulk_in", "bulk_out", "interrupt_in", "control")


class ReaderFaults:
    def __init__(self):
        self.muted = set()
        self.remove_next = {}          # slot -> True
        self.unplug_countdown = None
        self.t1_faults = {}            # slot -> [Fault]
        self.wtx = {}                  # slot -> count
        self.stale = 0
        self.stale_mode = "replace"
        self.stalls = {}               # endpoint -> remaining
        self.notify_lost = 0
        self.overcurrent_slots = set()
        self.fired = []                # (what, detail) in order

    # -- arming -------------------------------------------------------------
    def mute(self, slot=0):
        self.muted.add(slot)

    def unmute(self, slot=0):
        self.muted.discard(slot)

    def remove_mid_exchange(self, slot=0):
        self.remove_next[slot] = True

    def unplug_on_command(self, n=1):
        if n < 1:
            raise ValueError("n >= 1")
        self.unplug_countdown = n

    def _t1(self, kind, slot, to, times):
        if to not in ("card", "reader"):
            raise ValueError("to is 'card' or 'reader'")
        f = Fault(kind, when=lambda index, block: True, to=to, times=times)
        self.t1_faults.setdefault(slot, []).append(f)
        return f

    def corrupt_t1(self, slot=0, to="reader", times=1):
        return self._t1("corrupt", slot, to, times)

    def lose_t1(self, slot=0, to="reader", times=1):
        return self._t1("lose", slot, to, times)

    def wtx_storm(self, slot=0, count=10):
        if not 0 < count <= 10000:
            raise ValueError("count 1..10000")
        self.wtx[slot] = count

    def stale_bseq(self, times=1, mode="replace"):
        if mode not in ("replace", "duplicate"):
            raise ValueError("mode is 'replace' or 'duplicate'")
        self.stale = times
        self.stale_mode = mode

    def stall(self, endpoint, times=1):
        if endpoint not in ENDPOINTS:
            raise ValueError("endpoint is one of %s" % (ENDPOINTS,))
        self.stalls[endpoint] = times

    def clear_stall(self, endpoint):
        self.stalls.pop(endpoint, None)

    def lose_notify(self, times=1):
        self.notify_lost = times

    def overcurrent(self, slot=0):
        self.overcurrent_slots.add(slot)

    def clear(self):
        self.__init__()

    # -- consuming (the reader calls these) ---------------------------------
    def _note(self, what, detail=None):
        self.fired.append((what, detail))

    def take_stall(self, endpoint):
        n = self.stalls.get(endpoint, 0)
        if n <= 0:
            return False
        self.stalls[endpoint] = n - 1
        self._note("stall", endpoint)
        return True

    def take_unplug(self):
        if self.unplug_countdown is None:
            return False
        self.unplug_countdown -= 1
        if self.unplug_countdown > 0:
            return False
        self.unplug_countdown = None
        self._note("unplug")
        return True

    def take_remove(self, slot):
        if self.remove_next.pop(slot, False):
            self._note("remove", slot)
            return True
        return False

    def take_wtx(self, slot):
        n = self.wtx.pop(slot, 0)
        if n:
            self._note("wtx_storm", (slot, n))
        return n

    def take_stale(self):
        if self.stale <= 0:
            return None
        self.stale -= 1
        self._note("stale_bseq", self.stale_mode)
        return self.stale_mode

    def take_notify_lost(self):
        if self.notify_lost <= 0:
            return False
        self.notify_lost -= 1
        self._note("notify_lost")
        return True

    def take_overcurrent(self, slot):
        if slot in self.overcurrent_slots:
            self.overcurrent_slots.discard(slot)
            self._note("overcurrent", slot)
            return True
        return False

    def t1_for(self, slot):
        return self.t1_faults.get(slot, ())
