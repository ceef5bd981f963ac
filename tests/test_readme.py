"""The README's Python examples run and print what the README says."""
import contextlib
import importlib.util
import io
import os
import re

import pytest

README = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "README.md")
BLOCKS = re.findall(r"```python\n(.*?)```", open(README).read(), re.S)
SCRIPTS = [b for b in BLOCKS if not b.lstrip().startswith(">>>")]
SESSIONS = [b for b in BLOCKS if b.lstrip().startswith(">>>")]


@pytest.mark.parametrize("code", SCRIPTS, ids=[f"block{i}" for i in range(len(SCRIPTS))])
def test_example_runs(code):
    code = code.replace('.render("graph")', "")  # rendering needs Graphviz's dot program
    if importlib.util.find_spec("graphviz") is None:  # the optional viz extra:
        code = re.sub(r"\ndraw_dot\(.*", "", code)   # its ImportError path is in test_viz.py
    out = io.StringIO()
    with contextlib.redirect_stdout(out):
        exec(compile(code, "README.md", "exec"), {})
    for expected in re.findall(r"print\(f'\{\w+\.\w+:\.4f\}'\)\s+# ([\d.]+)", code):
        assert expected in out.getvalue()


@pytest.mark.parametrize("session", SESSIONS)
def test_session_prints(session):
    """`>>> expr` lines followed by their printed result."""
    env = {}
    exec("from autograd_c import Value", env)
    lines = session.strip().splitlines()
    for i, line in enumerate(lines):
        if line.startswith(">>> "):
            *setup, last = line[4:].split("; ")
            for stmt in setup:
                exec(stmt, env)
            expected = lines[i + 1] if i + 1 < len(lines) and not lines[i + 1].startswith(">>>") else None
            result = eval(last, env)
            if expected is not None:
                assert repr(result) == expected
