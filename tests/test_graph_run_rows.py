"""Graph.run(..., row_grads=...): each row's gradients (ag_graph_run_rows),
against runs of one row at a time (bit for bit), against eager backward()
(up to rounding) and against the summed grads of the same run."""
import math
import random

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from autograd_c import Graph, Value
from autograd_c.nn import MLP


def model_graph(seed):
    """A small MLP hinge loss captured as a graph: (graph, inputs, params,
    some interior Values, the root)."""
    random.seed(seed)
    model = MLP(2, [4, 3, 1])
    x, y = [Value(0.0), Value(0.0)], Value(0.0)
    score = model(x)
    hidden = score * 1.0                      # an interior op node, held
    loss = (1 + -y * hidden).relu() + (score * score).tanh()
    return Graph(loss), [*x, y], model.parameters(), [score, hidden, loss]


def rows_of(rng, n):
    return [[rng.uniform(-2, 2), rng.uniform(-2, 2), rng.choice([-1.0, 1.0])]
            for _ in range(n)]


@settings(max_examples=25, deadline=None)
@given(seed=st.integers(0, 10**6), n_rows=st.integers(1, 150))
def test_row_grads_are_those_of_one_row_runs(seed, n_rows):
    g, inputs, params, interior = model_graph(seed % 7)
    rng = random.Random(seed)
    rows = rows_of(rng, n_rows)
    wanted = [*params[:5], *interior, inputs[0]]
    out, per_row = g.run(inputs, rows, row_grads=wanted)
    assert len(per_row) == n_rows and all(len(r) == len(wanted) for r in per_row)
    for r in rng.sample(range(n_rows), min(n_rows, 6)):
        one_out, one = g.run(inputs, [rows[r]], row_grads=wanted)
        assert one_out == [out[r]]
        assert one[0] == per_row[r], r


def test_row_grads_match_eager_backward():
    g, inputs, params, interior = model_graph(3)
    rows = rows_of(random.Random(5), 70)
    wanted = [*params, *interior]
    _, per_row = g.run(inputs, rows, row_grads=wanted)
    for r in (0, 63, 64, 69):                 # first and second block
        for leaf, value in zip(inputs, rows[r]):
            leaf.data = value
        g.forward()
        for v in wanted:
            v.grad = 0
        g.backward()
        for v, got in zip(wanted, per_row[r]):
            assert math.isclose(got, v.grad, rel_tol=1e-12, abs_tol=1e-15)


def test_sums_are_the_per_row_grads_summed():
    g, inputs, params, _ = model_graph(4)
    rows = rows_of(random.Random(6), 130)
    for p in params:
        p.grad = 0
    _, per_row = g.run(inputs, rows, grads=params, row_grads=params[:3])
    for j, p in enumerate(params[:3]):
        assert math.isclose(p.grad, math.fsum(r[j] for r in per_row),
                            rel_tol=1e-12, abs_tol=1e-15)
    before = [p.grad for p in params]
    g.run(inputs, rows, row_grads=params)      # row_grads alone: no .grad change
    assert [p.grad for p in params] == before


def test_without_row_grads_run_returns_the_outputs_alone():
    g, inputs, _, _ = model_graph(1)
    rows = rows_of(random.Random(7), 10)
    out = g.run(inputs, rows)
    assert isinstance(out, list) and len(out) == 10
    assert g.run(inputs, rows, row_grads=[inputs[0]])[0] == out


def test_bad_row_grads_raise_and_change_nothing():
    g, inputs, params, _ = model_graph(2)
    rows = rows_of(random.Random(8), 5)
    before = [(p.data, p.grad) for p in params]
    with pytest.raises(ValueError, match=r"row_grads\[1\] is not a node"):
        g.run(inputs, rows, grads=params, row_grads=[params[0], Value(1.0)])
    with pytest.raises(ValueError, match="twice"):
        g.run(inputs, rows, row_grads=[params[0], params[0]])
    with pytest.raises(TypeError, match=r"row_grads\[0\]"):
        g.run(inputs, rows, row_grads=[1.0])
    assert [(p.data, p.grad) for p in params] == before
