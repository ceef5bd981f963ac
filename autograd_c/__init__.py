"""autograd_c: micrograd's scalar autograd engine, with the graph in C."""
try:  # the compiled engine, which everything below calls
    from ._autograd_c import ffi as _ffi  # noqa: F401
except ImportError as error:
    raise ImportError(
        f"autograd_c cannot load its compiled extension _autograd_c from {__path__[0]}.  "
        f"In a source checkout, build it in place (python setup.py build_ext --inplace) "
        f"or install with pip install -e .; after a plain pip install ., run Python from "
        f"outside the checkout, whose autograd_c folder hides the installed package."
    ) from error

from ._session import set_node_limit, stats, trim
from .engine import Value
from .autograd import enable_grad, grad, is_grad_enabled, no_grad
from .viz import draw_dot, to_dot
from . import losses, nn, optim
from .graph import Graph, Params
from .compile import compile, TraceMismatch
from ._recovery import install as _install_recovery, reclaim

_install_recovery()

__all__ = ["Value", "nn", "optim", "losses", "stats", "set_node_limit", "trim", "reclaim",
           "no_grad", "enable_grad", "is_grad_enabled", "grad", "draw_dot", "to_dot",
           "Graph", "Params", "compile", "TraceMismatch"]
__version__ = "0.1.0"
