"""Helpers shared by the test files (imported as `support`: pytest puts
tests/ on sys.path)."""
import gc
import math
import os
import threading

import autograd_c


# Under AddressSanitizer (make asan preloads its runtime) freed memory sits
# in a quarantine by design, so the process's RSS says nothing about leaks:
# the RSS bounds are checked only without it (the live-node counts always).
UNDER_ASAN = "libasan" in os.environ.get("LD_PRELOAD", "")


def rss_bytes():
    """Resident set size of this process now (Linux /proc/self/statm)."""
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")


def live_nodes():
    """Live nodes in the arena, after the dead Values have been released.
    Collects cyclic garbage first: a Value kept alive only by a reference
    cycle (say a traceback left by an earlier test) would otherwise be
    freed by the garbage collector at some random point of a test."""
    gc.collect()
    return autograd_c.stats()["live_nodes"]


def reachable(root):
    """The set of Values reachable from root through _prev (root included),
    for either engine: micrograd's by identity, ours by node."""
    seen, stack = set(), [root]
    while stack:
        v = stack.pop()
        if v not in seen:
            seen.add(v)
            stack.extend(v._prev)
    return seen


def same_number(x, y):
    """Identical numbers: same type, equal, same repr (so 0.0 != -0.0);
    NaN equals NaN."""
    if type(x) is not type(y):
        return False
    if isinstance(x, float) and math.isnan(x):
        return math.isnan(y)
    return x == y and repr(x) == repr(y)


def run_threads(target, n):
    """Run target(k) on n threads started together; return the results in
    thread order, re-raising the first exception a thread hit."""
    barrier = threading.Barrier(n)
    results, errors = [None] * n, []

    def work(k):
        try:
            barrier.wait()
            results[k] = target(k)
        except BaseException as e:  # noqa: BLE001 -- handed to the main thread
            errors.append(e)

    threads = [threading.Thread(target=work, args=(k,)) for k in range(n)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=120)
        assert not t.is_alive(), "a thread hung"
    if errors:
        raise errors[0]
    return results
