"""autograd_c: micrograd's scalar autograd engine, with the graph in C."""
from .engine import Value, set_node_limit, stats
from . import nn

__all__ = ["Value", "nn", "stats", "set_node_limit"]
__version__ = "0.1.0"
