"""autograd_c: micrograd's scalar autograd engine, with the graph in C."""
from .engine import Value
from . import nn

__all__ = ["Value", "nn"]
__version__ = "0.1.0"
