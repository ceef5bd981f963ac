"""no_grad / enable_grad decorating generator functions, as torch's do:
the mode holds while the generator's body runs (each next, send, throw,
close), the caller's mode between the yields."""
import inspect

import pytest

from autograd_c import Value, enable_grad, is_grad_enabled, no_grad


def _recorded():
    """Does an op made now record its children (grad mode on)?"""
    return len((Value(2.0) * Value(3.0))._prev) == 2


@pytest.mark.parametrize("decorate", [no_grad, no_grad()], ids=["bare", "called"])
def test_body_runs_without_grad_and_the_caller_keeps_its_mode(decorate):
    seen = []

    @decorate
    def gen(n):
        for i in range(n):
            seen.append((is_grad_enabled(), _recorded()))
            yield Value(float(i)) * Value(2.0)
        seen.append((is_grad_enabled(), _recorded()))
        return "done"

    assert inspect.isgeneratorfunction(gen) and gen.__name__ == "gen"
    it = gen(3)
    outside = []
    for v in it:
        outside.append((is_grad_enabled(), _recorded()))
        assert v._prev == set()                  # made under no_grad: a leaf
    assert seen == [(False, False)] * 4
    assert outside == [(True, True)] * 3
    with pytest.raises(StopIteration) as stop:
        next(gen(0))
    assert stop.value.value == "done"


def test_interleaved_generators_and_caller_blocks():
    log = []

    @no_grad
    def quiet():
        while True:
            log.append(("quiet", is_grad_enabled()))
            yield

    @enable_grad()
    def loud():
        while True:
            log.append(("loud", is_grad_enabled()))
            yield

    q, l_ = quiet(), loud()
    with no_grad():
        next(l_)
        log.append(("caller", is_grad_enabled()))
        next(q)
        with enable_grad():
            next(q)
            log.append(("caller", is_grad_enabled()))
            next(l_)
        log.append(("caller", is_grad_enabled()))
    next(q)
    log.append(("caller", is_grad_enabled()))
    assert log == [("loud", True), ("caller", False), ("quiet", False), ("quiet", False),
                   ("caller", True), ("loud", True), ("caller", False), ("quiet", False),
                   ("caller", True)]


def test_a_block_left_open_at_a_yield_does_not_disturb_the_caller():
    """The generator's own enable_grad block spans a yield: the caller's
    blocks end before it does, and every block restores its own setting."""
    inside = []

    @no_grad
    def gen():
        with enable_grad():
            inside.append(is_grad_enabled())
            yield 1
            inside.append(is_grad_enabled())     # resumed: the decorator's mode
        inside.append(is_grad_enabled())
        yield 2

    it = gen()
    assert next(it) == 1
    assert is_grad_enabled()
    with no_grad():
        assert next(it) == 2
        assert not is_grad_enabled()
    assert is_grad_enabled() and _recorded()
    it.close()
    assert inside == [True, False, False]
    with no_grad():
        with enable_grad():
            assert is_grad_enabled()
        assert not is_grad_enabled()
    assert is_grad_enabled()


def test_send_and_yield_from():
    @no_grad
    def doubler():
        total = 0.0
        while True:
            x = yield total
            if x is None:
                return total
            total = (Value(x) * 2 + total).data if is_grad_enabled() else total + 2 * x

    @enable_grad()
    def outer():
        result = yield from doubler()
        yield result

    it = doubler()
    assert next(it) == 0.0
    assert it.send(1.5) == 3.0
    assert it.send(2.0) == 7.0
    with pytest.raises(StopIteration) as stop:
        it.send(None)
    assert stop.value.value == 7.0
    o = outer()
    next(o)
    o.send(1.0)
    assert o.send(None) == 2.0


def test_an_exception_thrown_into_the_generator():
    seen = []

    @no_grad
    def gen():
        while True:
            try:
                yield "ready"
            except KeyError:
                seen.append(("caught", is_grad_enabled(), _recorded()))
                yield "recovered"
            finally:
                seen.append(("finally", is_grad_enabled()))

    it = gen()
    next(it)
    with enable_grad():
        assert it.throw(KeyError("k")) == "recovered"
        assert is_grad_enabled()
    assert next(it) == "ready"
    with pytest.raises(ValueError, match="not handled"):
        it.throw(ValueError("not handled"))
    assert is_grad_enabled() and _recorded()
    assert seen == [("caught", False, False), ("finally", False), ("finally", False)]


def test_close_and_errors_run_the_body_in_the_mode_and_restore_the_caller():
    seen = []

    @no_grad
    def gen():
        try:
            yield 1
            raise RuntimeError("body failed")
        finally:
            seen.append(is_grad_enabled())

    it = gen()
    next(it)
    it.close()                                   # GeneratorExit at the yield
    assert seen == [False] and is_grad_enabled()
    it = gen()
    next(it)
    with no_grad():
        with enable_grad():
            with pytest.raises(RuntimeError, match="body failed"):
                next(it)
            assert is_grad_enabled()
        assert not is_grad_enabled()
    assert seen == [False, False] and is_grad_enabled()


def test_plain_functions_still_run_wholly_in_the_mode():
    @no_grad
    def make():
        return Value(1.0) * Value(2.0), is_grad_enabled()

    v, enabled = make()
    assert v._prev == set() and not enabled and is_grad_enabled()
