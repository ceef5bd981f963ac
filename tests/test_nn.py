"""autograd_c.nn: Module, Neuron, Layer, MLP -- shapes, reprs and
parameters as micrograd's, activations (relu, tanh, sigmoid, linear),
Layer's C fast path building the graph the Python path builds, zero_grad,
named_parameters, state_dict / load_state_dict, pickling a model.

nn's numbers against micrograd's (training, loss graphs, the fast path
under hypothesis): test_differential.py."""
import json
import math
import pickle
import random
import re
from fractions import Fraction

import micrograd.nn
import pytest

from autograd_c import Value
from autograd_c.autograd import trace
from autograd_c.nn import MLP, Layer, Module, Neuron
from support import bits


# --------------------------------------------------------------------------
# structure and activations

def test_mlp_shape_and_repr_match_micrograd():
    random.seed(0)
    ac_model = MLP(2, [16, 16, 1])
    random.seed(0)
    mg_model = micrograd.nn.MLP(2, [16, 16, 1])
    assert len(ac_model.parameters()) == 337 == len(mg_model.parameters())
    assert repr(ac_model) == repr(mg_model)
    assert repr(ac_model).startswith("MLP of [Layer of [ReLUNeuron(2), ")
    assert repr(ac_model).endswith("Layer of [LinearNeuron(16)]]")
    assert [p.data for p in ac_model.parameters()] == [p.data for p in mg_model.parameters()]
    assert all(type(p.data) is type(q.data) for p, q in
               zip(ac_model.parameters(), mg_model.parameters()))


HELD = []  # the leaves of the graphs _shape compares
ACTS = {"relu": lambda s: max(s, 0.0), "tanh": math.tanh,
        "sigmoid": lambda s: 1 / (1 + math.exp(-s)), "linear": lambda s: s}


@pytest.mark.parametrize("kwargs,text", [
    ({}, "ReLUNeuron(2)"), ({"nonlin": False}, "LinearNeuron(2)"),
    ({"activation": "tanh"}, "TanhNeuron(2)"), ({"activation": "sigmoid"}, "SigmoidNeuron(2)"),
    ({"activation": "linear"}, "LinearNeuron(2)"), ({"activation": "relu"}, "ReLUNeuron(2)")])
def test_neuron_repr(kwargs, text):
    assert repr(Neuron(2, **kwargs)) == text


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


# --------------------------------------------------------------------------
# parameters and state

POINTS = [[0.5, -1.25], [2.0, 0.75], [-0.3, 0.1], [1.0, 1.0]]


def _model(seed, **kwargs):
    random.seed(seed)
    return MLP(2, [4, 3, 1], **kwargs)


def _predict(model):
    return [model([Value(a), Value(b)]).data for a, b in POINTS]


def test_named_parameters_follow_parameters_with_dotted_names():
    model = _model(0)
    named = model.named_parameters()
    assert [p for _, p in named] == model.parameters()
    names = [n for n, _ in named]
    assert len(set(names)) == len(names) == 4 * 3 + 3 * 5 + 1 * 4
    assert names[:4] == ["layers.0.neurons.0.w.0", "layers.0.neurons.0.w.1",
                         "layers.0.neurons.0.b", "layers.0.neurons.1.w.0"]
    assert names[-1] == "layers.2.neurons.0.b"
    assert dict(named)["layers.1.neurons.2.w.3"] is model.layers[1].neurons[2].w[3]


def test_named_parameters_of_a_user_module():
    class Affine(Module):
        def __init__(self):
            self.scale = Value(2.0)
            self.shift = [Value(1), Value(-1)]
            self.inner = Neuron(1)
            self.hidden = {"not": Value(0.5)}  # in no attribute a name is found for

        def parameters(self):
            return [self.scale, *self.shift, *self.inner.parameters(), self.hidden["not"]]

    names = [n for n, _ in Affine().named_parameters()]
    assert names == ["scale", "shift.0", "shift.1", "inner.w.0", "inner.b", "parameters.5"]


def test_state_dict_holds_plain_numbers():
    state = _model(1).state_dict()
    assert all(type(v) in (int, float) for v in state.values())
    assert state["layers.0.neurons.0.b"] == 0 and type(state["layers.0.neurons.0.b"]) is int


@pytest.mark.parametrize("codec", [json, pickle], ids=["json", "pickle"])
def test_state_dict_round_trip_restores_predictions_exactly(codec):
    trained = _model(2, activation="tanh")
    for p in trained.parameters():  # "train": odd values, some ints
        p.data = p.data * 1.7 + 0.1 if random.random() < 0.7 else random.randint(-3, 3)
    blob = codec.dumps(trained.state_dict())
    fresh = _model(3, activation="tanh")
    assert _predict(fresh) != _predict(trained)
    fresh.load_state_dict(codec.loads(blob))
    assert _predict(fresh) == _predict(trained)
    assert [(type(p.data), p.data) for p in fresh.parameters()] == \
        [(type(p.data), p.data) for p in trained.parameters()]


def test_load_state_dict_missing_and_unexpected_keys():
    model = _model(4)
    before = _predict(model)
    state = model.state_dict()
    state = {k: v + 1 for k, v in state.items()}
    del state["layers.1.neurons.0.b"]
    state["layers.9.neurons.0.b"] = 1.0
    with pytest.raises(KeyError, match=r"missing keys \['layers.1.neurons.0.b'\].*"
                                       r"unexpected keys \['layers.9.neurons.0.b'\]"):
        model.load_state_dict(state)
    assert _predict(model) == before  # nothing was loaded


@pytest.mark.parametrize("bad", ["1.0", None, [1.0], True, Value(1.0)])
def test_load_state_dict_rejects_non_numbers(bad):
    model = _model(5)
    before = _predict(model)
    state = {k: v + 1 for k, v in model.state_dict().items()}
    state["layers.0.neurons.2.w.1"] = bad
    with pytest.raises(ValueError, match=r"layers\.0\.neurons\.2\.w\.1"):
        model.load_state_dict(state)
    assert _predict(model) == before


def _snapshot(model):
    """(name, type and exact bits of data) of every parameter."""
    return [(name, bits(p.data)) for name, p in model.named_parameters()]


@pytest.mark.parametrize("bad, exc", [(10**400, OverflowError), (-(2**1024), OverflowError),
                                      ("1.0", ValueError), (None, ValueError)],
                         ids=["10**400", "-2**1024", "str", "None"])
def test_load_state_dict_checks_every_value_before_setting_any(bad, exc):
    """The last value is bad: before, the 12 before it were set, then the
    13th raised (10**400: OverflowError from .data =)."""
    random.seed(8)
    model = MLP(2, [3, 1])
    state = {k: v * 3 + 1 for k, v in model.state_dict().items()}
    last = list(state)[-1]
    assert len(state) == 13 and last == "layers.1.neurons.0.b"
    state[last] = bad
    before = _snapshot(model)
    with pytest.raises(exc, match=re.escape(repr(last))):
        model.load_state_dict(state)
    assert _snapshot(model) == before


def test_load_state_dict_names_every_bad_key_briefly():
    model = _model(9)
    state = model.state_dict()
    names = list(state)
    state[names[0]], state[names[5]] = 10**5000, Fraction(10**400, 3)   # a Real, not an int
    with pytest.raises(OverflowError) as e:      # 10**5000 has no repr (> 4300 digits)
        model.load_state_dict(state)
    assert f"{names[0]!r}: an int of 16610 bits" in str(e.value)
    assert repr(names[5]) in str(e.value) and len(str(e.value)) < 200
    state[names[3]] = "x" * 1000                 # non-numbers are reported first
    with pytest.raises(ValueError, match=re.escape(repr(names[3]))) as e:
        model.load_state_dict(state)
    assert len(str(e.value)) < 200


def test_load_state_dict_loads_nan_inf_and_numpy_scalars_as_data_would():
    random.seed(8)
    model = MLP(2, [3, 1])
    values = [math.nan, math.inf, -math.inf, -0.0, 2**53 + 1, 10**300, 5e-324]
    state = {k: values[i % len(values)] for i, k in enumerate(model.state_dict())}
    model.load_state_dict(state)
    want = Value(0.0)
    for (name, p), v in zip(model.named_parameters(), state.values()):
        want.data = v
        assert bits(p.data) == bits(want.data), name
    np = pytest.importorskip("numpy")
    scalars = [np.float64(0.5), np.float32(0.1), np.int64(-3), np.uint8(200), np.float16(1.5)]
    state = {k: scalars[i % len(scalars)] for i, k in enumerate(model.state_dict())}
    model.load_state_dict(state)
    for (name, p), v in zip(model.named_parameters(), state.values()):
        want.data = v
        assert bits(p.data) == bits(want.data), name
    state[list(state)[-1]] = np.bool_(True)     # .data = refuses it too (TypeError)
    before = _snapshot(model)
    with pytest.raises(ValueError):
        model.load_state_dict(state)
    assert _snapshot(model) == before


def test_a_whole_model_pickles():
    model = _model(6, activation="sigmoid")
    model(POINTS[0] and [Value(1.0), Value(2.0)])  # fills Layer's cached C arrays
    back = pickle.loads(pickle.dumps(model))
    assert repr(back) == repr(model)
    assert _predict(back) == _predict(model)
    assert all(a != b for a, b in zip(back.parameters(), model.parameters()))


def test_zero_grad_sets_int_zero_everywhere():
    model = _model(7)
    out = model([Value(0.5), Value(-0.5)])
    (out * out).backward()
    assert any(p.grad != 0 for p in model.parameters())
    model.zero_grad()
    assert all(p.grad == 0 and type(p.grad) is int for p in model.parameters())


def test_layer_state_dict_names():
    random.seed(0)
    assert list(Layer(1, 2).state_dict()) == ["neurons.0.w.0", "neurons.0.b",
                                              "neurons.1.w.0", "neurons.1.b"]
