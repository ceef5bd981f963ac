"""Packaging: what the sdist and the installed package carry, the optional
extras, the type stub, the module layout's import rule, and the message of
a missing extension."""
import ast
import glob
import inspect
import os
import re
import subprocess
import sys
import tarfile

import pytest

import autograd_c
from autograd_c import _optional, _session, engine

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
PACKAGE = os.path.dirname(os.path.abspath(autograd_c.__file__))
SOURCES = sorted(glob.glob(os.path.join(PACKAGE, "*.py")))


def _parse(path):
    with open(path) as f:
        return ast.parse(f.read())


def _defined_names(module):
    """Public names module's source binds at top level itself (assignments,
    functions, classes; not imports), each checked to exist at runtime."""
    names = set()
    for node in _parse(module.__file__).body:
        if isinstance(node, (ast.FunctionDef, ast.ClassDef)):
            names.add(node.name)
        elif isinstance(node, (ast.Assign, ast.AnnAssign)):
            targets = node.targets if isinstance(node, ast.Assign) else [node.target]
            names |= {n.id for t in targets for n in ast.walk(t) if isinstance(n, ast.Name)}
    public = {n for n in names if not n.startswith("_")}
    assert all(hasattr(module, n) for n in public)
    return public


def _stub_names():
    """(names of class Value in engine.pyi, module-level names of engine.pyi)."""
    tree = _parse(os.path.join(PACKAGE, "engine.pyi"))
    module, value = set(), set()
    for node in tree.body:
        if isinstance(node, ast.ClassDef) and node.name == "Value":
            for item in node.body:
                if isinstance(item, (ast.FunctionDef, ast.AnnAssign)):
                    value.add(item.name if isinstance(item, ast.FunctionDef) else item.target.id)
        if isinstance(node, (ast.FunctionDef, ast.ClassDef)):
            module.add(node.name)
        elif isinstance(node, ast.Assign):
            module |= {t.id for t in node.targets if isinstance(t, ast.Name)}
    return value, module


NOT_TYPED = {"__module__", "__doc__", "__slots__", "__weakref__", "__del__", "__dict__",
             "__qualname__", "__firstlineno__", "__static_attributes__", "_label"}


def test_the_stub_declares_exactly_the_runtime_value_and_every_public_name_of_engine():
    value, module = _stub_names()
    runtime = {name for name in vars(engine.Value) if name not in NOT_TYPED}
    assert runtime - value == set(), "engine.pyi is missing these Value members"
    assert value - runtime == set(), "engine.pyi declares Value members that do not exist"
    public = _defined_names(engine)
    assert "Value" in public
    assert public - module == set(), "engine.pyi is missing these names of engine.py"


def test_every_public_name_of_the_session_is_typed():
    """_session.py has no stub: its annotations are what type checkers read."""
    public = _defined_names(_session)
    assert {"ctx", "fail", "retry", "release_dead", "stats", "set_node_limit"} <= public
    for name in sorted(public):
        obj = getattr(_session, name)
        if inspect.isfunction(obj):
            sig = inspect.signature(obj)
            untyped = [p for p in sig.parameters.values() if p.annotation is p.empty]
            assert not untyped, f"_session.{name}: parameters {untyped} have no type"
            assert sig.return_annotation is not sig.empty, f"_session.{name}: no return type"
        else:
            assert name in _session.__annotations__, f"_session.{name} has no type"


def test_no_module_imports_another_modules_private_names():
    for path in SOURCES:
        for node in ast.walk(_parse(path)):
            if isinstance(node, ast.ImportFrom) and node.level:
                private = [a.name for a in node.names if a.name.startswith("_")]
                # `from . import _autograd_c` would be a module, not a private name
                assert not private or node.module is None, \
                    f"{os.path.basename(path)} imports {private} from .{node.module}"


def test_the_public_api_comes_from_the_modules_that_hold_it():
    assert autograd_c.stats is _session.stats
    assert autograd_c.set_node_limit is _session.set_node_limit
    assert autograd_c.Value is engine.Value


def _build_py(tmp_path):
    """The package as setuptools installs it (python files and package
    data; the extension is not compiled)."""
    subprocess.run([sys.executable, "setup.py", "-q", "egg_info", "--egg-base", str(tmp_path),
                    "build_py", "--build-lib", str(tmp_path / "lib")],
                   cwd=ROOT, check=True, capture_output=True)
    return tmp_path / "lib" / "autograd_c"


def test_py_typed_and_the_stubs_are_installed_with_the_package(tmp_path):
    installed = _build_py(tmp_path)
    assert (installed / "py.typed").exists()
    stubs = {os.path.basename(p) for p in glob.glob(os.path.join(PACKAGE, "*.pyi"))}
    assert "engine.pyi" in stubs
    assert {p.name for p in installed.glob("*.pyi")} == stubs
    assert {p.name for p in installed.glob("*.py")} == {os.path.basename(p) for p in SOURCES}


def _pyproject():
    with open(os.path.join(ROOT, "pyproject.toml")) as f:
        return f.read()


def _extras():
    """{extra: [requirement, ...]} from pyproject's optional-dependencies."""
    section = _pyproject().split("\n[project.optional-dependencies]\n")[1].split("\n[")[0]
    extras = {}
    for name, items in re.findall(r'^([\w-]+) = \[((?:"[^"]*"|[^]"])*)\]', section, re.M):
        extras[name] = re.findall(r'"([^"]+)"', items)
    return extras


def _requirement_name(requirement):
    return re.match(r"[A-Za-z0-9_.-]+", requirement).group()


def test_each_optional_import_is_an_extra_that_pyproject_declares(monkeypatch):
    extras = _extras()
    code = "".join(open(p).read() for p in SOURCES if not p.endswith("_optional.py"))
    for module, (pip_name, extra) in _optional.EXTRAS.items():
        assert pip_name in map(_requirement_name, extras.get(extra, [])), (module, extra)
        assert re.search(rf'\brequire\("{re.escape(module)}"', code), \
            f"nothing imports {module} through require()"
        monkeypatch.setitem(sys.modules, module, None)  # as if not installed
        with pytest.raises(ImportError, match=re.escape(f"pip install 'autograd_c[{extra}]'")):
            _optional.require(module)
    feature_extras = set(extras) - {"test", "dev"}
    assert feature_extras == {extra for _, extra in _optional.EXTRAS.values()}


def test_the_dev_extra_brings_build_and_the_test_dependencies():
    extras = _extras()
    dev = extras["dev"]
    assert "build" in map(_requirement_name, dev)
    assert "autograd_c[test]" in dev or set(extras["test"]) <= set(dev)
    assert {"pytest", "hypothesis", "micrograd", "numpy"} <= set(map(_requirement_name,
                                                                      extras["test"]))


def test_the_license_is_mit_as_an_spdx_expression():
    text = _pyproject()
    assert re.search(r'^license = "MIT"$', text, re.M)
    assert re.search(r'^license-files = \["LICENSE"\]$', text, re.M)
    with open(os.path.join(ROOT, "LICENSE")) as f:
        license_text = f.read()
    assert license_text.startswith("MIT License\n")
    assert "Copyright (c) 2026 the autograd_c authors" in license_text


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
    needed |= {"csrc/autograd_c.h", "setup.py", "pyproject.toml", "README.md", "LICENSE",
               "autograd_c/_cffi_build.py", "autograd_c/py.typed", "autograd_c/engine.pyi"}
    needed |= {f"autograd_c/{os.path.basename(p)}" for p in SOURCES}
    assert needed - names == set()
    assert not [n for n in names if n.endswith((".so", ".o", ".pyc"))]


def test_a_missing_extension_says_how_to_build_it(tmp_path):
    """The package folder without the compiled _autograd_c, as a checkout is
    before building (and shadows an installed copy when Python runs in it)."""
    package = tmp_path / "autograd_c"
    package.mkdir()
    for path in SOURCES:
        with open(path) as f:
            (package / os.path.basename(path)).write_text(f.read())
    # -S: no site-packages, so no installed or editable autograd_c to fall back to
    run = subprocess.run([sys.executable, "-S", "-c", "import autograd_c"],
                         cwd=tmp_path, capture_output=True, text=True)
    assert run.returncode == 1
    last = run.stderr.strip().splitlines()[-1]
    assert last.startswith("ImportError: autograd_c cannot load its compiled extension")
    assert "python setup.py build_ext --inplace" in last and "pip install -e ." in last
    assert "direct cause" in run.stderr  # the original error is chained
    assert "No module named 'autograd_c._autograd_c'" in run.stderr
