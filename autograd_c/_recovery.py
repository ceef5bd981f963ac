"""Recovering from KeyboardInterrupt (Ctrl-C, Jupyter's "interrupt kernel").

Python raises KeyboardInterrupt at the next call, loop or function entry
after the signal.  Two such places in the facade cannot be guarded with
cffi, whose calls hand their result back only after that check:

* right after a C constructor returns a node handle, before a Value holds
  it: the reference is lost, and the node (with all it reaches) stays;
* at the entry of Value.__del__, before it queues its handle: the same,
  and Python prints "Exception ignored in Value.__del__" and drops the
  interrupt -- as it does in the weak reference callback that drops a dead
  Value from _prev's table (engine._forget; the entry then stays, dead,
  which lookups treat as none).

So: an interrupt dropped in either is raised again in the main
thread a moment later (the user's code always sees it), and after any
interrupt the next
stats() -- or an explicit reclaim() -- counts the references that live
Values and Graphs hold and gives back those that nothing holds.
"""
import _thread
import gc
import signal
import sys
import threading
import time
from collections import Counter
from typing import Any

from . import _session
from ._autograd_c import ffi, lib
from .engine import Value
from .graph import Graph

__all__ = ["reclaim"]

_interrupted = [False]  # an interrupt may have lost a reference since the last reclaim


def reclaim() -> int:
    """Give back the node references that no live Value or Graph holds (lost
    to a KeyboardInterrupt); returns how many.

    Counts the Values and Graphs the garbage collector can see, so it does
    nothing (returns 0) while other threads run, after gc.freeze(), and it
    must not be used while Values are kept only where the collector cannot
    see them (an extension's own storage, such as a numpy object array):
    their nodes would be freed, and the Values would then raise
    ReferenceError."""
    if threading.active_count() > 1 or gc.get_freeze_count():
        return 0
    gc.collect()
    _session.release_dead()
    held: Counter = Counter()
    for obj in gc.get_objects():
        if isinstance(obj, Value):
            handle = getattr(obj, "_i", -1)
            if handle >= 0:  # -1: a Value whose __init__ failed
                held[handle] += 1
        elif isinstance(obj, Graph):
            held[obj.root._i] += 1  # the C graph's own reference on its root
    surplus = [h for h, n in _references() if n > held[h] for _ in range(n - held[h])]
    if surplus:
        status = lib.ag_release_many(_session.ctx, surplus, len(surplus))
        if status:
            _session.fail(status, "reclaim")
    _interrupted[0] = False
    return len(surplus)


def _references():
    """(handle, references not held by a child link) of every node that has
    some, from C."""
    cap = 4096
    while True:
        handles, counts = ffi.new("int64_t[]", cap), ffi.new("uint32_t[]", cap)
        n = lib.ag_held_refs(_session.ctx, handles, counts, cap)
        if n < 0:
            _session.fail(n, "reclaim")
        if n <= cap:
            return [(handles[k], counts[k]) for k in range(n)]
        cap = n


def _reclaim_after_interrupt() -> None:
    if _interrupted[0]:
        reclaim()


def _on_sigint(signum: int, frame: Any) -> None:
    """Python's default SIGINT handler, noting that an interrupt happened."""
    _interrupted[0] = True
    raise KeyboardInterrupt


def _redeliver() -> None:
    """Raise the dropped interrupt again in the main thread, from another
    thread and a moment later: raised from here, it would be raised while
    this hook (still inside the finalizer) runs, and be dropped again.
    Should it still meet a finalizer, it comes back here and tries again."""
    try:
        _thread.start_new_thread(_interrupt_main_soon, ())  # returns at once
    except RuntimeError:  # the interpreter is shutting down: nobody to tell
        pass


def _interrupt_main_soon() -> None:
    time.sleep(0.001)
    _thread.interrupt_main()


# what runs as a Value dies: its finalizer, the callback of its entry in _prev's table
_FINALIZERS = ("Value.__del__", "_forget")


def _unraisable_hook(previous):
    def hook(unraisable: Any) -> None:
        if (unraisable.exc_type is KeyboardInterrupt
                and getattr(unraisable.object, "__qualname__", "") in _FINALIZERS):
            _interrupted[0] = True
            try:
                _redeliver()
            except KeyboardInterrupt:  # another one, arrived in this hook:
                _redeliver()           # the same redelivery carries both
            return
        previous(unraisable)
    return hook


def install() -> None:
    """Watch for interrupts (at import): SIGINT, when its handler is still
    Python's default one, and interrupts dropped in Value.__del__."""
    if (threading.current_thread() is threading.main_thread()
            and signal.getsignal(signal.SIGINT) is signal.default_int_handler):
        signal.signal(signal.SIGINT, _on_sigint)
    sys.unraisablehook = _unraisable_hook(sys.unraisablehook)
    _session.before_count.append(_reclaim_after_interrupt)
