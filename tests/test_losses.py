"""Losses: values worked out by hand, gradients against finite differences."""
import math
import random

import pytest

from autograd_c import Value, no_grad
from autograd_c.losses import binary_cross_entropy_with_logits, cross_entropy, hinge_loss, mse_loss
from autograd_c.nn import MLP
from autograd_c.train import moons_loss


def _check_gradients(loss_of, xs, h=1e-6):
    """loss_of(list of Values) -> Value: backward's grads equal central
    differences of the loss's value in each input."""
    vals = [Value(x) for x in xs]
    loss = loss_of(vals)
    loss.backward()
    for i, v in enumerate(vals):
        def at(d):
            with no_grad():
                return loss_of([Value(x + (d if j == i else 0)) for j, x in enumerate(xs)]).data
        numeric = (at(h) - at(-h)) / (2 * h)
        assert v.grad == pytest.approx(numeric, rel=1e-5, abs=1e-7), f"input {i}"
    return loss


# -- hinge ----------------------------------------------------------------------

def test_hinge_by_hand():
    scores = [Value(0.5), Value(-2.0), Value(3.0), Value(-0.25)]
    y = [1, 1, -1, -1]
    # relu(1 - y*s): 0.5, 3.0, 4.0, 0.75
    assert hinge_loss(scores, y).data == pytest.approx((0.5 + 3.0 + 4.0 + 0.75) / 4)
    assert hinge_loss(scores, y, reduction="sum").data == pytest.approx(8.25)
    assert [t.data for t in hinge_loss(scores, y, reduction="none")] == [0.5, 3.0, 4.0, 0.75]
    assert hinge_loss(Value(2.0), 1).data == 0.0  # beyond the margin


def test_hinge_is_the_moons_demo_loss_exactly():
    random.seed(3)
    model = MLP(2, [4, 1])
    X = [[0.1, 0.2], [-1.0, 0.5], [0.3, -0.7]]
    y = [1, -1, 1]
    total, _ = moons_loss(Value, model, X, y, alpha=0.0)
    scores = [model(list(map(Value, row))) for row in X]
    ours = hinge_loss(scores, y) + 0.0 * sum(p * p for p in model.parameters())
    assert ours.data == total.data


def test_hinge_gradients():
    _check_gradients(lambda v: hinge_loss(v, [1, -1, 1]), [0.3, 0.2, -1.5])


# -- mse ------------------------------------------------------------------------

def test_mse_by_hand_and_gradients():
    preds = [Value(1.0), Value(2.5), Value(-1.0)]
    loss = mse_loss(preds, [0.0, 2.0, 1.0])
    assert loss.data == pytest.approx((1 + 0.25 + 4) / 3)
    loss.backward()
    assert [p.grad for p in preds] == pytest.approx([2 * 1 / 3, 2 * 0.5 / 3, 2 * -2 / 3])
    assert mse_loss(Value(3), 1).data == 4  # one prediction, ints stay ints in the terms
    _check_gradients(lambda v: mse_loss(v, [0.5, -0.5]), [1.25, 0.75])


# -- binary cross entropy ---------------------------------------------------------

def _bce_by_hand(x, y):
    p = 1 / (1 + math.exp(-x))
    return -(y * math.log(p) + (1 - y) * math.log(1 - p))


@pytest.mark.parametrize("x", [-3.0, -0.5, 0.0, 0.7, 4.0])
@pytest.mark.parametrize("y", [0, 1, 0.25])
def test_bce_by_hand_and_gradient(x, y):
    v = Value(x)
    loss = binary_cross_entropy_with_logits(v, y)
    assert loss.data == pytest.approx(_bce_by_hand(x, y), rel=1e-12)
    loss.backward()
    assert v.grad == pytest.approx(1 / (1 + math.exp(-x)) - y, rel=1e-12, abs=1e-15)


def test_bce_is_stable_for_huge_logits():
    big, small = Value(1000.0), Value(-1000.0)
    loss = binary_cross_entropy_with_logits([big, small], [0, 1], reduction="sum")
    assert loss.data == pytest.approx(2000.0)
    loss.backward()
    assert (big.grad, small.grad) == pytest.approx((1.0, -1.0))
    assert binary_cross_entropy_with_logits(Value(800.0), 1).data == 0.0


def test_bce_batch_gradients():
    _check_gradients(lambda v: binary_cross_entropy_with_logits(v, [1, 0, 1]), [0.4, -1.2, 2.2])


# -- cross entropy -----------------------------------------------------------------

def test_cross_entropy_by_hand():
    logits = [Value(1.0), Value(2.0), Value(3.0)]
    loss = cross_entropy(logits, 0)
    z = math.exp(1) + math.exp(2) + math.exp(3)
    assert loss.data == pytest.approx(-math.log(math.exp(1) / z), rel=1e-12)
    loss.backward()
    softmax = [math.exp(k) / z for k in (1, 2, 3)]
    assert [v.grad for v in logits] == pytest.approx([softmax[0] - 1, softmax[1], softmax[2]])


def test_cross_entropy_is_stable_for_huge_logits():
    logits = [Value(1000.0), Value(999.0), Value(-1000.0)]
    loss = cross_entropy(logits, 1)
    assert loss.data == pytest.approx(1 + math.log(1 + math.exp(-1)), rel=1e-12)
    loss.backward()
    assert sum(v.grad for v in logits) == pytest.approx(0.0, abs=1e-12)


def test_cross_entropy_gradients_and_batch():
    _check_gradients(lambda v: cross_entropy(v, 2), [0.1, -0.4, 0.9, 0.3])
    rows = [[0.1, -0.4, 0.9], [2.0, 1.0, -1.0]]
    one = [cross_entropy([Value(x) for x in row], t).data for row, t in zip(rows, [2, 0])]
    batch = cross_entropy([[Value(x) for x in row] for row in rows], [2, 0])
    assert batch.data == pytest.approx(sum(one) / 2, rel=1e-15)
    _check_gradients(lambda v: cross_entropy([v[:3], v[3:]], [1, 2], reduction="sum"),
                     [0.1, -0.4, 0.9, 2.0, 1.0, -1.0])


# -- bad input ---------------------------------------------------------------------

@pytest.mark.parametrize("call,error,match", [
    (lambda: mse_loss([Value(1.0), Value(2.0)], [1.0]), ValueError, "2 predictions, 1 targets"),
    (lambda: hinge_loss([], []), ValueError, "at least one"),
    (lambda: mse_loss(Value(1.0), 0.0, reduction="avg"), ValueError, "reduction must be"),
    (lambda: cross_entropy([Value(1.0), Value(2.0)], 2), IndexError, "target 2 is out of bounds"),
    (lambda: cross_entropy([Value(1.0), Value(2.0)], -1), IndexError, "out of bounds"),
    (lambda: cross_entropy([Value(1.0)], 0.0), TypeError, "class index"),
    (lambda: cross_entropy([], 0), TypeError, "non-empty list of Values"),
    (lambda: cross_entropy([[Value(1.0)]], 0), TypeError, "list of target indices"),
    (lambda: binary_cross_entropy_with_logits(0.5, 1), TypeError, "logits must be Values"),
])
def test_losses_reject_bad_input(call, error, match):
    with pytest.raises(error, match=match):
        call()
