"""Packaging: the sdist carries what a fresh build needs; the type stub is complete."""
import ast
import os
import re
import subprocess
import sys
import tarfile

import autograd_c
from autograd_c import engine

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
PACKAGE = os.path.dirname(os.path.abspath(autograd_c.__file__))


def _stub_names():
    """(names of class Value in engine.pyi, module-level names of engine.pyi)."""
    with open(os.path.join(PACKAGE, "engine.pyi")) as f:
        tree = ast.parse(f.read())
    module, value = set(), set()
    for node in tree.body:
        if isinstance(node, ast.ClassDef) and node.name == "Value":
            for item in node.body:
                if isinstance(item, (ast.FunctionDef, ast.AnnAssign)):
                    value.add(item.name if isinstance(item, ast.FunctionDef) else item.target.id)
        if isinstance(node, (ast.FunctionDef, ast.ClassDef)):
            module.add(node.name)
    return value, module


NOT_TYPED = {"__module__", "__doc__", "__slots__", "__weakref__", "__del__", "__dict__",
             "__qualname__", "__firstlineno__", "__static_attributes__", "_label"}


def test_the_stub_declares_every_value_method_and_public_function():
    value, module = _stub_names()
    runtime = {name for name in vars(engine.Value) if name not in NOT_TYPED}
    assert runtime - value == set(), "engine.pyi is missing these Value members"
    public = {name for name, obj in vars(engine).items() if not name.startswith("_")
              and callable(obj) and getattr(obj, "__module__", "") == engine.__name__}
    assert public - module == set(), "engine.pyi is missing these functions"


def test_py_typed_ships_with_the_package():
    assert os.path.exists(os.path.join(PACKAGE, "py.typed"))


def _pyproject():
    with open(os.path.join(ROOT, "pyproject.toml")) as f:
        return f.read()


def test_optional_extras_are_declared():
    text = _pyproject()
    for extra, package in (("viz", "graphviz"), ("progress", "tqdm"), ("plot", "matplotlib")):
        assert re.search(rf'^{extra} = \["{package}"\]', text, re.M), extra
    assert re.search(r'^\[tool\.setuptools\.package-data\]\nautograd_c = \[.*"py\.typed"', text, re.M)


def test_the_sdist_has_every_file_the_build_needs(tmp_path):
    subprocess.run([sys.executable, "setup.py", "-q", "egg_info", "--egg-base", str(tmp_path),
                    "sdist", "--dist-dir", str(tmp_path)],
                   cwd=ROOT, check=True, capture_output=True)
    (tarball,) = tmp_path.glob("*.tar.gz")
    with tarfile.open(tarball) as tar:
        names = {n.split("/", 1)[1] for n in tar.getnames() if "/" in n}
    from autograd_c import _cffi_build
    needed = {f"csrc/{name}" for name in _cffi_build.SOURCES}
    for source in list(needed):  # and every local header those sources include
        with open(os.path.join(ROOT, source)) as f:
            needed |= {f"csrc/{h}" for h in re.findall(r'#include "([^"]+)"', f.read())}
    needed |= {"csrc/autograd_c.h", "setup.py", "pyproject.toml", "README.md",
               "autograd_c/_cffi_build.py", "autograd_c/py.typed", "autograd_c/engine.pyi"}
    assert needed - names == set()
    assert not [n for n in names if n.endswith((".so", ".o", ".pyc"))]
