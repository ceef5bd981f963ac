"""named_parameters, state_dict / load_state_dict, pickling models and Values."""
import json
import pickle
import random

import pytest

from autograd_c import Value
from autograd_c.nn import MLP, Layer, Module, Neuron

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
