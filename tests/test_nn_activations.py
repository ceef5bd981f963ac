"""Neuron activations; Layer's C fast path builds the graph the Python path builds."""
import math
import random

import micrograd.nn
import pytest

from autograd_c import Value
from autograd_c.autograd import trace
from autograd_c.nn import MLP, Layer, Neuron

HELD = []  # the leaves of the graphs _shape compares
ACTS = {"relu": lambda s: max(s, 0.0), "tanh": math.tanh,
        "sigmoid": lambda s: 1 / (1 + math.exp(-s)), "linear": lambda s: s}


@pytest.mark.parametrize("kwargs,text", [
    ({}, "ReLUNeuron(2)"), ({"nonlin": False}, "LinearNeuron(2)"),
    ({"activation": "tanh"}, "TanhNeuron(2)"), ({"activation": "sigmoid"}, "SigmoidNeuron(2)"),
    ({"activation": "linear"}, "LinearNeuron(2)"), ({"activation": "relu"}, "ReLUNeuron(2)")])
def test_neuron_repr(kwargs, text):
    assert repr(Neuron(2, **kwargs)) == text


def test_reprs_match_micrograd():
    random.seed(0)
    ours = MLP(3, [4, 1])
    random.seed(0)
    theirs = micrograd.nn.MLP(3, [4, 1])
    assert repr(ours) == repr(theirs)
    assert [p.data for p in ours.parameters()] == [p.data for p in theirs.parameters()]


@pytest.mark.parametrize("act", sorted(ACTS))
def test_neuron_computes_its_activation(act):
    n = Neuron(3, activation=act)
    x = [0.5, -1.5, 2.0]
    s = sum(w.data * xi for w, xi in zip(n.w, x))
    assert n(x).data == pytest.approx(ACTS[act](s))


def test_bad_activation_arguments():
    with pytest.raises(ValueError, match="unknown activation 'gelu'"):
        Neuron(2, activation="gelu")
    with pytest.raises(ValueError, match="nonlin=False means a linear neuron"):
        Neuron(2, nonlin=False, activation="tanh")


def test_nonlin_flag_stays_micrograd_compatible():
    n = Neuron(2, activation="tanh")
    assert n.nonlin is True
    n.nonlin = True  # already nonlinear: stays tanh
    assert n.activation == "tanh"
    n.nonlin = False
    assert (n.activation, repr(n)) == ("linear", "LinearNeuron(2)")
    n.nonlin = True
    assert n.activation == "relu"


def _shape(root):
    """The graph as data: each node's op, data and its children's positions
    (depth first, children in operand order), and whether it is a leaf the
    caller holds (an input or a parameter) or a node built on the way."""
    nodes, edges = trace(root)
    pos = {v: i for i, v in enumerate(nodes)}
    kids = {i: [] for i in range(len(nodes))}
    for child, parent in edges:
        kids[pos[parent]].append(pos[child])
    return [(v._op, v.data, kids[pos[v]], v in HELD) for v in nodes]


@pytest.mark.parametrize("act", sorted(ACTS))
def test_layer_fast_path_builds_the_python_graph(act):
    random.seed(1)
    layer = Layer(3, 4, activation=act)
    x = [Value(0.5), Value(-1.5), Value(2.0)]
    HELD[:] = layer.parameters() + x
    fast = layer(x)                              # all Values: the C path
    slow = [n(x) for n in layer.neurons]         # micrograd's way
    assert [_shape(f) for f in fast] == [_shape(s) for s in slow]
    grads = []
    for outs in (fast, slow):
        for p in layer.parameters() + x:
            p.grad = 0
        sum(outs).backward()
        grads.append([p.grad for p in layer.parameters() + x])
    assert grads[0] == grads[1]


def test_mlp_activation_applies_to_hidden_layers_only():
    model = MLP(2, [3, 3, 1], activation="tanh")
    assert [n.activation for layer in model.layers for n in layer.neurons] == \
        ["tanh"] * 6 + ["linear"]
    out = model([Value(1.0), Value(2.0)])
    assert out._op == "+"


def test_mixed_activations_in_one_layer_take_the_python_path():
    random.seed(2)
    layer = Layer(2, 2)
    layer.neurons[1].activation = "sigmoid"
    x = [Value(0.3), Value(-0.7)]
    out = layer(x)
    assert [o._op for o in out] == ["ReLU", "sigmoid"]
    assert [o.data for o in out] == [n(x).data for n in layer.neurons]
