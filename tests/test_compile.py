"""autograd_c.compile: a traced function replays with new numbers and gives
eager autograd_c's values and grads (bit for bit) and micrograd's (the
oracle; grads up to summation order); re-tracing by signature; frozen
control flow and check=True; bad arguments; gradients on request, rows;
a training loop bit-identical to the eager one."""
import functools
import math
import os
import random
import threading
import time

import numpy as np
import pytest
from micrograd import engine as mg_engine
from micrograd import nn as mg_nn

import autograd_c
from autograd_c import Value, nn
from autograd_c.compile import CACHE_SIZE, TraceMismatch
from autograd_c.datasets import make_moons
from autograd_c.train import learning_rate, make_model
from hypothesis import given, settings, strategies as st
from support import (ALL_OPS, PYTHON_ERRORS, DrawnRandom, bits, forked_child_succeeds, live_nodes,
                     programs, run_program, run_threads, same_number, small_number)


def all_ops(x, y, zs):
    """Every op of autograd_c on a few inputs, with constants and a list."""
    a = x * y + 3 - x / (abs(y) + 1)
    b = (a.tanh() + zs[0].sigmoid() * zs[1]).exp()
    c = (x ** 2 + 1).log() * (zs[2] - y).relu() + 2 ** (y * 0.25)
    return b + c * a


def micrograd_ops(x, y, zs):
    """Only ops micrograd has, for either engine's Values."""
    a = x * y + 3 - x / (y * y + 1)
    b = a.relu() + zs[0].relu() * zs[1]
    c = (x ** 2 + 1) * (zs[2] - y).relu()
    return b + c * a


def random_args(rng):
    return rng.uniform(-2, 2), rng.uniform(-2, 2), [rng.uniform(-2, 2) for _ in range(3)]


def test_values_and_argument_grads_match_eager_and_micrograd():
    rng = random.Random(5)
    f = autograd_c.compile(micrograd_ops)
    for _ in range(20):
        x, y, zs = random_args(rng)
        # compiled, with Value arguments
        vx, vy, vzs = Value(x), Value(y), [Value(z) for z in zs]
        out = f(vx, vy, vzs)
        out.backward()
        # eager autograd_c
        ex, ey, ezs = Value(x), Value(y), [Value(z) for z in zs]
        eager = micrograd_ops(ex, ey, ezs)
        eager.backward()
        assert bits(out.data) == bits(eager.data)
        for v, e in zip([vx, vy, *vzs], [ex, ey, *ezs]):
            assert bits(v.grad) == bits(e.grad)
        # micrograd
        mx, my, mzs = mg_engine.Value(x), mg_engine.Value(y), [mg_engine.Value(z) for z in zs]
        mg = micrograd_ops(mx, my, mzs)
        mg.backward()
        assert out.data == mg.data
        for v, m in zip([vx, vy, *vzs], [mx, my, *mzs]):
            assert math.isclose(v.grad, m.grad, rel_tol=1e-12, abs_tol=1e-12)
    assert f.trace_count == 1


def test_every_op_replays_as_eager():
    f = autograd_c.compile(all_ops)
    rng = random.Random(6)
    for _ in range(10):
        x, y, zs = random_args(rng)
        zs[2] = abs(zs[2]) + 3  # relu's active side, log of a positive number
        args = [Value(x), Value(y), [Value(z) for z in zs]]
        out = f(*args)
        out.backward()
        eargs = [Value(x), Value(y), [Value(z) for z in zs]]
        eager = all_ops(*eargs)
        eager.backward()
        assert bits(out.data) == bits(eager.data)
        flat = lambda a: [a[0], a[1], *a[2]]  # noqa: E731
        assert [bits(v.grad) for v in flat(args)] == [bits(v.grad) for v in flat(eargs)]


@settings(max_examples=150)
@given(programs(n_leaves=(1, 5), n_steps=(1, 25), ops=ALL_OPS), st.data())
def test_random_programs_replay_as_eager(program, data):
    """A random program traced on its own numbers, then replayed on others:
    the same output, Python error or grads of the arguments as the program
    run eagerly with the trace's structure (plan), bit for bit."""
    plan = run_program(Value, program)

    def on(xs):
        """The program built on the Values xs, as the plan built it."""
        it = iter(xs)
        return run_program(lambda _: next(it), program, plan=plan).root

    f = autograd_c.compile(on)
    new = [small_number(DrawnRandom(data.draw)) for _ in program.leaves]
    for numbers in (program.leaves, new):
        args, eargs = [Value(x) for x in numbers], [Value(x) for x in numbers]
        try:
            eager = on(eargs)
        except PYTHON_ERRORS as e:
            with pytest.raises(type(e)):
                f(args)
            continue
        out = f(args)
        assert bits(out.data) == bits(eager.data)
        out.backward()
        eager.backward()
        assert [bits(v.grad) for v in args] == [bits(v.grad) for v in eargs]
    assert f.trace_count == 1


def test_int_inputs_keep_python_int_results():
    f = autograd_c.compile(lambda a, b: a * b + a ** 2)
    assert same_number(f(3, 4).data, 21)
    assert same_number(f(5, 6).data, 55)
    assert same_number(f(5.0, 6.0).data, 55.0)   # floats: a second trace
    assert f.trace_count == 2


def test_new_numbers_reach_the_leaves_even_when_they_compare_equal():
    """A call with the same numbers reuses the loaded leaves; -0.0 == 0.0
    must not be taken for the same number, nor a Value argument's new data."""
    v = Value(3.0)
    f = autograd_c.compile(lambda x, w: x * 2 + w)
    g = autograd_c.compile(lambda x: x * 2.0)
    assert bits(g(0.0).data) == bits(0.0)
    assert bits(g(-0.0).data) == bits(-0.0)
    assert bits(g(0.0).data) == bits(0.0)
    assert f(1.0, v).data == 5.0
    v.data = -5.0
    assert f(1.0, v).data == -3.0
    assert same_number(f(1, v).data, -3.0)       # an int x: a second trace
    v.data = -5                                  # the same number, now an int
    assert same_number(f(1, v).data, -3)
    assert (f.trace_count, g.trace_count) == (2, 1)


def test_closure_parameters_get_eager_grads_bit_for_bit():
    model = nn.MLP(3, [4, 4, 1])
    f = autograd_c.compile(lambda x: model(x).tanh())
    rng = random.Random(7)
    for _ in range(5):
        x = [rng.uniform(-1, 1) for _ in range(3)]
        model.zero_grad()
        f(x).backward()
        compiled = [bits(p.grad) for p in model.parameters()]
        model.zero_grad()
        model(x).tanh().backward()
        assert compiled == [bits(p.grad) for p in model.parameters()]


def test_grads_accumulate_into_value_arguments_that_are_not_leaves():
    f = autograd_c.compile(lambda u, v: (u * v).tanh())
    a, b = Value(0.3), Value(-1.2)
    u = a * b + 1           # computed eagerly, passed in
    loss = f(u, b) * 2 + b  # the output inside a bigger graph
    loss.backward()
    ea, eb = Value(0.3), Value(-1.2)
    eu = ea * eb + 1
    eloss = (eu * eb).tanh() * 2 + eb
    eloss.backward()
    assert bits(loss.data) == bits(eloss.data)
    for v, e in [(a, ea), (b, eb), (u, eu)]:
        assert math.isclose(v.grad, e.grad, rel_tol=1e-14), (v.grad, e.grad)


def test_an_older_output_back_propagates_its_own_numbers():
    f = autograd_c.compile(lambda x, y: (x * y).tanh() * x)
    xs = [Value(0.5), Value(-1.5)]
    outs = [f(x, 2.0) for x in xs]
    for x, out in zip(reversed(xs), reversed(outs)):   # the older one last
        out.backward()
    for x in xs:
        e = Value(x.data)
        ((e * 2.0).tanh() * e).backward()
        assert bits(x.grad) == bits(e.grad)
    assert bits(outs[0].data) != bits(outs[1].data)


def test_a_second_backward_adds_as_eager_code_does():
    """backward() twice on one output: eager code keeps the first pass's
    grads in the inner nodes and adds again (micrograd's behaviour)."""
    w = Value(0.5)
    fn = lambda x: ((x * w).tanh() * x).relu() * w  # noqa: E731
    f = autograd_c.compile(fn)
    x, ex = Value(2.0), Value(2.0)
    out, eager = f(x) * 3, fn(ex) * 3
    out.backward()
    out.backward()
    compiled = (w.grad, x.grad)
    w.grad = 0
    eager.backward()
    eager.backward()
    assert (bits(compiled[0]), bits(compiled[1])) == (bits(w.grad), bits(ex.grad))


def test_a_closure_value_returned_as_it_is_accumulates():
    w = Value(1.5)
    w.grad = 5
    f = autograd_c.compile(lambda x: w)
    (f(1.0) * 2).backward()
    assert w.grad == 5 + 2 * 1                   # as (w * 2).backward() gives
    identity = autograd_c.compile(functools.partial(lambda x, k: x * k, k=3.0))
    x = Value(2.0)
    out = identity(x)
    assert out._op == "compiled " + test_a_closure_value_returned_as_it_is_accumulates.__qualname__ \
        + ".<locals>.<lambda>" and out._prev == {x}
    out.backward()
    assert x.grad == 3.0


def test_errors_of_a_replay_are_eager_errors_and_leave_the_trace_usable():
    f = autograd_c.compile(lambda x: (x * 2).log())
    assert f(2.0).data == math.log(4.0)
    with pytest.raises(ValueError) as compiled:
        f(-1.0)
    with pytest.raises(ValueError) as eager:
        (Value(-1.0) * 2).log()
    assert str(eager.value) in str(compiled.value)
    out = f(3.0)
    out.backward()
    assert out.data == math.log(6.0) and f.trace_count == 1

    def fails(x):
        raise KeyError("in fn")
    g = autograd_c.compile(fails)
    with pytest.raises(KeyError, match="in fn"):
        g(1.0)
    assert g.trace_count == 0


def test_several_outputs():
    model = nn.MLP(2, [3, 2])
    f = autograd_c.compile(lambda x: tuple(model(x)))
    g = autograd_c.compile(lambda x: model(x))          # a list
    x = [0.3, -0.7]
    o1, o2 = f(x)
    assert isinstance(g(x), list) and isinstance(f(x), tuple)
    e1, e2 = model(x)
    assert (bits(o1.data), bits(o2.data)) == (bits(e1.data), bits(e2.data))
    model.zero_grad()
    (o1 * 3 + o2).backward()
    compiled = [p.grad for p in model.parameters()]
    model.zero_grad()
    (e1 * 3 + e2).backward()
    for c, e in zip(compiled, [p.grad for p in model.parameters()]):
        assert math.isclose(c, e, rel_tol=1e-14, abs_tol=1e-300)
    with pytest.raises(TypeError, match="one output"):
        f.grad(x)


def test_retraces_when_the_signature_changes():
    calls = []

    def fn(*args, **kw):
        calls.append(1)
        total = Value(0.0)
        for a in list(args) + [kw[k] for k in sorted(kw)]:
            for v in (a if isinstance(a, (list, tuple)) else [a]):
                total = total + v
        return total

    f = autograd_c.compile(fn)
    f(1.0, 2.0)
    f(3.0, 4.0)
    assert (f.trace_count, len(calls)) == (1, 1)
    for args, kw in [((1, 2.0), {}), ((Value(1.0), 2.0), {}), ((1.0,), {}),
                     (([1.0, 2.0],), {}), (((1.0, 2.0),), {}), (([1.0, 2.0, 3.0],), {}),
                     ((1.0,), {"k": 2.0})]:
        before = f.trace_count
        out = f(*args, **kw)
        assert f.trace_count == before + 1, args
        assert out.data == fn(*[Value(a) if isinstance(a, float) else a for a in args],
                              **{k: Value(v) for k, v in kw.items()}).data
        f(*args, **kw)
        assert f.trace_count == before + 1
    assert len(f._traces) <= CACHE_SIZE


def test_frozen_control_flow_and_check_detects_it():
    def branchy(x):
        return x * 2 if x.data > 0 else x * 3

    f = autograd_c.compile(branchy)
    assert f(1.0).data == 2.0
    assert f(-1.0).data == -2.0                  # frozen: the x > 0 branch
    assert branchy(Value(-1.0)).data == -3.0      # eagerly: the other one
    checked = autograd_c.compile(check=True)(branchy)
    assert checked(1.0).data == 2.0
    assert checked(0.5).data == 1.0              # same branch: fine
    with pytest.raises(TraceMismatch, match=r"output 0 is -3\.0, the trace gave -2\.0.*frozen"):
        checked(-1.0)


def test_check_catches_a_gradient_only_difference():
    """max by .data: equal inputs give the same value but not the same grads."""
    f = autograd_c.compile(lambda a, b: a * 1.0 if a.data > b.data else b * 1.0, check=True)
    assert f(2.0, 1.0).data == 2.0
    with pytest.raises(TraceMismatch, match="gradient with respect to input 0"):
        f(1.0, 1.0)


def test_check_catches_a_different_graph():
    f = autograd_c.compile(lambda x: x.tanh() if x.data > 0 else x.tanh().tanh(), check=True)
    f(1.0)
    with pytest.raises(TraceMismatch, match="graph has 3 nodes, the trace's 2"):
        f(-1.0)


def test_bad_arguments_and_results():
    f = autograd_c.compile(lambda x, y: x * y)
    with pytest.raises(TypeError, match=r"argument y\[1\] is a NoneType, not a number"):
        f(1.0, [2.0, None])
    with pytest.raises(TypeError, match=r"argument x is a str"):
        f("1", 2.0)
    with pytest.raises(TypeError, match=r"argument k is a dict"):
        f(1.0, 2.0, k={})
    with pytest.raises(TypeError, match="must return a Value or a non-empty tuple/list"):
        autograd_c.compile(lambda x: 3.0)(1.0)
    with pytest.raises(TypeError, match="returned a float as output 1"):
        autograd_c.compile(lambda x: (x, 3.0))(1.0)
    with pytest.raises(TypeError, match="compile needs a function"):
        autograd_c.compile(3)
    assert f.trace_count == 0


def test_a_user_backward_rule_is_refused_clearly():
    def own_op(x):
        out = Value(x.data * 2, (x,), "double")

        def _backward():
            x.grad += 2 * out.grad
        out._backward = _backward
        return out

    with pytest.raises(ValueError, match="compile cannot capture .*own_op"):
        autograd_c.compile(own_op)(1.0)
    inner = autograd_c.compile(lambda x: x * 2)  # its outputs carry such a rule

    def outer(x):
        return inner(x) + 1

    with pytest.raises(ValueError, match="compile cannot capture .*outer"):
        autograd_c.compile(outer)(1.0)


def test_under_no_grad_a_call_returns_a_leaf():
    w = Value(2.0)
    f = autograd_c.compile(lambda x: x * w)
    with autograd_c.no_grad():
        out = f(3.0)
    assert out.data == 6.0 and out._prev == set()
    out.backward()
    assert w.grad == 0
    f(3.0).backward()
    assert w.grad == 3.0


def test_grad_on_request_matches_micrograd_and_changes_no_grad():
    w = Value(0.7)
    f = autograd_c.compile(lambda x, ys: (x * w).relu() + ys[0] * ys[1] * x)
    w.grad = 5
    value, (gx, (g0, g1)) = f.value_and_grad(0.3, [1.5, -2.0])
    mx, m0, m1, mw = (mg_engine.Value(v) for v in (0.3, 1.5, -2.0, 0.7))
    m = (mx * mw).relu() + m0 * m1 * mx
    m.backward()
    assert value == m.data
    for ours, theirs in [(gx, mx), (g0, m0), (g1, m1)]:
        assert math.isclose(ours, theirs.grad, rel_tol=1e-14)
    assert w.grad == 5
    assert f.grad(0.3, [1.5, -2.0]) == (gx, [g0, g1])


def test_rows_mode_matches_calls_one_by_one():
    model = nn.MLP(2, [4, 1])
    f = autograd_c.compile(lambda x, unused: model(x).tanh())
    rng = random.Random(8)
    rows = [[rng.uniform(-1, 1), rng.uniform(-1, 1), 0.0] for _ in range(50)]
    model.zero_grad()
    outs = f.run([0.0, 0.0], 0.0, rows=rows, grads=model.parameters())
    summed = [p.grad for p in model.parameters()]
    model.zero_grad()
    for r, o in zip(rows, outs):
        out = f(r[:2], r[2])
        assert bits(out.data) == bits(o)
        out.backward()
    for s, p in zip(summed, model.parameters()):
        assert math.isclose(s, p.grad, rel_tol=1e-12, abs_tol=1e-15)
    assert f.run([0.0, 0.0], 0.0, rows=np.array(rows)) == outs
    assert f.run([0.0, 0.0], 0.0, rows=np.array(rows).ravel()) == outs   # flat, row-major
    with pytest.raises(ValueError, match=r"rows\[0\] has 2 numbers"):
        f.run([0.0, 0.0], 0.0, rows=[[1.0, 2.0]])


def test_threads_share_a_compiled_function():
    """Each thread's outputs keep their own numbers, whatever the other
    threads replay in between."""
    w = Value(0.75)
    fn = lambda x, c: (x * w).tanh() * x + c  # noqa: E731
    f = autograd_c.compile(fn)

    def work(k):
        rng = random.Random(k)
        for _ in range(40):
            a, c = rng.uniform(-2, 2), rng.uniform(-1, 1)
            x, ex = Value(a), Value(a)
            out, eager = f(x, c), fn(ex, c)
            out.backward()
            eager.backward()
            assert bits(out.data) == bits(eager.data) and bits(x.grad) == bits(ex.grad)
        return f.trace_count

    assert run_threads(work, 4) == [1] * 4


@pytest.mark.skipif(not hasattr(os, "fork"), reason="needs os.fork")
def test_fork_while_a_thread_is_inside_a_compiled_call():
    """A child forked while another thread holds the compiled function's
    locks (mid-call) can call it: its locks are new in the child."""
    w = Value(0.5)
    f = autograd_c.compile(lambda x: (x * w + 1).tanh())
    want = f(0.25).data
    stop, ready = threading.Event(), threading.Event()

    def hammer():
        while not stop.is_set():
            f(0.3).backward()
            ready.set()
    t = threading.Thread(target=hammer)
    t.start()
    ready.wait()
    finished = 0
    try:
        for _ in range(10):
            time.sleep(0.002)
            finished += forked_child_succeeds(lambda: f(0.25).data == want)
    finally:
        stop.set()
        t.join()
    assert finished == 10


def test_repeated_calls_keep_live_nodes_flat(live_baseline):
    model = nn.MLP(2, [4, 1])
    f = autograd_c.compile(lambda x: model(x).relu())
    x = Value(0.5)
    for _ in range(3):
        f([x, 1.0]).backward()
    after_warmup = live_nodes()
    for _ in range(200):
        f([x, 1.0]).backward()
    assert live_nodes() == after_warmup
    del f
    assert live_nodes() <= live_baseline + len(model.parameters()) + 1


def _loss_fn(model):
    """micrograd's moons loss for a model, on inputs X, y given as numbers."""
    def loss(X, y):
        scores = [model(x) for x in X]
        losses = [(1 + -yi * s).relu() for yi, s in zip(y, scores)]
        data_loss = sum(losses) * (1.0 / len(losses))
        return data_loss + 1e-4 * sum(p * p for p in model.parameters())
    return loss


def _train(step, model, X, y, steps):
    losses = []
    for k in range(steps):
        loss = step(X, y)
        model.zero_grad()
        loss.backward()
        for p in model.parameters():
            p.data -= learning_rate(k, steps) * p.grad
        losses.append(loss.data)
    return losses, [p.data for p in model.parameters()]


def test_training_loop_is_bit_identical_to_eager_and_close_to_micrograd():
    X, y = make_moons(30, noise=0.1)
    eager_model, compiled_model = make_model(nn.MLP), make_model(nn.MLP)
    mg_model = make_model(mg_nn.MLP)
    eager = _train(_loss_fn(eager_model), eager_model, X, y, 6)
    step = autograd_c.compile(_loss_fn(compiled_model))
    compiled = _train(step, compiled_model, X, y, 6)
    assert [bits(x) for x in compiled[0]] == [bits(x) for x in eager[0]]
    assert [bits(x) for x in compiled[1]] == [bits(x) for x in eager[1]]
    assert step.trace_count == 1
    mg = _train(_loss_fn(mg_model), mg_model, X, y, 6)
    assert compiled[0][0] == mg[0][0]                 # same start, same forward
    for c, m in zip(compiled[0], mg[0]):
        assert math.isclose(c, m, rel_tol=1e-9)
    assert compiled[0][-1] < compiled[0][0]           # it trains
