"""autograd_c: micrograd's scalar autograd engine, with the graph in C."""
from .engine import Value, set_node_limit, stats
from .autograd import enable_grad, grad, is_grad_enabled, no_grad
from .viz import draw_dot, to_dot
from . import losses, nn, optim
from .graph import Graph, Params

__all__ = ["Value", "nn", "optim", "losses", "stats", "set_node_limit",
           "no_grad", "enable_grad", "is_grad_enabled", "grad", "draw_dot", "to_dot",
           "Graph", "Params"]
__version__ = "0.1.0"
