"""python -m autograd_c, the demo: step lines or a progress bar (tqdm,
optional), --plot (matplotlib, optional), --replay; --steps and --samples
below 1 are usage errors."""
import importlib.util
import re
import sys
import types

import pytest

from autograd_c import __main__ as demo
from autograd_c.datasets import make_moons

ARGS = ["--steps", "12", "--samples", "20"]
STEP_LINE = re.compile(r"^step +(\d+) loss \d+\.\d{6}, accuracy \d+\.\d%$", re.M)


def test_plain_lines_when_stdout_is_not_a_terminal(capsys):
    demo.main(ARGS)
    out = capsys.readouterr().out
    assert [int(k) for k in STEP_LINE.findall(out)] == [0, 10, 11]
    assert re.search(r"^final accuracy \d+\.\d% in \d+\.\d\d s \(\d+\.\d ms per step\)$", out, re.M)


def _terminal(monkeypatch):
    monkeypatch.setattr(sys.stdout, "isatty", lambda: True)


def test_plain_lines_on_a_terminal_without_tqdm(monkeypatch, capsys):
    _terminal(monkeypatch)
    monkeypatch.setitem(sys.modules, "tqdm", None)
    demo.main(ARGS)
    assert [int(k) for k in STEP_LINE.findall(capsys.readouterr().out)] == [0, 10, 11]


def test_progress_bar_on_a_terminal_with_tqdm(monkeypatch, capsys):
    bars = []

    class FakeBar:
        def __init__(self, total, file, unit):
            self.total, self.file, self.n, self.postfix, self.closed = total, file, 0, None, False
            bars.append(self)

        def update(self, n=1):
            self.n += n

        def set_postfix_str(self, text, refresh=True):
            self.postfix = text

        def close(self):
            self.closed = True

    _terminal(monkeypatch)
    monkeypatch.setitem(sys.modules, "tqdm", types.SimpleNamespace(tqdm=FakeBar))
    demo.main(ARGS)
    out = capsys.readouterr().out
    (bar,) = bars
    assert (bar.total, bar.n, bar.closed, bar.file) == (12, 12, True, sys.stdout)
    assert re.fullmatch(r"loss \d+\.\d{6}, accuracy \d+\.\d%", bar.postfix)
    assert STEP_LINE.findall(out) == []          # the bar replaces the step lines
    assert "final accuracy" in out               # the summary stays


def test_plot_without_matplotlib_fails_before_training(monkeypatch, capsys, tmp_path):
    monkeypatch.setitem(sys.modules, "matplotlib.figure", None)
    with pytest.raises(SystemExit) as stop:
        demo.main(ARGS + ["--plot", str(tmp_path / "b.png")])
    assert stop.value.code == 2
    captured = capsys.readouterr()
    assert "--plot needs the matplotlib package: pip install 'autograd_c[plot]'" in captured.err
    assert "step" not in captured.out and not (tmp_path / "b.png").exists()


def test_plot_with_a_stand_in_matplotlib(monkeypatch, capsys, tmp_path):
    calls = {}

    class Axes:
        def contourf(self, gx, gy, z, **kw):
            calls["contourf"] = (gx, gy, z, kw)

        def scatter(self, xs, ys, **kw):
            calls["scatter"] = (xs, ys, kw)

        def __getattr__(self, name):  # set_xlim, set_title, ...
            return lambda *a, **k: None

    class Figure:
        def __init__(self, figsize):
            pass

        def subplots(self):
            return Axes()

        def savefig(self, path):
            calls["savefig"] = path

    monkeypatch.setitem(sys.modules, "matplotlib.figure", types.SimpleNamespace(Figure=Figure))
    path = str(tmp_path / "b.png")
    demo.main(ARGS + ["--plot", path])
    assert f"decision boundary saved to {path}" in capsys.readouterr().out
    assert calls["savefig"] == path
    gx, gy, z, _ = calls["contourf"]
    X, y = make_moons(20, noise=0.1)
    assert gx[0] < min(p[0] for p in X) and gx[-1] > max(p[0] for p in X)
    assert len(z) == len(gy) and all(len(row) == len(gx) for row in z)
    assert {v for row in z for v in row} <= {-1, 1}
    assert calls["scatter"][0] == [p[0] for p in X]
    assert calls["scatter"][2]["c"] == y


def test_plot_in_this_environment(tmp_path, capsys):
    path = tmp_path / "b.png"
    if importlib.util.find_spec("matplotlib") is None:
        with pytest.raises(SystemExit):
            demo.main(ARGS + ["--plot", str(path)])
        assert "pip install 'autograd_c[plot]'" in capsys.readouterr().err
    else:
        demo.main(ARGS + ["--plot", str(path)])
        assert path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_demo_replay_option_trains_with_the_same_numbers(capsys):
    demo.main(["--replay", "--steps", "3", "--samples", "20"])
    out = capsys.readouterr().out
    assert "replay: final loss" in out and "the same bits as the eager run" in out


def test_demo_compile_option_trains_with_the_same_numbers(capsys):
    demo.main(["--compile", "--steps", "3", "--samples", "20"])
    out = capsys.readouterr().out
    assert "compile: final loss" in out and "the same bits as the eager run" in out


@pytest.mark.parametrize("option", ["--steps", "--samples"])
@pytest.mark.parametrize("value", ["0", "-1", "-100", "2.5", "many"])
def test_counts_must_be_positive_integers(option, value, capsys):
    """Before: --steps 0 trained nothing and failed on its summary
    (NameError, ZeroDivisionError); now a usage error, exit status 2."""
    with pytest.raises(SystemExit) as e:
        demo.main([option, value])
    assert e.value.code == 2
    captured = capsys.readouterr()
    assert captured.out == ""                    # nothing was trained
    assert f"error: argument {option}: must be a positive integer, not {value!r}" in captured.err


def test_counts_of_one_are_enough(capsys):
    demo.main(["--steps", "1", "--samples", "1"])
    assert "final accuracy" in capsys.readouterr().out
