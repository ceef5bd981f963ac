"""Toy data sets, generated (no download)."""
import math
import random


def make_moons(n_samples=100, noise=0.1, seed=1337):
    """Two interleaving half circles, as sklearn.datasets.make_moons.

    Returns (X, y): X a list of [x0, x1] floats, y a list of labels -1 / +1
    (micrograd's convention for the SVM loss)."""
    rng = random.Random(seed)
    n_out = n_samples // 2
    n_in = n_samples - n_out
    X, y = [], []
    for i in range(n_out):
        t = math.pi * i / max(n_out - 1, 1)
        X.append([math.cos(t), math.sin(t)])
        y.append(-1)
    for i in range(n_in):
        t = math.pi * i / max(n_in - 1, 1)
        X.append([1 - math.cos(t), 1 - math.sin(t) - 0.5])
        y.append(1)
    X = [[a + rng.gauss(0, noise), b + rng.gauss(0, noise)] for a, b in X]
    order = list(range(n_samples))
    rng.shuffle(order)
    return [X[i] for i in order], [y[i] for i in order]
