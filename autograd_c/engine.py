"""Value: micrograd's API as a thin facade over the C node arena.

A Value holds only the id of its node (one reference in the arena); data,
grad and the graph live in C.  Graphs are built micrograd's way (`a - b` is
`a + (-b)`, `a / b` is `a * b**-1`, ...) so every number comes out the same.
"""
import numbers
import os

from ._autograd_c import ffi, lib

_ERRORS = {
    lib.AG_ERR_NOMEM: MemoryError,
    lib.AG_ERR_LIMIT: MemoryError,
    lib.AG_ERR_ZERODIV: ZeroDivisionError,
    lib.AG_ERR_OVERFLOW: OverflowError,
    lib.AG_ERR_INT_RANGE: OverflowError,
    lib.AG_ERR_DOMAIN: ValueError,
    lib.AG_ERR_COMPLEX: ValueError,
    lib.AG_ERR_ARG: ValueError,
    lib.AG_ERR_NOT_LEAF: ValueError,
}


def _fail(status, what=""):
    """Raise the Python exception for a C status (given negated or not)."""
    status = abs(status)
    message = ffi.string(lib.ag_status_str(status)).decode()
    raise _ERRORS.get(status, RuntimeError)(f"{what}: {message}" if what else message)


def _new_context():
    ctx = lib.ag_ctx_new()
    if ctx == ffi.NULL:
        raise MemoryError("autograd_c: cannot allocate the node arena")
    limit = os.environ.get("AUTOGRAD_C_MAX_NODES")
    if limit:
        lib.ag_set_limit(ctx, int(limit))
    return ctx


_ctx = _new_context()  # one arena for the process; lives until exit

_OP_NAMES = {lib.AG_LEAF: "", lib.AG_ADD: "+", lib.AG_MUL: "*", lib.AG_POW: "**",
             lib.AG_RELU: "ReLU", lib.AG_TANH: "tanh", lib.AG_EXP: "exp",
             lib.AG_LOG: "log", lib.AG_SIGMOID: "sigmoid"}
_opaque_op_names = {}  # node id -> the _op string a user gave Value(...)


def _number(x):
    """(x as a C double, 1 if it is a Python int else 0); TypeError otherwise."""
    t = type(x)
    if t is float:
        return x, 0
    if t is int or t is bool:
        return x, 1
    if isinstance(x, numbers.Integral):
        return int(x), 1
    if isinstance(x, numbers.Real):
        return float(x), 0
    raise TypeError(f"Value needs an int or float, got {t.__name__}: {x!r}")


_new = object.__new__
_apply, _apply_const = lib.ag_apply, lib.ag_apply_const
_ADD, _MUL, _POW, _POWK = lib.AG_ADD, lib.AG_MUL, lib.AG_POW, lib.AG_POW_CONST


def _wrap(i):
    """A Value for the node id (or negated status) i, which owns one handle."""
    if i < 0:
        _fail(i)
    v = _new(Value)
    v._i = i
    return v


def _binary(op, a, b, const_first=0):
    """op(a, b) for a Value a and a Value or number b."""
    if isinstance(b, Value):
        return _wrap(_apply(_ctx, op, b._i, a._i, 0.0, 0) if const_first
                     else _apply(_ctx, op, a._i, b._i, 0.0, 0))
    t = type(b)
    if t is float:
        return _wrap(_apply_const(_ctx, op, a._i, b, 0, const_first))
    if t is int:
        return _wrap(_apply_const(_ctx, op, a._i, b, 1, const_first))
    x, x_int = _number(b)
    return _wrap(_apply_const(_ctx, op, a._i, x, x_int, const_first))


def _unary(op, a, k=0.0, k_int=0):
    return _wrap(_apply(_ctx, op, a._i, -1, k, k_int))


class Value:
    """A scalar in the graph: micrograd's Value, computed in C."""

    __slots__ = ("_i", "_label", "__weakref__")

    def __init__(self, data, _children=(), _op="", label="", *, children=None, op=None):
        x, x_int = _number(data)
        kids = tuple(_children if children is None else children)
        op = _op if op is None else op
        if not kids:
            i = lib.ag_leaf(_ctx, x, x_int)
        else:
            if len(kids) > 2 or not all(isinstance(k, Value) for k in kids):
                raise ValueError("Value(data, children): children must be at most two Values")
            ids = [k._i for k in kids] + [-1, -1]
            i = lib.ag_opaque(_ctx, x, x_int, ids[0], ids[1])
        if i < 0:
            _fail(i, "Value")
        self._i = i
        if kids:
            _opaque_op_names[i] = str(op)
        if label:
            self.label = label

    def __del__(self, _release=lib.ag_release, _ctx=_ctx):
        try:
            i = self._i
        except AttributeError:  # __init__ raised before a node existed
            return
        _release(_ctx, i)

    # -- data and grad: Python int where micrograd keeps int ------------------
    @property
    def data(self):
        d = lib.ag_data(_ctx, self._i)
        return int(d) if lib.ag_flags(_ctx, self._i) & lib.AG_DATA_INT else d

    @data.setter
    def data(self, value):
        lib.ag_set_data(_ctx, self._i, *_number(value))

    @property
    def grad(self):
        g = lib.ag_grad(_ctx, self._i)
        return int(g) if lib.ag_flags(_ctx, self._i) & lib.AG_GRAD_INT else g

    @grad.setter
    def grad(self, value):
        lib.ag_set_grad(_ctx, self._i, *_number(value))

    # -- the graph ------------------------------------------------------------
    def _node(self):
        info = ffi.new("ag_node *")
        lib.ag_node_info(_ctx, self._i, info)
        return info

    @property
    def _prev(self):
        """The set of child Values (each equal to the Value a user holds)."""
        info = self._node()
        kids = set()
        for j in (info.a, info.b):
            if j >= 0:
                lib.ag_retain(_ctx, j)
                kids.add(_wrap(j))
        return kids

    _children = _prev

    @property
    def _op(self):
        info = self._node()
        if info.op == lib.AG_POW_CONST:
            return f"**{int(info.k) if info.flags & lib.AG_K_INT else info.k}"
        if info.op == lib.AG_OPAQUE:
            return _opaque_op_names.get(self._i, "")
        return _OP_NAMES[info.op]

    def __eq__(self, other):  # one node, one identity
        return isinstance(other, Value) and other._i == self._i

    def __hash__(self):
        return hash(self._i)

    @property
    def label(self):
        return getattr(self, "_label", "")

    @label.setter
    def label(self, text):
        self._label = text

    # -- ops: micrograd's, built the same way -----------------------------------
    def __add__(self, other): return _binary(_ADD, self, other)
    def __mul__(self, other): return _binary(_MUL, self, other)
    def __radd__(self, other): return _binary(_ADD, self, other)  # self + other
    def __rmul__(self, other): return _binary(_MUL, self, other)  # self * other
    def __neg__(self): return self * -1
    def __sub__(self, other): return self + (-other)
    def __rsub__(self, other): return other + (-self)
    def __truediv__(self, other): return self * other**-1
    def __rtruediv__(self, other): return other * self**-1

    def __pow__(self, other):
        if isinstance(other, Value):
            return _binary(_POW, self, other)
        return _unary(_POWK, self, *_number(other))

    def __rpow__(self, other): return _binary(_POW, self, other, const_first=1)
    def relu(self): return _unary(lib.AG_RELU, self)
    def tanh(self): return _unary(lib.AG_TANH, self)
    def exp(self): return _unary(lib.AG_EXP, self)
    def log(self): return _unary(lib.AG_LOG, self)
    def sigmoid(self): return _unary(lib.AG_SIGMOID, self)

    def backward(self):
        """micrograd's backward: grad of self = 1, accumulated into all it reaches."""
        lib.ag_backward(_ctx, self._i)

    def __repr__(self):
        return f"Value(data={self.data}, grad={self.grad})"
