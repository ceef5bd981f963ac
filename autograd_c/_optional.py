"""Optional dependencies: the packages a feature needs but autograd_c does
not install by default, each brought by an extra of this package."""
import importlib
from types import ModuleType
from typing import Dict, Tuple

# importable name -> (pip name, this package's extra that brings it)
EXTRAS: Dict[str, Tuple[str, str]] = {
    "graphviz": ("graphviz", "viz"),
    "tqdm": ("tqdm", "progress"),
    "matplotlib.figure": ("matplotlib", "plot"),
    "dask.array": ("dask", "dask"),
}


def require(module: str, what: str = "this") -> ModuleType:
    """import module (a key of EXTRAS), or raise ImportError saying how to
    install it; what names the feature that needs it."""
    try:
        return importlib.import_module(module)
    except ImportError:
        pip_name, extra = EXTRAS[module]
        raise ImportError(f"{what} needs the {pip_name} package: "
                          f"pip install 'autograd_c[{extra}]' (or pip install {pip_name})") from None
