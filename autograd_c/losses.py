"""Losses built from Value ops (so they backprop), named as torch.nn.functional.

Predictions are a Value or a list of them, targets numbers (or Values);
reduction is 'mean' (the default), 'sum' or 'none' (a list of the terms).
A mean is built as micrograd's demo builds it: sum(terms) * (1.0 / n).
"""
import math
import numbers
from typing import Any, List, Sequence, Union

from .engine import Value

Number = Union[int, float]
Scalar = Union[Value, Number]
Scalars = Union[Scalar, Sequence[Scalar]]
Result = Union[Scalar, List[Scalar]]


def _seq(x: Any) -> list:
    return [x] if isinstance(x, (Value, numbers.Real)) else list(x)


def _pairs(preds: Any, targets: Any) -> List[tuple]:
    """[(pred, target)] from two scalars or two sequences of the same length."""
    preds, targets = _seq(preds), _seq(targets)
    if not preds or len(preds) != len(targets):
        raise ValueError(f"need as many targets as predictions (and at least one): "
                         f"{len(preds)} predictions, {len(targets)} targets")
    return list(zip(preds, targets))


def _reduce(terms: List[Scalar], reduction: str) -> Result:
    if reduction == "mean":
        return sum(terms) * (1.0 / len(terms))
    if reduction == "sum":
        return sum(terms)
    if reduction == "none":
        return terms
    raise ValueError(f"reduction must be 'mean', 'sum' or 'none', got {reduction!r}")


def hinge_loss(scores: Scalars, targets: Scalars, reduction: str = "mean") -> Result:
    """micrograd's SVM max-margin loss: relu(1 - y*score) for labels y = -1/+1,
    built as its moons demo builds it, so the numbers are the demo's."""
    return _reduce([(1 + -y * s).relu() for s, y in _pairs(scores, targets)], reduction)


def mse_loss(preds: Scalars, targets: Scalars, reduction: str = "mean") -> Result:
    """(pred - target)**2."""
    return _reduce([(p - t) ** 2 for p, t in _pairs(preds, targets)], reduction)


def _softplus(x: Value) -> Value:
    """log(1 + exp(x)) that never overflows: x + log(1 + exp(-x)) for x >= 0.
    Both forms have the same derivative, sigmoid(x), at every x."""
    return x + (1 + (-x).exp()).log() if x.data >= 0 else (1 + x.exp()).log()


def binary_cross_entropy_with_logits(logits: Scalars, targets: Scalars,
                                     reduction: str = "mean") -> Result:
    """-(y*log(sigmoid(x)) + (1-y)*log(1-sigmoid(x))) for targets y in [0, 1],
    computed stably from the logit x as softplus(x) - x*y."""
    pairs = _pairs(logits, targets)
    for x, _ in pairs:
        if not isinstance(x, Value):
            raise TypeError(f"logits must be Values, got {type(x).__name__}")
    return _reduce([_softplus(x) - x * y for x, y in pairs], reduction)


def cross_entropy(logits: Union[Sequence[Value], Sequence[Sequence[Value]]],
                  target: Any, reduction: str = "mean") -> Result:
    """Multi-class cross entropy from logits: log(sum(exp(logits))) - logits[target].
    One sample: a list of logit Values and a class index; a batch: a list of
    such lists and a list of indices (then reduced).  The log-sum-exp shifts
    by the largest logit (a constant: the gradient is unchanged), so it
    never overflows."""
    if logits and isinstance(logits[0], (list, tuple)):
        if isinstance(target, int):
            raise TypeError("a batch of logits needs a list of target indices")
        return _reduce([_cross_entropy_one(row, t) for row, t in _pairs(logits, target)],
                       reduction)
    return _cross_entropy_one(logits, target)


def _cross_entropy_one(logits: Any, target: int) -> Value:
    logits = list(logits)
    if not logits or not all(isinstance(x, Value) for x in logits):
        raise TypeError(f"logits must be a non-empty list of Values, got {logits!r}")
    if isinstance(target, bool) or not isinstance(target, int):
        raise TypeError(f"target must be a class index (int), got {target!r}")
    if not 0 <= target < len(logits):
        raise IndexError(f"target {target} is out of bounds for {len(logits)} classes")
    shift = max(x.data for x in logits)
    if not math.isfinite(shift):
        shift = 0.0
    exps = [(x - shift).exp() for x in logits]
    return (sum(exps[1:], exps[0])).log() + shift - logits[target]
