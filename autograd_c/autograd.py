"""PyTorch-style autograd controls: no_grad / enable_grad, grad(), trace().

Recording is switched per thread in C (ag_set_grad_enabled): while it is off,
every op on that thread returns a leaf holding the computed value, so no
graph is kept and backward() through the result reaches nothing else.
"""
import functools
import inspect
import numbers
import threading
from typing import Any, Callable, Iterable, List, Optional, Sequence, Set, Tuple, TypeVar, Union

from ._autograd_c import lib
from ._session import open_grad_modes
from .engine import Value

F = TypeVar("F", bound=Callable[..., Any])
Values = Union[Value, Sequence[Value]]

# .stack: this thread's (block, setting before it) for each block entered and
# not yet left -- in order of entry, but not always left in reverse order: a
# generator may leave a block open at a yield while its caller's blocks end
_saved = threading.local()


class _GradMode:
    """Set this thread's recording to `enabled` inside a with-block or a
    decorated function, then restore what it was (nesting works).  A
    decorated generator function records with the mode only while its body
    runs: each time it is resumed until it yields, returns or raises (as
    torch's decorators do); the caller's mode holds in between."""

    enabled = True

    def __new__(cls, func: Optional[Callable[..., Any]] = None) -> Any:
        self = super().__new__(cls)
        return self if func is None else self(func)  # bare @no_grad

    def __enter__(self) -> None:
        stack = _saved.__dict__.setdefault("stack", [])
        open_grad_modes.append(None)
        stack.append((self, lib.ag_set_grad_enabled(self.enabled)))

    def __exit__(self, *exc: Any) -> None:
        """Restore the setting before this block's latest __enter__ (the top
        of the stack, unless a generator suspended inside another block)."""
        stack = _saved.stack
        for k in range(len(stack) - 1, -1, -1):
            if stack[k][0] is self:
                lib.ag_set_grad_enabled(stack.pop(k)[1])
                try:
                    open_grad_modes.pop()
                except IndexError:  # its __enter__ was interrupted before the append
                    pass
                return

    def __call__(self, func: F) -> F:
        if not callable(func):
            raise TypeError(f"{type(self).__name__}() decorates a function, got {func!r}")
        mode = type(self)
        if inspect.isgeneratorfunction(func):
            return _generator_in_mode(mode, func)  # type: ignore[return-value]

        @functools.wraps(func)
        def wrapper(*args: Any, **kwargs: Any) -> Any:
            with mode():
                return func(*args, **kwargs)
        return wrapper  # type: ignore[return-value]


def _generator_in_mode(mode: Callable[[], _GradMode], func: Callable[..., Any]) -> Any:
    """A generator function that drives func's generator, each step (next,
    send, throw, close) inside a fresh mode() block: the mode holds while
    func's body runs, the caller's between the yields."""
    @functools.wraps(func)
    def generator(*args: Any, **kwargs: Any) -> Any:
        gen = func(*args, **kwargs)
        try:
            with mode():
                response = gen.send(None)
            while True:
                try:
                    request = yield response
                except GeneratorExit:
                    with mode():
                        gen.close()
                    raise
                except BaseException as thrown:  # caller's gen.throw(...): into func
                    with mode():
                        response = gen.throw(thrown)
                else:
                    with mode():
                        response = gen.send(request)
        except StopIteration as done:
            return done.value
    return generator


class no_grad(_GradMode):
    """Record no graph on this thread: ops return leaves (torch.no_grad).
    Use as `with no_grad():`, `@no_grad()` or `@no_grad`."""

    enabled = False


class enable_grad(_GradMode):
    """Record the graph again inside a no_grad block (torch.enable_grad)."""

    enabled = True


def is_grad_enabled() -> bool:
    """True unless this thread is inside no_grad."""
    return bool(lib.ag_is_grad_enabled())


def _as_values(x: Values, what: str) -> List[Value]:
    seq = [x] if isinstance(x, Value) else list(x) if isinstance(x, Iterable) else None
    if not seq or not all(isinstance(v, Value) for v in seq):
        raise TypeError(f"{what} must be a Value or a non-empty sequence of Values, got {x!r}")
    return seq


def trace(roots: Values) -> Tuple[List[Value], List[Tuple[Value, Value]]]:
    """Every node reachable from roots (via _prev) and every (child, parent)
    link, each once: a node shared by several parents is one node.  Iterative,
    so graphs of any depth; nodes in depth-first discovery order."""
    nodes: List[Value] = []
    edges: List[Tuple[Value, Value]] = []
    seen: Set[Value] = set()
    stack = _as_values(roots, "roots")
    while stack:
        v = stack.pop()
        if v in seen:
            continue
        seen.add(v)
        nodes.append(v)
        first = v._node().a
        for child in sorted(v._prev, key=lambda c: c._i != first):  # operand order
            edges.append((child, v))
            if child not in seen:
                stack.append(child)
    return nodes, edges


def grad(outputs: Values, inputs: Values, grad_outputs: Any = None, *,
         allow_unused: bool = False) -> Tuple[Optional[Union[int, float]], ...]:
    """d(outputs)/d(inputs) as a tuple of numbers, like torch.autograd.grad:
    no .grad anywhere is changed.  Several outputs are summed, weighted by
    grad_outputs (numbers) when given.  An input that outputs do not reach
    raises RuntimeError, or gives None with allow_unused=True.

    Works by saving the .grad of every node the outputs reach, zeroing them,
    running backward() and restoring every saved .grad (int or float as it
    was), so it must not race with another thread's backward() on the same
    nodes."""
    outs, ins = _as_values(outputs, "outputs"), _as_values(inputs, "inputs")
    weights: Optional[List[Any]] = None if grad_outputs is None else (
        [grad_outputs] if isinstance(grad_outputs, numbers.Real) else list(grad_outputs))
    if weights is not None and len(weights) != len(outs):
        raise ValueError(f"grad_outputs has {len(weights)} entries for {len(outs)} outputs")
    nodes, _ = trace(outs)
    reached = set(nodes)
    unused = [i for i, v in enumerate(ins) if v not in reached]
    if unused and not allow_unused:
        raise RuntimeError(f"inputs {unused} are not reached from the outputs; "
                           "pass allow_unused=True to get None for them")
    saved = [(v, v.grad) for v in nodes]
    try:
        for v in nodes:
            v.grad = 0
        if len(outs) == 1 and weights is None:
            root = outs[0]
        else:
            with enable_grad():  # a temporary sum node, freed on return
                terms = outs if weights is None else [o * w for o, w in zip(outs, weights)]
                root = terms[0]
                for term in terms[1:]:
                    root = root + term
        root.backward()
        return tuple(v.grad if v in reached else None for v in ins)
    finally:
        for v, g in saved:
            v.grad = g
