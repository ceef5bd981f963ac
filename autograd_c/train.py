"""micrograd's moons demo (MLP, SVM max-margin loss, L2, SGD), for any engine.

Each function takes the engine's Value class or model: autograd_c's or
micrograd's, so the demo, the benchmarks and the tests run the same code
(autograd_c's model does micrograd's zero_grad and update loops in one C
call each, with the same numbers)."""
import random

from .compile import compile
from .graph import Params
from .nn import Module


def moons_loss(Value, model, X, y, alpha=1e-4):
    """micrograd's loss(): (total loss Value, accuracy) on the whole batch."""
    inputs = [list(map(Value, xrow)) for xrow in X]
    scores = list(map(model, inputs))
    losses = [(1 + -yi * scorei).relu() for yi, scorei in zip(y, scores)]
    data_loss = sum(losses) * (1.0 / len(losses))
    reg_loss = alpha * sum((p * p for p in model.parameters()))
    total_loss = data_loss + reg_loss
    accuracy = [(yi > 0) == (scorei.data > 0) for yi, scorei in zip(y, scores)]
    return total_loss, sum(accuracy) / len(accuracy)


def compiled_moons_loss(model, y, alpha=1e-4):
    """moons_loss's total loss as a function of the points X alone, decorated
    by autograd_c.compile: traced on the first call, replayed in C after;
    the same numbers as moons_loss(Value, model, X, y)[0].  The points reach
    it as the trace's Values (no constructor to wrap them in); the labels y
    stay numbers, constants of the trace (the accuracy compares them)."""
    @compile
    def loss_of(X):
        return moons_loss(lambda x: x, model, X, y, alpha)[0]  # its accuracy: frozen, unused
    return loss_of


def learning_rate(k, steps=100):
    """The demo's learning rate at step k of steps: micrograd's schedule,
    1.0 decaying linearly towards 0.1."""
    return 1.0 - 0.9 * k / steps


def sgd_step(model, k, steps=100):
    """micrograd's update `p.data -= lr * p.grad` at learning_rate(k, steps):
    for an autograd_c model by Params.sgd, the same bits in one C call."""
    lr = learning_rate(k, steps)
    if isinstance(model, Module):
        Params(model.parameters()).sgd(lr)
        return
    for p in model.parameters():
        p.data -= lr * p.grad


def train_step(Value, model, X, y, k, steps=100):
    """One full step: forward, zero_grad, backward, update.  Returns (loss, acc)."""
    total_loss, acc = moons_loss(Value, model, X, y)
    model.zero_grad()
    total_loss.backward()
    sgd_step(model, k, steps)
    return total_loss.data, acc


def make_model(MLP, seed=1337):
    """MLP(2, [16, 16, 1]) with weights drawn from random.seed(seed)."""
    random.seed(seed)
    return MLP(2, [16, 16, 1])
