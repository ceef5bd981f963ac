"""The C session: the process's one node arena and every way back from C.

Every facade module calls C with `ctx`, the context made here at import,
and checks what comes back: a negative ag_status is a failure.  `retry`
is the one answer to a failure (memory ran out: give back the handles of
dead Values and call once more), `fail` the one way to raise a status.

Values that die do not release their node one C call each: __del__ puts
the handle on `dead`, and release_dead() gives them back in batches (also
before a retry and before stats(), so what is counted is what is held).

KeyboardInterrupt can arrive after any call (Python runs signal handlers
there), so release_dead takes no lock and hands a batch to C in a way
that an interrupt can delay but never lose or repeat (see release_dead).
"""
import operator
import os
import struct
from typing import Any, Callable, Dict, List, NoReturn, Optional, Tuple, Type

from ._autograd_c import ffi, lib

ERRORS: Dict[int, Type[Exception]] = {
    lib.AG_ERR_NOMEM: MemoryError,
    lib.AG_ERR_LIMIT: MemoryError,
    lib.AG_ERR_ZERODIV: ZeroDivisionError,
    lib.AG_ERR_OVERFLOW: OverflowError,
    lib.AG_ERR_INT_RANGE: OverflowError,
    lib.AG_ERR_DOMAIN: ValueError,
    lib.AG_ERR_COMPLEX: ValueError,
    lib.AG_ERR_ARG: ValueError,
    lib.AG_ERR_NOT_LEAF: ValueError,
    lib.AG_ERR_STALE: ReferenceError,
    lib.AG_ERR_USER_RULE: ValueError,
    lib.AG_ERR_FORMAT: ValueError,
}


def fail(status: int, what: str = "") -> NoReturn:
    """Raise the Python exception for a negative C status, with C's text of
    it (after `what: ` when what names the operation)."""
    message = ffi.string(lib.ag_status_str(status)).decode()
    raise ERRORS.get(status, RuntimeError)(f"{what}: {message}" if what else message)


def retry(status: int, fn: Callable[..., int], *args: Any) -> int:
    """fn(*args) returned the negative status.  When memory ran out (the
    arena could not grow, or the node limit was reached), release the dead
    Values and call once more: returns that call's result (a node id, or
    AG_OK) if it succeeds.  Otherwise raises through fail().  Callers make
    the first call themselves, so success costs them one compare."""
    if status == lib.AG_ERR_NOMEM or status == lib.AG_ERR_LIMIT:
        release_dead()
        status = fn(*args)
        if status >= 0:
            return status
    fail(status)


def _limit_from_environment() -> int:
    """The node limit AUTOGRAD_C_MAX_NODES asks for (0: none)."""
    text = os.environ.get("AUTOGRAD_C_MAX_NODES", "").strip()
    if not text:
        return 0
    try:
        limit = int(text)
    except ValueError:
        limit = -1
    if limit < 0:
        raise ValueError("the environment variable AUTOGRAD_C_MAX_NODES must be a "
                         f"non-negative whole number of nodes (0: no limit), got {text!r}")
    return limit


def _new_context() -> Any:
    limit = _limit_from_environment()
    ctx = lib.ag_ctx_new()
    if ctx == ffi.NULL:
        raise MemoryError("autograd_c: cannot allocate the node arena")
    lib.ag_set_limit(ctx, limit)
    return ctx


ctx: Any = _new_context()  # one arena for the process; lives until exit
lib.ag_set_facade_ctx(ctx)  # for the calls with fewer arguments (Value's)

# Handles of dead Values, one reference each, given back to C in batches
# of DEAD_BATCH: one call per batch instead of one per Value (a batch costs
# ~1.7 us besides its handles: 4096 of them make that 0.4 ns a handle; the
# nodes they hold meanwhile, ~0.2 MB at most, are nothing to a graph).
dead: List[int] = []
DEAD_BATCH: int = 4096
# Batches taken off `dead` and handed to C, each with the C flag that says
# whether C has released it (ag_release_once releases a batch once per
# flag); one stays here until its release call has returned.
_in_flight: List[Tuple[List[int], Any]] = []
# Run by release_dead first, again while one returns True (it released
# something, which may free what others hold back).
sweeps: List[Callable[[], bool]] = []

# One entry per no_grad / enable_grad block open on any thread (appends and
# pops are atomic): while it is empty, every thread records, and an op's
# result keeps its operands without asking C.
open_grad_modes: List[None] = []


def release_dead() -> None:
    """Give the handles of dead Values back to the arena.

    No lock (an interrupt right after taking one would keep it for good),
    and no call between taking a batch off `dead` and recording it in
    _in_flight: Python delivers KeyboardInterrupt, and switches threads,
    only at calls, loops and function entries, so the two lines that move
    the batch run as one step, and each batch is taken by one thread.  If
    an interrupt stops this function later, the batch is still in
    _in_flight and the next call finishes it; C's flag makes a release that
    had in fact happened a no-op."""
    for entry in tuple(_in_flight):
        _release(entry)
    while True:  # until a round releases nothing
        swept = False
        for sweep in sweeps:  # references held back until their node is free
            swept = sweep() or swept
        n = len(dead)
        if not n and not swept:
            return
        done = ffi.new("int *")     # before the batch is taken: a call
        batch = dead[:n]            # these two: no call, no interrupt between
        del dead[:n]
        entry = (batch, done)
        _in_flight.append(entry)
        _release(entry)
        if not sweeps:
            return


# struct's code for a C int64_t: native long where that has 64 bits (CPython
# converts an int to a long in a loop, to a long long through a byte array:
# 8 against 19 ns a handle, measured), else long long
_INT64 = "l" if struct.calcsize("l") == 8 else "q"


def _int64_array(handles: List[int]) -> Any:
    """The handles as a C int64_t array.  struct packs a list of Python
    ints faster than cffi converts one passed for an int64_t * (measured:
    8 against 37 ns a handle), and a batch release is mostly that
    conversion (C's release: about 6 ns a node)."""
    return ffi.from_buffer("int64_t[]", struct.pack(f"{len(handles)}{_INT64}", *handles))


def _release(entry: Tuple[List[int], Any]) -> None:
    batch, done = entry
    status = lib.ag_release_once(ctx, _int64_array(batch), len(batch), done)
    try:
        _in_flight.remove(entry)
    except ValueError:  # another thread finished it first
        pass
    if status:  # C released the others
        fail(status, "releasing the nodes of dead Values")


# Run by stats() before it counts (the recovery after a KeyboardInterrupt).
before_count: List[Callable[[], None]] = []


def stats() -> Dict[str, int]:
    """The arena's numbers after releasing dead Values: a dict with
    live_nodes, capacity (node slots), bytes (held by the arena) and limit."""
    release_dead()
    for check in before_count:
        check()
    s = ffi.new("ag_stats *")
    lib.ag_get_stats(ctx, s)
    return {"live_nodes": s.live_nodes, "capacity": s.capacity,
            "bytes": s.bytes, "limit": s.limit}


def trim() -> int:
    """Give memory back to the system: release dead Values, then shrink the
    arena to the smallest size that holds its highest live node.  Returns
    the bytes given back.  A big arena (over 2**20 nodes) does this by
    itself once fewer than an eighth of its nodes are live."""
    release_dead()
    return int(lib.ag_trim(ctx))


def set_node_limit(max_nodes: Optional[int]) -> None:
    """Cap the number of live nodes (0 or None: no cap).  Building beyond it
    raises MemoryError; also set by the environment variable
    AUTOGRAD_C_MAX_NODES at import."""
    max_nodes = 0 if max_nodes is None else operator.index(max_nodes)  # 1.5, '3': TypeError
    if max_nodes < 0:
        raise ValueError(f"node limit must be >= 0, got {max_nodes}")
    lib.ag_set_limit(ctx, max_nodes)
