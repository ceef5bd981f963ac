"""micrograd's moons demo (MLP, SVM max-margin loss, L2, SGD), for any engine.

`engine` is a module-like object with Value and an MLP class: autograd_c or
micrograd, so the demo, the benchmarks and the tests run the same code."""
import random


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


def sgd_step(model, k, steps=100):
    """micrograd's update with its decaying learning rate."""
    learning_rate = 1.0 - 0.9 * k / steps
    for p in model.parameters():
        p.data -= learning_rate * p.grad


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
