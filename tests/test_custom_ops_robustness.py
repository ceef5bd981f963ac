"""The user's own ops and _prev identity against Python's machinery: threads
racing on one node's _prev and on backward through user rules, a finalizer
that resurrects a user op's Value, fork() with user ops alive, and a
KeyboardInterrupt raised inside a user's rule mid-backward.  Each checks
the numbers against an undisturbed run and that no node leaks."""
import gc
import math
import os
import threading

import pytest

from autograd_c import Value
from support import live_nodes, reachable, run_threads
from test_custom_ops import mean, softplus


def graph():
    """Leaves and a loss mixing user ops (one of four children) with
    built-in ones."""
    x, y, z = Value(0.5), Value(-1.5), Value(2.0)
    loss = (mean(Value, softplus(Value, x * y), z, x, y * 2) ** 2).relu() + softplus(Value, z)
    return loss, (x, y, z)


def reference_grads():
    loss, leaves = graph()
    loss.backward()
    return loss.data, [v.grad for v in leaves]


def test_threads_backward_through_user_rules_like_serial(fast_switching, live_baseline):
    want = reference_grads()

    def work(_):
        got = []
        for _ in range(30):
            loss, leaves = graph()
            loss.backward()
            got.append((loss.data, [v.grad for v in leaves]))
        return got
    for results in run_threads(work, 4):
        assert all(r == want for r in results)
    assert live_nodes() == live_baseline


def test_threads_racing_on_one_nodes_prev_get_one_object(fast_switching, live_baseline):
    """Many threads ask _prev of nodes whose children have no Value yet (the
    constants of `x * k`): every thread gets the same object per node."""
    x = Value(1.0)
    tops = [(x * float(k)).relu() for k in range(2, 50)]
    gc.collect()
    barrier = threading.Barrier(4)

    def work(_):
        barrier.wait()
        seen = []
        for top in tops:
            (mid,) = top._prev
            seen.append(sorted(id(k) for k in mid._prev))
        return seen
    results = run_threads(work, 4)
    assert all(r == results[0] for r in results)
    for top, ids in zip(tops, results[0]):
        (mid,) = top._prev
        assert sorted(id(k) for k in mid._prev) == ids and id(x) in ids
    del tops, results, top, mid, x
    assert live_nodes() == live_baseline


class Resurrecting(Value):
    """A user op's Value class whose own finalizer stores the dying Value."""
    saved = []

    def __del__(self):
        Resurrecting.saved.append(self)
        super().__del__()


def test_a_resurrected_user_op_value_breaks_nothing(live_baseline):
    x = Value(0.7)
    top = softplus(Resurrecting, x * 3) * 2
    gc.collect()
    top.backward()
    want = x.grad
    assert math.isclose(want, 6 / (1 + math.exp(-2.1)), rel_tol=1e-12)
    del top
    gc.collect()
    for v in Resurrecting.saved:  # alive again: read it or get a clean error
        try:
            v.data
        except ReferenceError:
            pass
    Resurrecting.saved.clear()
    x.grad = 0
    again = softplus(Value, x * 3) * 2
    again.backward()
    assert x.grad == want
    del again, x
    assert live_nodes() == live_baseline


@pytest.mark.skipif(not hasattr(os, "fork"), reason="needs os.fork")
def test_fork_with_user_ops_alive():
    """A child process backpropagates through user ops its parent made (the
    kept Values and rules come with the fork); the parent's graph is
    unchanged by it."""
    loss, leaves = graph()
    del_me = mean(Value, *leaves) * 2
    want = reference_grads()
    pid = os.fork()
    if pid == 0:
        try:
            loss.backward()
            ok = (loss.data, [v.grad for v in leaves]) == want
            del_me.backward()
            os._exit(0 if ok else 3)
        except BaseException:
            os._exit(4)
    _, status = os.waitpid(pid, 0)
    assert os.waitstatus_to_exitcode(status) == 0
    assert [v.grad for v in leaves] == [0, 0, 0]  # the child's backward is its own
    loss.backward()
    assert (loss.data, [v.grad for v in leaves]) == want


def test_interrupt_inside_a_user_rule_leaves_the_graph_usable(live_baseline):
    """A KeyboardInterrupt raised by a rule mid-backward reaches the caller;
    zeroing the grads and running backward again gives the right ones."""
    x = Value(1.25)
    armed = [True]
    out = Value(x.data * 2, (x,), "double")

    def rule():
        if armed[0]:
            armed[0] = False
            raise KeyboardInterrupt
        x.grad += 2 * out.grad
    out._backward = rule
    loss = (out * out).tanh()
    with pytest.raises(KeyboardInterrupt):
        loss.backward()
    for v in reachable(loss):  # every node's, as after any partial backward
        v.grad = 0
    loss.backward()
    assert math.isclose(x.grad, (1 - math.tanh(6.25) ** 2) * 2 * 2.5 * 2, rel_tol=1e-12)
    del x, out, loss, rule, v
    gc.collect()
    assert live_nodes() == live_baseline
