"""The C session: the process's one node arena and every way back from C.

Every facade module calls C with `ctx`, the context made here at import,
and checks what comes back: a negative ag_status is a failure.  `retry`
is the one answer to a failure (memory ran out: give back the handles of
dead Values and call once more), `fail` the one way to raise a status.

Values that die do not release their node one C call each: __del__ puts
the id on `dead`, and release_dead() gives them back in batches (also
before a retry and before stats(), so what is counted is what is held).
"""
import operator
import os
import threading
from typing import Any, Callable, Dict, List, NoReturn, Optional, Type

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


def _new_context() -> Any:
    ctx = lib.ag_ctx_new()
    if ctx == ffi.NULL:
        raise MemoryError("autograd_c: cannot allocate the node arena")
    limit = os.environ.get("AUTOGRAD_C_MAX_NODES")
    if limit:
        lib.ag_set_limit(ctx, int(limit))
    return ctx


ctx: Any = _new_context()  # one arena for the process; lives until exit

# Node ids of dead Values, one handle each, given back to C in batches of
# DEAD_BATCH: one call per batch instead of one per Value.
dead: List[int] = []
DEAD_BATCH: int = 512
_release_lock = threading.Lock()


def release_dead() -> None:
    """Give the handles of dead Values back to the arena (never blocks: if
    another thread, or this one re-entered, is releasing, it does it)."""
    if not _release_lock.acquire(False):
        return
    try:
        n = len(dead)
        ids = dead[:n]
        del dead[:n]
        status = lib.ag_release_many(ctx, ids, n)
    finally:
        _release_lock.release()
    if status:  # then C released none: give back the live ones, name the others
        bad = [i for i in ids if lib.ag_release(ctx, i)]
        fail(status, f"releasing the nodes of dead Values: ids {bad} are not live")


def stats() -> Dict[str, int]:
    """The arena's numbers after releasing dead Values: a dict with
    live_nodes, capacity (node slots), bytes (held by the arena) and limit."""
    release_dead()
    s = ffi.new("ag_stats *")
    lib.ag_get_stats(ctx, s)
    return {"live_nodes": s.live_nodes, "capacity": s.capacity,
            "bytes": s.bytes, "limit": s.limit}


def set_node_limit(max_nodes: Optional[int]) -> None:
    """Cap the number of live nodes (0 or None: no cap).  Building beyond it
    raises MemoryError; also set by the environment variable
    AUTOGRAD_C_MAX_NODES at import."""
    max_nodes = 0 if max_nodes is None else operator.index(max_nodes)  # 1.5, '3': TypeError
    if max_nodes < 0:
        raise ValueError(f"node limit must be >= 0, got {max_nodes}")
    lib.ag_set_limit(ctx, max_nodes)
