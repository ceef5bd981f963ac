"""micrograd's nn (Module, Neuron, Layer, MLP) over autograd_c Values.

Layer builds each forward pass in one C call (ag_layer) that makes exactly
the nodes micrograd's Neuron makes, in the same order."""
import random

from ._autograd_c import ffi, lib
from .engine import Value, _ctx, _retry, _wrap


class Module:

    def zero_grad(self):
        for p in self.parameters():
            p.grad = 0

    def parameters(self):
        return []


class Neuron(Module):

    def __init__(self, nin, nonlin=True):
        self.w = [Value(random.uniform(-1, 1)) for _ in range(nin)]
        self.b = Value(0)
        self.nonlin = nonlin

    def __call__(self, x):
        act = sum((wi * xi for wi, xi in zip(self.w, x)), self.b)
        return act.relu() if self.nonlin else act

    def parameters(self):
        return self.w + [self.b]

    def __repr__(self):
        return f"{'ReLU' if self.nonlin else 'Linear'}Neuron({len(self.w)})"


class Layer(Module):

    def __init__(self, nin, nout, **kwargs):
        self.neurons = [Neuron(nin, **kwargs) for _ in range(nout)]
        self._plan = None  # (params, nonlin, w ids, b ids) of the last call

    def _layer_plan(self):
        """The C arrays of weight and bias ids, rebuilt when a parameter changed."""
        params = tuple(p for n in self.neurons for p in (*n.w, n.b))
        nonlin = tuple(n.nonlin for n in self.neurons)
        plan = self._plan
        if plan is None or plan[0] != params or plan[1] != nonlin:
            w = ffi.new("int32_t[]", [wi._i for n in self.neurons for wi in n.w] or [0])
            b = ffi.new("int32_t[]", [n.b._i for n in self.neurons] or [0])
            plan = self._plan = (params, nonlin, w, b)
        return plan

    def __call__(self, x):
        nin = len(self.neurons[0].w) if self.neurons else 0
        same_nonlin = len({bool(n.nonlin) for n in self.neurons}) == 1
        if (same_nonlin and len(x) == nin and all(len(n.w) == nin for n in self.neurons)
                and all(isinstance(xi, Value) for xi in x)):
            out = self._call_c(x, nin)
        else:  # numbers among the inputs, or a reshaped layer: micrograd's way
            out = [n(x) for n in self.neurons]
        return out[0] if len(out) == 1 else out

    def _call_c(self, x, nin):
        _, nonlin, w, b = self._layer_plan()
        nout = len(self.neurons)
        xs = ffi.new("int32_t[]", [xi._i for xi in x] or [0])
        out = ffi.new("int32_t[]", nout)
        args = (_ctx, w, b, xs, nin, nout, 1 if nonlin[0] else 0, out)
        status = lib.ag_layer(*args)
        if status:
            _retry(-status, lambda *a: -lib.ag_layer(*a), *args)
        return [_wrap(i) for i in out]

    def parameters(self):
        return [p for n in self.neurons for p in n.parameters()]

    def __repr__(self):
        return f"Layer of [{', '.join(str(n) for n in self.neurons)}]"


class MLP(Module):

    def __init__(self, nin, nouts):
        sz = [nin] + nouts
        self.layers = [Layer(sz[i], sz[i + 1], nonlin=i != len(nouts) - 1) for i in range(len(nouts))]

    def __call__(self, x):
        for layer in self.layers:
            x = layer(x)
        return x

    def parameters(self):
        return [p for layer in self.layers for p in layer.parameters()]

    def __repr__(self):
        return f"MLP of [{', '.join(str(layer) for layer in self.layers)}]"
