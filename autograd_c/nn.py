"""micrograd's nn (Module, Neuron, Layer, MLP) over autograd_c Values.

Layer builds each forward pass in one C call (ag_layer) that makes exactly
the nodes micrograd's Neuron makes, in the same order.

Beyond micrograd: a choice of activation (relu, tanh, sigmoid, linear),
named_parameters() and state_dict() / load_state_dict() as in PyTorch."""
import numbers
import random
from typing import Any, Dict, List, Mapping, Optional, Sequence, Tuple, Union

from ._autograd_c import ffi, lib
from ._session import ctx, retry
from .engine import Value
from .graph import Params

Number = Union[int, float]

# activation name -> (the op applied to a neuron's sum, repr prefix)
ACTIVATIONS = {
    "relu": (Value.relu, "ReLU"),
    "tanh": (Value.tanh, "Tanh"),
    "sigmoid": (Value.sigmoid, "Sigmoid"),
    "linear": (None, "Linear"),
}


def _named_values(obj: Any, prefix: str) -> List[Tuple[str, Value]]:
    """(dotted name, Value) for every Value held in obj's public attributes,
    in lists of them, and in Modules (and lists of Modules) below it."""
    found: List[Tuple[str, Value]] = []
    stack = [(prefix, obj)]
    while stack:
        name, x = stack.pop()
        if isinstance(x, Value):
            found.append((name, x))
            continue
        if isinstance(x, Module):
            items = [(k, v) for k, v in vars(x).items() if not k.startswith("_")]
        elif isinstance(x, (list, tuple)):
            items = [(str(i), v) for i, v in enumerate(x)]
        else:
            continue
        stack.extend((f"{name}.{k}" if name else k, v) for k, v in reversed(items))
    return found


def _short_repr(x: Any) -> str:
    """repr(x) for an error message, cut short: a huge int's repr has
    hundreds of digits (and past 4300 Python refuses to make it)."""
    if isinstance(x, int) and x.bit_length() > 64:
        return f"an int of {x.bit_length()} bits"
    text = repr(x)
    return text if len(text) <= 40 else text[:37] + "..."


def _as_data(x: Any) -> Number:
    """x as .data = would store it: a Python int for an Integral, a float
    for any other Real.  ValueError for anything else (bool included: a
    state_dict never holds one, so it is taken for a mistake), OverflowError
    when the number is beyond the range of a double."""
    if isinstance(x, bool) or not isinstance(x, numbers.Real):
        raise ValueError("not an int or float")
    if isinstance(x, numbers.Integral):
        x = int(x)
        float(x)  # OverflowError beyond double range, as setting .data raises
        return x
    return float(x)


def _checked_state(state: Mapping[str, Any], keys: List[str]) -> Dict[str, Number]:
    """{key: the value to set} for every key, or the exception for the bad
    ones (ValueError for non-numbers before OverflowError for huge ones),
    raised before any parameter is touched."""
    values: Dict[str, Number] = {}
    bad: Dict[type, List[str]] = {ValueError: [], OverflowError: []}
    for k in keys:
        try:
            values[k] = _as_data(state[k])
        except (ValueError, OverflowError) as e:
            bad[type(e)].append(f"{k!r}: {_short_repr(state[k])}")
    if bad[ValueError]:
        raise ValueError(f"state_dict values must be int or float: bad keys "
                         f"{{{', '.join(bad[ValueError])}}}")
    if bad[OverflowError]:
        raise OverflowError(f"state_dict values too large for a float: "
                            f"{{{', '.join(bad[OverflowError])}}}")
    return values


class Module:

    def zero_grad(self) -> None:
        """p.grad = 0 for every parameter, in one C call (Params.zero_grad)."""
        Params(self.parameters()).zero_grad()

    def parameters(self) -> List[Value]:
        return []

    def named_parameters(self) -> List[Tuple[str, Value]]:
        """(name, Value) for each of parameters(), in its order, named by
        where the module holds it: 'layers.0.neurons.3.w.1'.  A parameter
        held nowhere a name can be found gets 'parameters.<index>'."""
        names: Dict[Value, str] = {}
        for name, v in _named_values(self, ""):
            names.setdefault(v, name)
        return [(names.get(p, f"parameters.{i}"), p) for i, p in enumerate(self.parameters())]

    def state_dict(self) -> Dict[str, Number]:
        """{name: data} of every parameter, plain ints and floats (json and
        pickle keep them exactly)."""
        return {name: p.data for name, p in self.named_parameters()}

    def load_state_dict(self, state: Mapping[str, Number]) -> None:
        """Set every parameter's data from state (as state_dict() made it).

        Every value is checked and converted before any is set, so a failing
        call changes nothing: a missing or unexpected key raises KeyError, a
        value that is not a real number (str, None, bool, a Value, ...)
        ValueError, an int or other real beyond the range of a double
        (10**400) OverflowError -- each naming the keys.  What loads is what
        .data = would set: an int stays an int, numpy scalars become int or
        float; NaN and inf load as given."""
        params = dict(self.named_parameters())
        missing = [k for k in params if k not in state]
        unexpected = [k for k in state if k not in params]
        if missing or unexpected:
            raise KeyError(f"state_dict does not match the model: missing keys {missing}, "
                           f"unexpected keys {unexpected}")
        values = _checked_state(state, list(params))
        for k, p in params.items():
            p.data = values[k]


class Neuron(Module):
    """micrograd's Neuron: act = b + sum(w*x), then the activation: 'relu'
    (micrograd's nonlin=True, the default), 'tanh', 'sigmoid' or 'linear'
    (nonlin=False)."""

    def __init__(self, nin: int, nonlin: bool = True, activation: Optional[str] = None):
        self.w = [Value(random.uniform(-1, 1)) for _ in range(nin)]
        self.b = Value(0)
        if activation is None:
            activation = "relu" if nonlin else "linear"
        elif activation not in ACTIVATIONS:
            raise ValueError(f"unknown activation {activation!r}: one of {sorted(ACTIVATIONS)}")
        elif not nonlin and activation != "linear":
            raise ValueError(f"nonlin=False means a linear neuron, not {activation!r}")
        self.activation = activation

    @property
    def nonlin(self) -> bool:
        """micrograd's flag: False for a linear neuron; setting it to True on
        a linear neuron makes it ReLU, to False makes it linear."""
        return self.activation != "linear"

    @nonlin.setter
    def nonlin(self, on: bool) -> None:
        if bool(on) != self.nonlin:
            self.activation = "relu" if on else "linear"

    def __call__(self, x: Sequence[Union[Value, Number]]) -> Value:
        act = sum((wi * xi for wi, xi in zip(self.w, x)), self.b)
        f = ACTIVATIONS[self.activation][0]
        return f(act) if f else act

    def parameters(self) -> List[Value]:
        return self.w + [self.b]

    def __repr__(self) -> str:
        return f"{ACTIVATIONS[self.activation][1]}Neuron({len(self.w)})"


class Layer(Module):

    def __init__(self, nin: int, nout: int, **kwargs: Any):
        self.neurons = [Neuron(nin, **kwargs) for _ in range(nout)]
        self._plan = None  # (params, activations, w ids, b ids) of the last call

    def _layer_plan(self):
        """The C arrays of weight and bias ids, rebuilt when a parameter changed."""
        params = tuple(p for n in self.neurons for p in (*n.w, n.b))
        acts = tuple(n.activation for n in self.neurons)
        plan = self._plan
        if plan is None or plan[0] != params or plan[1] != acts:
            w = ffi.new("int64_t[]", [wi._i for n in self.neurons for wi in n.w] or [0])
            b = ffi.new("int64_t[]", [n.b._i for n in self.neurons] or [0])
            plan = self._plan = (params, acts, w, b)
            Value._remember(params)
        return plan

    def __call__(self, x: Sequence[Union[Value, Number]]) -> Union[Value, List[Value]]:
        return self._forward(x, True)

    def _forward(self, x, given):
        """The layer on x; given: x may be the user's own Values (an MLP's
        hidden layers get only what its layers made)."""
        nin = len(self.neurons[0].w) if self.neurons else 0
        same_act = len({n.activation for n in self.neurons}) == 1
        if (same_act and len(x) == nin and all(len(n.w) == nin for n in self.neurons)
                and all(isinstance(xi, Value) for xi in x)):
            if given:
                Value._remember(x)  # for _prev: ag_layer's nodes are C's
            out = self._call_c(x, nin)
        else:  # numbers among the inputs, or a reshaped layer: micrograd's way
            out = [n(x) for n in self.neurons]
        return out[0] if len(out) == 1 else out

    def _call_c(self, x, nin):
        """ag_layer does the sums and ReLU; another activation is applied to
        its linear outputs here, which makes the same graph as Neuron."""
        _, acts, w, b = self._layer_plan()
        nout = len(self.neurons)
        xs = ffi.new("int64_t[]", [xi._i for xi in x] or [0])
        out = ffi.new("int64_t[]", nout)
        args = (ctx, w, b, xs, nin, nout, 1 if acts[0] == "relu" else 0, out)
        status = lib.ag_layer(*args)
        if status:
            retry(status, lib.ag_layer, *args)
        values = [Value._from_handle(i) for i in out]
        f = None if acts[0] == "relu" else ACTIVATIONS[acts[0]][0]
        return [f(v) for v in values] if f else values

    def parameters(self) -> List[Value]:
        return [p for n in self.neurons for p in n.parameters()]

    def __getstate__(self):  # pickle and deepcopy: the C arrays are rebuilt
        return {**vars(self), "_plan": None}

    def __repr__(self) -> str:
        return f"Layer of [{', '.join(str(n) for n in self.neurons)}]"


class MLP(Module):

    def __init__(self, nin: int, nouts: List[int], activation: str = "relu"):
        """micrograd's MLP: hidden layers use activation, the last is linear."""
        sz = [nin] + nouts
        self.layers = [Layer(sz[i], sz[i + 1], activation=activation if i != len(nouts) - 1 else "linear")
                       for i in range(len(nouts))]

    def __call__(self, x: Sequence[Union[Value, Number]]) -> Union[Value, List[Value]]:
        out: Any = x
        for k, layer in enumerate(self.layers):
            out = layer._forward(out, k == 0)
        return out

    def parameters(self) -> List[Value]:
        return [p for layer in self.layers for p in layer.parameters()]

    def __repr__(self) -> str:
        return f"MLP of [{', '.join(str(layer) for layer in self.layers)}]"
