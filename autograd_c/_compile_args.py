"""The arguments of a compiled call (autograd_c.compile): their signature
-- nesting and the kind of each number -- and the flat list of their
numbers; the arguments rebuilt from a signature; the columns of rows.

A signature is a nested tuple: "i", "f" or "v" (an int, a float, a Value)
for each number, (list, items) or (tuple, items) for each list or tuple;
(positional signature, ((name, signature), ...) sorted by name) for a call.
"""
import numbers

from .engine import Value


def _walk(x, cells, values):
    """The signature of argument x -- "i", "f", "v" or (list/tuple, items) --
    appending its numbers to cells (a Python int or float each: an int for
    a bool or any Integral, a float for any other Real) and (position in
    cells, Value) to values for each Value.  None if something in x is of
    no kind."""
    t = type(x)
    if t is float or t is int:
        cells.append(x)
        return "f" if t is float else "i"
    if t is list or t is tuple or isinstance(x, (list, tuple)):
        items = []
        for item in x:
            ti = type(item)
            if ti is float or ti is int:  # the common case, without a call
                cells.append(item)
                items.append("f" if ti is float else "i")
                continue
            sig = _walk(item, cells, values)
            if sig is None:
                return None
            items.append(sig)
        return (list if isinstance(x, list) else tuple, tuple(items))
    if isinstance(x, Value):
        values.append((len(cells), x))
        cells.append(x.data)
        return "v"
    if isinstance(x, numbers.Integral):
        cells.append(int(x))
        return "i"
    if isinstance(x, numbers.Real):
        cells.append(float(x))
        return "f"
    return None


def _bad_argument(x, path):
    """The path ('X[3][1]') of the first part of x that is no argument, and it."""
    if isinstance(x, (list, tuple)):
        for i, item in enumerate(x):
            found = _bad_argument(item, f"{path}[{i}]")
            if found is not None:
                return found
        return None
    if isinstance(x, (Value, numbers.Real)):
        return None
    return path, x


def _parameter_names(fn, n):
    """Names for fn's first n positional arguments, for error messages."""
    code = getattr(fn, "__code__", None)
    names = list(code.co_varnames[:code.co_argcount]) if code is not None else []
    return [names[i] if i < len(names) else f"args[{i}]" for i in range(n)]


def signature(fn, args, kwargs):
    """(signature, numbers, (position, Value) of each Value argument) of a
    call; TypeError naming a bad argument."""
    cells, values = [], []
    sig = _walk(args, cells, values)
    kw = tuple((name, _walk(kwargs[name], cells, values)) for name in sorted(kwargs))
    if sig is None or any(s is None for _, s in kw):
        named = list(zip(_parameter_names(fn, len(args)), args)) + list(kwargs.items())
        for name, x in named:
            found = _bad_argument(x, name)
            if found is not None:
                path, bad = found
                raise TypeError(f"compiled {name_of(fn)}: argument {path} is a "
                                f"{type(bad).__name__}, not a number, a Value or a "
                                f"list/tuple of them")
    return (sig, kw), cells, values


def rebuild(sig, leaves):
    """The arguments of signature sig with the Values of the iterator leaves."""
    if type(sig) is tuple:
        container, items = sig
        return container(rebuild(s, leaves) for s in items)
    return next(leaves)


def name_of(fn):
    """fn's name for messages: its qualified name, a partial's function's,
    else its type's."""
    name = getattr(fn, "__qualname__", None)
    if name is None:
        inner = getattr(fn, "func", None)
        return name_of(inner) if callable(inner) else type(fn).__qualname__
    return name


def columns(rows, keep, width):
    """The columns keep of rows (width numbers each): the inputs a graph
    reaches, for Graph.run."""
    try:
        view = memoryview(rows)
    except TypeError:
        picked = []
        for i, row in enumerate(rows):
            row = list(row)
            if len(row) != width:
                raise ValueError(f"rows[{i}] has {len(row)} numbers, but the arguments "
                                 f"hold {width}") from None
            picked.append([row[j] for j in keep])
        return picked
    with view:
        cells, ndim = view.tolist(), view.ndim
    if ndim == 1:
        cells = [cells[r:r + width] for r in range(0, len(cells), width)]
    return columns(cells, keep, width)
