"""Value: micrograd's API as a thin facade over the C node arena.

A Value holds only the handle of its node (one reference in the arena);
data, grad and the graph live in C.  A handle whose node was freed (a
Value that outlived its own finalizer) is refused by C: ReferenceError.
Graphs are built micrograd's way (`a - b` is `a + (-b)`, `a / b` is
`a * b**-1`, ...) so every number comes out the same.

This module holds Value and what only Value needs; the C context, error
mapping and release of dead Values are _session's.
"""
import functools
import gc
import numbers
import weakref

try:
    from _weakref import _remove_dead_weakref  # CPython: one step, under the GIL
except ImportError:  # pragma: no cover
    def _remove_dead_weakref(d, key):
        ref = d.get(key)
        if ref is not None and ref() is None:
            d.pop(key, None)

from ._autograd_c import ffi, lib
from ._session import DEAD_BATCH as _DEAD_BATCH, ctx as _ctx, dead as _dead, fail as _fail
from ._session import release_dead as _release_dead, retry as _retry, sweeps as _sweeps
from ._session import open_grad_modes as _grad_modes

_recording = lib.ag_is_grad_enabled

_labelled = weakref.WeakValueDictionary()  # node handle -> the Value its label was set on
# one argument: cffi's fast calls; a float, or NaN and then the typed read
_float_data, _float_grad = lib.ag_float_data, lib.ag_float_grad
_read_data, _read_grad = lib.ag_read_data, lib.ag_read_grad
_set_data, _set_grad = lib.ag_set_data, lib.ag_set_grad
_set_float_data, _set_float_grad = lib.ag_set_float_data, lib.ag_set_float_grad
_USER_RULE = lib.AG_ERR_USER_RULE


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
_apply, _new_leaf = lib.ag_apply, lib.ag_leaf
# fewer arguments, cheaper calls (on the facade context)
_apply_k = lib.ag_apply_k  # and ag_eager_<op> for a Value operand
_float_leaf, _int_leaf = lib.ag_float_leaf, lib.ag_int_leaf
_ADD, _MUL, _POW, _POWK = lib.AG_ADD, lib.AG_MUL, lib.AG_POW, lib.AG_POW_CONST


def _binary_op(op, of_values, const_first=0):
    """The method a.op(b) for a Value a and a Value or number b: one call
    into C (of_values: op's ag_eager_ function, for a Value b).
    NotImplemented for an operand that is no number, so the other operand's
    reflected method, then Python's TypeError, get their turn."""
    float_code = op | (lib.AG_K_FIRST if const_first else 0)  # ag_apply_k's
    int_code = float_code | lib.AG_K_IS_INT

    def method(a, b):
        t = type(b)  # the common kinds first, fewest tests for the commonest:
        if t is float:  # a float (the chain's), one test
            code = float_code
        elif t is Value or (t is not int and isinstance(b, Value)):
            i = of_values(a._i, b._i)  # a Value (a neuron's w * x, its sum):
            if i < 0:                  # two tests, 16 ns an op cheaper than
                i = _retry(i, of_values, a._i, b._i)  # after three
            v = _new(Value)
            v._i = i
            if not _grad_modes or _recording():  # for _prev: the operands
                v._a = a                         # kept, as micrograd's
                v._b = b                         # _prev keeps them
            return v
        elif t is int:
            code = int_code
        else:
            try:
                b, x_int = _number(b)
            except TypeError:
                return NotImplemented
            code = int_code if x_int else float_code
        i = _apply_k(code, a._i, b)
        if i < 0:
            i = _retry(i, _apply_k, code, a._i, b)
        v = _new(Value)
        v._i = i
        if not _grad_modes or _recording():  # the operand kept
            v._a = a
        return v
    return method


_POW_VALUE = _binary_op(_POW, lib.ag_eager_pow)  # Value.__pow__ for a Value exponent


def _user_node(data, children, op):
    """(node handle, children kept) of Value(data, children, op): a leaf, or
    a node of the user's own op (micrograd keeps its children and name;
    gradient stops) -- without children while recording is off (no_grad).
    Everything that can raise is done before the node is made."""
    x, x_int = _number(data)
    kids = tuple(children)
    if not kids and not op:
        args = (_new_leaf, _ctx, x, x_int)
    else:
        if not all(isinstance(k, Value) for k in kids):
            raise ValueError("Value(data, children): children must be Values")
        if not _recording():
            kids = ()
        handles = [k._i for k in kids] + [-1, -1]  # C keeps two; Python all
        name = str(op).encode("utf-8", "surrogatepass")
        args = (lib.ag_opaque, _ctx, x, x_int, handles[0], handles[1], name)
    i = args[0](*args[1:])
    if i < 0:
        i = _retry(i, *args)
    return i, kids


def _apply_checked(op, a, k, k_int):
    """A Value for op(a) (k: the exponent of **)."""
    i = _apply(_ctx, op, a._i, -1, k, k_int)
    if i < 0:
        i = _retry(i, _apply, _ctx, op, a._i, -1, k, k_int)
    v = _new(Value)
    v._i = i
    if not _grad_modes or _recording():
        v._a = a
    return v


def _unary_op(of_value):
    """The method a.op() of a one-child op: one call into C, of the op's
    one-argument ag_eager_ function."""
    def method(a):
        i = of_value(a._i)
        if i < 0:
            i = _retry(i, of_value, a._i)
        v = _new(Value)
        v._i = i
        if not _grad_modes or _recording():
            v._a = a
        return v
    return method


# Values of the user's own ops -- a rule set with `v._backward = f`, or more
# than two children -- by node handle: the Value carries them, and stays
# while its node does (the node may outlive the Value: then _kept has it).
_user_values = weakref.WeakValueDictionary()
_kept = {}
_user_classes = {}  # a Value class -> its subclass with the finalizer below

# Values an operator did not make, by node handle (weakly): C's (a layer's
# outputs, those _prev made) and those given to C's bulk constructors.  An
# operator's result keeps its operands (_a, _b); with these, _prev finds every
# Value of a child node that is alive, as the user holds it.
_known = {}


def _forget(ref):
    """A known Value died: drop its entry -- if it is still the dead one
    (one C step: a thread may have put a live one there meanwhile)."""
    _remove_dead_weakref(_known, ref.key)


def _know(v):
    """The Value _prev is to give for v's node: v, or the live one known
    before it (one atomic setdefault decides between racing threads)."""
    ref = weakref.KeyedRef(v, _forget, v._i)
    known = _known.setdefault(v._i, ref)
    if known is ref:
        return v
    w = known()
    if w is None:  # died; its callback is about to drop it
        _known[v._i] = ref
        return v
    return w


def _known_value(i):
    """The live Value known for node i, or None."""
    ref = _known.get(i)
    return None if ref is None else ref()


def _value_of(i):
    """A live Value of node i: the one known, or a new one (one more
    reference on the node), known from then on."""
    v = _known_value(i)
    if v is None:
        status = lib.ag_retain(_ctx, i)
        if status:
            _fail(status, "Value._prev")
        v = _new(Value)
        v._i = i  # the reference just taken; given back if another thread's wins
        v = _know(v)
    return v


def _user_value(i):
    """The Value carrying node i's own rule or children, or None."""
    v = _user_values.get(i)
    return v if v is not None else _kept.get(i)


def _keep_with_node(v):
    """Register v as carrying its node's rule or children, and give it the
    finalizer that keeps it while the node lives on (a subclass of its
    class, same layout: no cost for any other Value)."""
    _user_values[v._i] = v
    cls = type(v)
    if cls.__del__ is not _user_value_del:
        sub = _user_classes.get(cls)
        if sub is None:
            sub = _user_classes[cls] = type(cls.__name__, (cls,), {
                "__slots__": (), "__del__": _user_value_del,
                "__module__": cls.__module__, "__qualname__": cls.__qualname__})
        v.__class__ = sub


def _node_info(i, what):
    """The C record of node i (ag_node: op, children, exponent, flags,
    references); what names the caller in the error for a bad handle."""
    info = ffi.new("ag_node *")
    status = lib.ag_node_info(_ctx, i, info)
    if status:
        _fail(status, what)
    return info


def _user_rule(i):
    """The rule the user set on node i's Value (`v._backward = f`), or None."""
    own = _user_value(i)
    return getattr(own, "_rule", None)


def _user_value_del(self):
    """A user op's Value dies: while other nodes or handles still reach its
    node, keep it (and with it its rule and children) until they are gone."""
    i = self._i
    if i < 0:
        return
    if _node_info(i, "Value.__del__").refs > 1:
        _kept[i] = self  # resurrected; _sweep_kept releases it later
        return
    _dead.append(i)


_user_value_del.__qualname__ = "Value.__del__"  # the recovery's hook knows it


def _sweep_kept():
    """Release the kept Values whose node nothing else reaches any more;
    True when it released one (their rules' closures go with them, and the
    Values those held may free more).  Threads may sweep at once: each
    entry is taken by the one thread whose pop gets it."""
    if not _kept:  # the common case: no ffi.new, run before every release
        return False
    released = False
    info = ffi.new("ag_node *")
    for i in list(_kept):  # a finalizer may add to it meanwhile
        if lib.ag_node_info(_ctx, i, info):  # freed: another thread's sweep
            _kept.pop(i, None)                # released it (or is about to)
            continue
        if info.refs > 1:  # still reached
            continue
        v = _kept.pop(i, None)
        if v is not None:
            for name in ("_rule", "_kids"):  # the closure's cycle with v
                if hasattr(v, name):
                    delattr(v, name)
            status = lib.ag_release(_ctx, i)  # v's finalizer has run already
            if status:
                _fail(status, "releasing a user op's node")
            released = True
    return released


_sweeps.append(_sweep_kept)


def _backward_with_user_rules(root):
    """backward() when rules of the user's own ops may be reached: the
    topological order walked here (children first, micrograd's order), then
    each node's rule -- the user's, or the engine's for the node."""
    order, seen, stack = [], set(), [(root, False)]
    while stack:
        v, finished = stack.pop()
        if finished:
            order.append(v)
        elif v not in seen:
            seen.add(v)
            stack.append((v, True))
            stack.extend((k, False) for k in v._prev)
    root.grad = 1
    for v in reversed(order):
        rule = _user_rule(v._i)
        if rule is not None:
            rule()
        else:
            _backprop_node(v._i)


def _is_operand(x):
    """x can meet a Value in an operator: a Value or a real number."""
    t = type(x)
    return t is float or t is int or isinstance(x, (Value, numbers.Real))


def _drop_old_node(v):
    """v.__init__ called on a Value that has a node: give that node's
    reference back (a subclass may have set other attributes first)."""
    try:
        _dead.append(v._i)
    except AttributeError:
        pass


def _number_property(read_float, read_typed, write_float, write, name):
    """Value.data or .grad: a float is read in one one-argument call (NaN
    for anything else: an int, a NaN or a stale handle, which the typed
    read tells apart) and written in a two-argument one; Python's int type
    is kept."""
    def get(self):
        x = read_float(self._i)
        if x == x:
            return x
        r = read_typed(self._i)  # an int (value + 1j), a NaN or a status
        return int(r.real) if r.imag > 0 else _typed(r, name)

    def set(self, value):
        t = type(value)
        if t is float:
            status = write_float(self._i, value)
        elif t is int:
            status = write(_ctx, self._i, value, 1)
        else:
            status = write(_ctx, self._i, *_number(value))
        if status:
            _fail(status, name)
    return property(get, set)


class Value:
    """A scalar in the graph: micrograd's Value, computed in C."""

    # the node's handle and its operands' Values (_a, _b: for _prev); any
    # other attribute (a label, a user op's rule and children, the user's
    # own: `p.m = 0.0`) goes in __dict__, made only when one is set
    __slots__ = ("_i", "_a", "_b", "__weakref__", "__dict__")

    def __init__(self, data, _children=(), _op="", label="", *, children=None, op=None,
                 _referents=gc.get_referents):
        t = type(data)
        kids = ()
        if (t is float or t is int) and not (_children or _op or children or op):
            leaf = _float_leaf if t is float else _int_leaf  # the common case: a plain leaf
            i = leaf(data)
            if i < 0:
                i = _retry(i, leaf, data)
        else:
            i, kids = _user_node(data, _children if children is None else children,
                                 _op if op is None else op)
        if len(_referents(self)) > 1:  # not a fresh object: __init__ again?
            _drop_old_node(self)
        self._i = i
        if kids:
            self._kids = kids
            if len(kids) > 2:  # C keeps two; Python all, on this Value
                _keep_with_node(self)
        if label:
            self.label = label

    @classmethod
    def _from_handle(cls, i):
        """The Value of node handle i, taking over one reference the caller
        owns (as a C constructor returns it): for the package's own C calls."""
        v = _new(cls)
        v._i = i
        return v

    @staticmethod
    def _labels():
        """(node handle, label) of every node with a label: for the package
        (a Graph's pickle carries its nodes' labels)."""
        return [(i, v._label) for i, v in list(_labelled.items())]

    @staticmethod
    def _remember(values):
        """Let _prev find these Values as the user holds them, though the
        nodes above them are made by C (nn's layers), not by an operator
        (whose result keeps its operands).  Cheap for the ones known."""
        for v in values:
            if _known_value(v._i) is None:
                _know(v)

    def __del__(self, _append=_dead.append, _dead=_dead):
        try:
            _append(self._i)
        except AttributeError:  # __init__ raised before a node existed
            return
        if len(_dead) >= _DEAD_BATCH:
            _release_dead()

    # -- data and grad: Python int where micrograd keeps int ------------------
    data = _number_property(_float_data, _read_data, _set_float_data, _set_data, "Value.data")
    grad = _number_property(_float_grad, _read_grad, _set_float_grad, _set_grad, "Value.grad")

    # -- the graph ------------------------------------------------------------
    def _node(self):
        """The C record of this node: op, children a and b, exponent k, flags."""
        return _node_info(self._i, "Value._node")

    @property
    def _prev(self):
        """The set of child Values: the very objects the node was made from
        (as micrograd's _prev), or while one is alive, the Value of that
        node the user holds; else one made here, kept, the same each call."""
        info = self._node()
        if info.op == lib.AG_OPAQUE:  # the user's op: its children as given
            own = getattr(self, "_kids", None) or getattr(_user_value(self._i), "_kids", None)
            if own is not None or (info.a < 0 and info.b < 0):
                return set(own or ())
        held = {k._i: k for k in (getattr(self, "_a", None), getattr(self, "_b", None))
                if k is not None}
        kids = [held.get(j) or _value_of(j) for j in (info.a, info.b) if j >= 0]
        for name, k in zip(("_a", "_b"), kids):  # keep what it had not kept
            setattr(self, name, k)
        return set(kids)

    _children = _prev

    @property
    def _op(self):
        """micrograd's name of the op that made this node: C's name of it
        ("" for a leaf), with the exponent of a ** by a number ("**2"); the
        user's string for Value(data, children, op)."""
        info = self._node()
        if info.op == lib.AG_OPAQUE:
            return _node_name(self._i)
        name = ffi.string(lib.ag_op_name(info.op)).decode()
        if info.op == lib.AG_POW_CONST:
            return f"{name}{int(info.k) if info.flags & lib.AG_K_INT else info.k}"
        return name

    def __eq__(self, other):  # one node, one identity
        return isinstance(other, Value) and other._i == self._i

    def __hash__(self):
        return hash(self._i)

    @property
    def label(self):
        """A name for pictures.  Seen on every Value of the same node (those
        _prev gives) while the Value it was set on is alive."""
        try:
            return self._label
        except AttributeError:
            owner = _labelled.get(self._i)
            return "" if owner is None else owner._label

    @label.setter
    def label(self, text):
        self._label = text
        _labelled[self._i] = self  # it holds the node: the id is not reused meanwhile

    # -- ops: micrograd's, built the same way -----------------------------------
    __add__ = __radd__ = _binary_op(_ADD, lib.ag_eager_add)  # micrograd's radd is self + other
    __mul__ = __rmul__ = _binary_op(_MUL, lib.ag_eager_mul)
    __rpow__ = _binary_op(_POW, lib.ag_eager_pow, const_first=1)
    relu = _unary_op(lib.ag_eager_relu)
    tanh = _unary_op(lib.ag_eager_tanh)
    exp = _unary_op(lib.ag_eager_exp)
    log = _unary_op(lib.ag_eager_log)
    sigmoid = _unary_op(lib.ag_eager_sigmoid)
    __abs__ = _unary_op(lib.ag_eager_abs)

    def __neg__(self): return self * -1

    # micrograd's derived ops; NotImplemented for what is no operand, so
    # Python names both types in its TypeError as for any other operator
    def __sub__(self, other):
        return self + (-other) if _is_operand(other) else NotImplemented

    def __rsub__(self, other):
        return other + (-self) if _is_operand(other) else NotImplemented

    def __truediv__(self, other):
        return self * other**-1 if _is_operand(other) else NotImplemented

    def __rtruediv__(self, other):
        return other * self**-1 if _is_operand(other) else NotImplemented

    def __pow__(self, other):
        if isinstance(other, Value):
            return _POW_VALUE(self, other)
        try:
            k, k_int = _number(other)
        except TypeError:
            return NotImplemented
        return _apply_checked(_POWK, self, k, k_int)

    @property
    def _backward(self):
        """micrograd's per-node rule: calling it adds this node's
        contributions, from its grad as it is now, to its children's grads
        (a leaf's does nothing).  Called for every node in reverse
        topological order after root.grad = 1, it is root.backward()."""
        rule = _user_rule(self._i)
        return rule if rule is not None else functools.partial(_backprop_node, self._i)

    @_backward.setter
    def _backward(self, rule):
        """A rule of the user's own op, as micrograd's ops set theirs
        (`out._backward = _backward`): backward() calls it for this node."""
        if not callable(rule):
            raise TypeError(f"_backward must be callable, got {type(rule).__name__}")
        info = self._node()
        if info.a < 0 and info.b < 0:  # no children (made under no_grad):
            return                     # no graph for the rule to be part of
        status = lib.ag_set_user_rule(_ctx, self._i)
        if status:
            _fail(status, "Value._backward")
        self._rule = rule
        _keep_with_node(self)

    def backward(self):
        """micrograd's backward: grad of self = 1, accumulated into all it reaches."""
        status = lib.ag_backward(_ctx, self._i)
        if status == _USER_RULE:  # it reaches an op of the user's own: Python runs it
            return _backward_with_user_rules(self)
        if status:
            _fail(status, "Value.backward")

    def __repr__(self):
        return f"Value(data={self.data}, grad={self.grad})"

    def detach(self):
        """A new leaf with the same data (int stays int): gradient stops here."""
        return Value(self.data)

    def __reduce__(self):
        """Pickle this node alone, as a leaf with its data, grad, label and
        the user's own attributes: the graph behind it is not pickled."""
        return _leaf, (self.data, self.grad, self.label), _own_attributes(self) or None

    def __copy__(self):
        """A new node like this one -- op, data, grad, name, label -- with the
        same children: the copy is part of the same graph below it."""
        info = self._node()
        v = Value._from_handle(_copy_node(self._i, info.a, info.b))
        v.__dict__.update(_own_attributes(self))
        for name in ("_a", "_b", "_kids"):  # the same children
            if hasattr(self, name):
                setattr(v, name, getattr(self, name))
        if self.label:
            v.label = self.label
        return v

    def __deepcopy__(self, memo):
        """An independent copy of the graph this Value reaches: the same
        structure, data, grads and labels, node for node, so that backward()
        through it reaches its own copied leaves.  Within one deepcopy, a node
        reached twice (a shared child, or another Value of the same node) is
        copied once."""
        copies = memo.setdefault(id(_DEEPCOPY_NODES), {})  # handle -> new Value
        for h, a, b in _children_first(self._i, copies):
            kids = [copies[j] for j in (a, b) if j >= 0]
            v = Value._from_handle(_copy_node(h, *(copies[j]._i if j >= 0 else -1
                                                   for j in (a, b))))
            for name, k in zip(("_a", "_b"), kids):
                setattr(v, name, k)
            owner = _labelled.get(h)
            if owner is not None:
                v.label = owner._label
            copies[h] = v
        return copies[self._i]


def _own_attributes(v):
    """The attributes the user set on v (`p.m = 0.0`), not the engine's."""
    return {k: x for k, x in vars(v).items() if k not in ("_label", "_rule", "_kids")}


_DEEPCOPY_NODES = object()  # the key of Value.__deepcopy__'s table in a memo


def _copy_node(h, a, b):
    """ag_copy_node: the handle of a new node like h with children a, b."""
    i = lib.ag_copy_node(_ctx, h, a, b)
    return i if i >= 0 else _retry(i, lib.ag_copy_node, _ctx, h, a, b)


def _children_first(root, done):
    """(handle, child a, child b) of every node root reaches that is not in
    done, each after its children (iterative: any depth)."""
    order, stack, seen = [], [root], set(done)
    info = ffi.new("ag_node *")
    while stack:
        h = stack[-1]
        if h in seen:
            stack.pop()
            continue
        status = lib.ag_node_info(_ctx, h, info)
        if status:
            _fail(status, "copy")
        kids = [k for k in (info.a, info.b) if k >= 0 and k not in seen]
        if kids:
            stack.extend(reversed(kids))
            continue
        seen.add(h)
        stack.pop()
        order.append((h, info.a, info.b))
    return order


def _typed(r, what):
    """The number of a read (value + 1j if it is an int, or the status)."""
    t = r.imag
    if not t:
        return r.real
    if t > 0:
        return int(r.real)
    _fail(int(t), what)  # a stale handle


def _backprop_node(i):
    status = lib.ag_backprop_node(_ctx, i)
    if status:
        _fail(status, "Value._backward")


def _node_name(i):
    """The name a user gave Value(data, children, name) to node i, kept in C
    and freed with the node."""
    buf = ffi.new("char[]", 64)
    n = lib.ag_node_name(_ctx, i, buf, 64)
    if n >= 64:
        buf = ffi.new("char[]", n + 1)
        n = lib.ag_node_name(_ctx, i, buf, n + 1)
    if n < 0:
        _fail(n, "Value._op")
    return ffi.string(buf, n).decode("utf-8", "surrogatepass")


def _leaf(data, grad=0, label=""):
    """The leaf an unpickled Value becomes (see Value.__reduce__)."""
    v = Value(data, label=label)
    v.grad = grad
    return v
