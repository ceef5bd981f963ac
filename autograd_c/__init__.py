"""autograd_c: micrograd's scalar autograd engine, with the graph in C."""
from .engine import Value, set_node_limit, stats
from .autograd import enable_grad, grad, is_grad_enabled, no_grad
from . import nn

__all__ = ["Value", "nn", "stats", "set_node_limit",
           "no_grad", "enable_grad", "is_grad_enabled", "grad"]
__version__ = "0.1.0"
