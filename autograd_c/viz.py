"""Pictures: the graph behind a Value (micrograd notebook style) and a model's
decision boundary.

to_dot(root) gives DOT text and needs nothing; draw_dot(root) gives a
graphviz.Digraph (the `graphviz` package: pip install 'autograd_c[viz]';
rendering it needs Graphviz's `dot` program).  Both draw the same thing: one
record box per node (label | data | grad), an op node feeding each non-leaf.
plot_decision_boundary needs matplotlib (pip install 'autograd_c[plot]').
"""
import math
from typing import Any, List, Sequence, Tuple, Union

from ._optional import require
from .autograd import no_grad, trace
from .engine import Value

Roots = Union[Value, Sequence[Value]]


def _escape(text: str, record: bool) -> str:
    """text inside a quoted DOT label; in a record label {}|<> are fields."""
    special = '\\"{}|<>' if record else '\\"'
    text = "".join("\\" + c if c in special else c for c in str(text))
    return text.replace("\n", "\\n")


_RANKDIRS = ("LR", "TB", "RL", "BT")


def _dot_items(root: Roots, rankdir: str) -> Tuple[List[Tuple[str, str, str]], List[Tuple[str, str]]]:
    """The one description both to_dot and draw_dot render: boxes
    (name, escaped label, shape) and edges (tail, head), in drawing order."""
    if rankdir not in _RANKDIRS:
        raise ValueError(f"rankdir must be one of {_RANKDIRS}, got {rankdir!r}")
    nodes, links = trace(root)
    boxes, edges, op_box = [], [], {}
    for n in nodes:
        name, op = f"n{n._i}", n._op
        label = "{ %s | data %.4f | grad %.4f }" % (_escape(n.label, True), n.data, n.grad)
        boxes.append((name, label, "record"))
        if op:
            op_box[n] = name + "op"
            boxes.append((name + "op", _escape(op, False), ""))
            edges.append((name + "op", name))
    edges += [(f"n{child._i}", op_box.get(parent, f"n{parent._i}")) for child, parent in links]
    return boxes, edges


def to_dot(root: Roots, rankdir: str = "LR") -> str:
    """The graph behind root (a Value or several) as DOT text."""
    boxes, edges = _dot_items(root, rankdir)
    lines = ["digraph {", f"\tgraph [rankdir={rankdir}]"]
    lines += [f'\t{name} [label="{label}"' + (f" shape={shape}]" if shape else "]")
              for name, label, shape in boxes]
    lines += [f"\t{tail} -> {head}" for tail, head in edges]
    return "\n".join(lines + ["}"]) + "\n"


def draw_dot(root: Roots, format: str = "svg", rankdir: str = "LR") -> Any:
    """The graph behind root as a graphviz.Digraph (micrograd's draw_dot):
    display it in a notebook, or .render() / .pipe() it."""
    graphviz = require("graphviz", "draw_dot")
    boxes, edges = _dot_items(root, rankdir)
    dot = graphviz.Digraph(format=format, graph_attr={"rankdir": rankdir})
    for name, label, shape in boxes:
        dot.node(name, label=graphviz.nohtml(label), **({"shape": shape} if shape else {}))
    for tail, head in edges:
        dot.edge(tail, head)
    return dot


def plot_decision_boundary(model: Any, X: Sequence[Sequence[float]], y: Sequence[int],
                           path: str, step: float = 0.05) -> None:
    """Save a picture of where model(x) > 0 over the plane around the 2-d
    points X, with the points coloured by their labels y (micrograd's demo
    plot).  The grid is evaluated under no_grad."""
    figure = require("matplotlib.figure", "plotting")
    xs, ys = [p[0] for p in X], [p[1] for p in X]
    x0, y0 = min(xs) - 1, min(ys) - 1
    nx = int(math.ceil((max(xs) + 1 - x0) / step)) + 1
    ny = int(math.ceil((max(ys) + 1 - y0) / step)) + 1
    gx = [x0 + i * step for i in range(nx)]
    gy = [y0 + j * step for j in range(ny)]
    with no_grad():
        z = [[1 if model([Value(a), Value(b)]).data > 0 else -1 for a in gx] for b in gy]
    fig = figure.Figure(figsize=(6, 5))
    ax = fig.subplots()
    colours = {"cmap": "Spectral", "vmin": -1, "vmax": 1}  # a region in its points' colour
    ax.contourf(gx, gy, z, levels=[-2, 0, 2], alpha=0.4, **colours)
    ax.scatter(xs, ys, c=[1 if label > 0 else -1 for label in y], s=40, edgecolors="k", **colours)
    ax.set_xlim(gx[0], gx[-1])
    ax.set_ylim(gy[0], gy[-1])
    ax.set_title("decision boundary")
    fig.savefig(path)
