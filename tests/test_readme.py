"""The README's Python examples run and print what they say they print.

A ```python block is a script, or a `>>>` session (checked with doctest).
In a script every print(...) carries a comment with its output, on the line
where the call ends:

    print(f'{g.data:.4f}')  # 24.7041
    print(f'{g.data:.4f}')  # 24.7041, the outcome of this forward pass

Each call must write exactly one line: the whole comment, or the comment
up to a ", " that starts a remark.  Every print line must run, and nothing
else may write to stdout.  A print without such a comment fails the test,
so a new example cannot print unchecked.  Without the optional graphviz
package, draw_dot(...) lines are skipped (their ImportError: test_viz.py);
rendering, which needs Graphviz's dot program, never runs.
"""
import ast
import builtins
import contextlib
import doctest
import importlib.util
import io
import os
import re
import sys
import tokenize

import pytest

from autograd_c import Value

README = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "README.md")
with open(README) as f:
    TEXT = f.read()
# (README line number of the block's first line, code) of each ```python block
BLOCKS = [(TEXT.count("\n", 0, m.start(1)) + 1, m.group(1))
          for m in re.finditer(r"```python\n(.*?)```", TEXT, re.S)]
SCRIPTS = [b for b in BLOCKS if not b[1].lstrip().startswith(">>>")]
SESSIONS = [b for b in BLOCKS if b[1].lstrip().startswith(">>>")]


def readme_lines(first, code):
    """code with blank lines before it, so that line numbers (in compile
    errors, tracebacks and f_lineno) are the README's."""
    return "\n" * (first - 1) + code


def expected_prints(code):
    """{(first line, last line) of each print(...) call: its comment}.
    Fails for a print without a comment on its last line."""
    comments = {tok.start[0]: tok.string[1:].strip()
                for tok in tokenize.generate_tokens(io.StringIO(code).readline)
                if tok.type == tokenize.COMMENT}
    expected = {}
    for node in ast.walk(ast.parse(code)):
        if isinstance(node, ast.Call) and isinstance(node.func, ast.Name) and node.func.id == "print":
            assert node.end_lineno in comments, \
                f"README.md:{node.lineno}: a print without a '# <its output>' comment"
            assert all(s[0] != node.lineno for s in expected), \
                f"README.md:{node.lineno}: two prints on one line"
            expected[(node.lineno, node.end_lineno)] = comments[node.end_lineno]
    return expected


def run_script(code):
    """Run code; ([(line of the print call, what it wrote)], other stdout)."""
    calls = []

    def recording_print(*args, **kwargs):
        text = io.StringIO()
        builtins.print(*args, **{**kwargs, "file": text})
        calls.append((sys._getframe(1).f_lineno, text.getvalue()))

    other = io.StringIO()
    with contextlib.redirect_stdout(other):
        exec(compile(code, README, "exec"), {"print": recording_print, "__name__": "readme"})
    return calls, other.getvalue()


def matches(output, comment):
    return comment == output or comment.startswith(output + ", ")


@pytest.mark.parametrize("first, code", SCRIPTS, ids=[f"README.md:{b[0]}" for b in SCRIPTS])
def test_script_prints_what_its_comments_say(first, code):
    code = readme_lines(first, code).replace('.render("graph")', "")  # needs Graphviz's dot
    if importlib.util.find_spec("graphviz") is None:  # the optional viz extra
        code = re.sub(r"^draw_dot\(.*$", "pass", code, flags=re.M)
    expected = expected_prints(code)
    calls, other = run_script(code)
    ran = set()
    for line, text in calls:
        (span,) = [s for s in expected if s[0] <= line <= s[1]]
        ran.add(span)
        assert text.endswith("\n") and "\n" not in text[:-1], \
            f"README.md:{span[0]}: a print must write one line, wrote {text!r}"
        assert matches(text[:-1], expected[span]), \
            f"README.md:{span[0]}: printed {text[:-1]!r}, the comment says {expected[span]!r}"
    assert ran == set(expected), f"print lines that did not run: {sorted(set(expected) - ran)}"
    assert other == "", f"output from something else than the block's prints: {other!r}"


@pytest.mark.parametrize("first, session", SESSIONS, ids=[f"README.md:{b[0]}" for b in SESSIONS])
def test_session_prints_what_it_shows(first, session):
    """`>>> ` lines and the output shown after them, as doctest runs them."""
    test = doctest.DocTestParser().get_doctest(session, {"Value": Value}, "README", README, first - 1)
    report = io.StringIO()
    result = doctest.DocTestRunner().run(test, out=report.write)
    assert result.attempted > 0 and result.failed == 0, report.getvalue()


def test_the_checks_can_fail():
    """The convention rejects a wrong output, a missing comment, a print
    that does not run and output from elsewhere."""
    assert matches("24.7041", "24.7041, the outcome") and not matches("24.7", "24.7041")
    with pytest.raises(AssertionError, match="without a"):
        expected_prints("x = 1\nprint(x)\n")
    calls, other = run_script("import sys\nprint(1 + 1)  # 2\nsys.stdout.write('x')\n")
    assert calls == [(2, "2\n")] and other == "x"
    with pytest.raises(AssertionError, match="printed '3'"):
        test_script_prints_what_its_comments_say(1, "print(1 + 2)  # 4\n")
    with pytest.raises(AssertionError, match="did not run"):
        test_script_prints_what_its_comments_say(1, "if False:\n    print(1)  # 1\n")
