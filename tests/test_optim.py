"""SGD / Adam / AdamW against PyTorch's update rules; Params (zero_grad and
sgd in one C call each) against Python loops.

PyTorch is not installed: the references below are torch.optim's algorithms
written out in torch's own form (lerp_, addcdiv_, bias_correction2_sqrt),
run on plain floats, plus numbers worked out by hand."""
import math
import random

import pytest

import autograd_c as ag
from autograd_c import Params, Value
from autograd_c.optim import SGD, Adam, AdamW
from support import bits

GRADS = [  # a fixed gradient sequence for three parameters, sign changes and a zero
    [0.5, -2.0, 0.0],
    [0.25, 1.5, -0.125],
    [-1.0, 0.75, 3.0],
    [0.0, -0.5, 1.0],
    [2.0, 2.0, -0.25],
]
START = [1.0, -0.5, 3]


def _run(make_opt):
    params = [Value(x) for x in START]
    opt = make_opt(params)
    history = []
    for grads in GRADS:
        for p, g in zip(params, grads):
            p.grad = g
        opt.step()
        history.append([p.data for p in params])
    return history


def _torch_adam(lr=1e-3, betas=(0.9, 0.999), eps=1e-8, weight_decay=0.0, decoupled=False):
    """torch.optim.adam._single_tensor_adam (amsgrad=False, maximize=False)
    and torch.optim.adamw (decoupled), one float at a time."""
    beta1, beta2 = betas
    params = [float(x) for x in START]
    exp_avg, exp_avg_sq = [0.0] * 3, [0.0] * 3
    history = []
    for step_t, grads in enumerate(GRADS, start=1):
        for i, grad in enumerate(grads):
            param = params[i]
            if decoupled:
                param *= 1 - lr * weight_decay                  # param.mul_(1 - lr * wd)
            elif weight_decay != 0:
                grad = grad + weight_decay * param              # grad.add(param, alpha=wd)
            exp_avg[i] += (grad - exp_avg[i]) * (1 - beta1)     # exp_avg.lerp_(grad, 1 - beta1)
            exp_avg_sq[i] = exp_avg_sq[i] * beta2 + (1 - beta2) * grad * grad
            bias_correction1 = 1 - beta1 ** step_t
            bias_correction2 = 1 - beta2 ** step_t
            step_size = lr / bias_correction1
            bias_correction2_sqrt = math.sqrt(bias_correction2)
            denom = math.sqrt(exp_avg_sq[i]) / bias_correction2_sqrt + eps
            params[i] = param + -step_size * (exp_avg[i] / denom)  # addcdiv_(value=-step_size)
        history.append(list(params))
    return history


def _torch_sgd(lr, momentum=0.0, weight_decay=0.0, dampening=0.0):
    """torch.optim.sgd._single_tensor_sgd (nesterov=False, maximize=False)."""
    params = [float(x) for x in START]
    bufs = [None] * 3
    history = []
    for grads in GRADS:
        for i, d_p in enumerate(grads):
            if weight_decay != 0:
                d_p = d_p + weight_decay * params[i]
            if momentum != 0:
                if bufs[i] is None:
                    bufs[i] = d_p                                          # clone(d_p)
                else:
                    bufs[i] = bufs[i] * momentum + (1 - dampening) * d_p   # mul_().add_()
                d_p = bufs[i]
            params[i] += -lr * d_p
        history.append(list(params))
    return history


def _close(got, want):
    assert len(got) == len(want)
    for g_row, w_row in zip(got, want):
        assert g_row == pytest.approx(w_row, rel=1e-12, abs=1e-15)


@pytest.mark.parametrize("kwargs", [
    {}, {"lr": 0.1}, {"lr": 0.05, "betas": (0.8, 0.99), "eps": 1e-6},
    {"lr": 0.01, "weight_decay": 0.1}])
def test_adam_matches_torch(kwargs):
    _close(_run(lambda ps: Adam(ps, **kwargs)), _torch_adam(**kwargs))


@pytest.mark.parametrize("kwargs", [{}, {"lr": 0.1, "weight_decay": 0.5}, {"weight_decay": 0.0}])
def test_adamw_matches_torch(kwargs):
    want = _torch_adam(**{"weight_decay": 1e-2, **kwargs}, decoupled=True)
    _close(_run(lambda ps: AdamW(ps, **kwargs)), want)


def test_adamw_and_adam_differ_only_by_decay():
    assert _run(lambda ps: AdamW(ps, lr=0.1, weight_decay=0)) == \
        _run(lambda ps: Adam(ps, lr=0.1))
    assert _run(lambda ps: AdamW(ps, lr=0.1)) != _run(lambda ps: Adam(ps, lr=0.1))


@pytest.mark.parametrize("kwargs", [
    {"lr": 0.1}, {"lr": 0.1, "momentum": 0.9}, {"lr": 0.05, "momentum": 0.5, "weight_decay": 0.1},
    {"lr": 0.2, "weight_decay": 0.3}])
def test_sgd_matches_torch(kwargs):
    _close(_run(lambda ps: SGD(ps, **kwargs)), _torch_sgd(**kwargs))


def test_sgd_momentum_by_hand():
    p = Value(1.0)
    opt = SGD([p], lr=0.1, momentum=0.9)
    seen = []
    for _ in range(3):
        p.grad = 1.0
        opt.step()
        seen.append(p.data)
    # buffers 1, 1.9, 2.71: p = 1 - 0.1, then - 0.19, then - 0.271
    assert seen == pytest.approx([0.9, 0.71, 0.439], rel=1e-14)


def test_adam_first_step_by_hand():
    # m_hat = g and v_hat = g*g at step 1: the step is lr * g / (|g| + eps)
    params = [Value(1.0), Value(-2.0), Value(5)]
    opt = Adam(params, lr=0.5)
    for p, g in zip(params, [4.0, -1e-3, 0.0]):
        p.grad = g
    opt.step()
    assert params[0].data == pytest.approx(1.0 - 0.5 * 4.0 / (4.0 + 1e-8), rel=1e-12)
    assert params[1].data == pytest.approx(-2.0 + 0.5 * 1e-3 / (1e-3 + 1e-8), rel=1e-12)
    assert params[2].data == 5.0
    assert opt.state[params[0]]["step"] == 1


def test_defaults_are_torchs():
    p = [Value(1.0)]
    assert Adam(p).defaults == {"lr": 1e-3, "betas": (0.9, 0.999), "eps": 1e-8, "weight_decay": 0.0}
    assert AdamW(p).defaults == {"lr": 1e-3, "betas": (0.9, 0.999), "eps": 1e-8, "weight_decay": 1e-2}
    assert SGD(p, lr=0.1).defaults == {"lr": 0.1, "momentum": 0.0, "weight_decay": 0.0}


def test_zero_grad_and_training_a_quadratic():
    x, y = Value(3.0), Value(-2.0)
    opt = Adam([x, y], lr=0.1)
    for _ in range(300):
        loss = (x - 1) ** 2 + (y + 0.5) ** 2
        opt.zero_grad()
        assert (x.grad, y.grad) == (0, 0)
        loss.backward()
        opt.step()
    assert (x.data, y.data) == pytest.approx((1.0, -0.5), abs=1e-2)


def test_param_groups_and_changing_lr():
    a, b = Value(1.0), Value(1.0)
    opt = SGD([{"params": [a]}, {"params": [b], "lr": 0.5}], lr=0.1)
    a.grad = b.grad = 1.0
    opt.step()
    assert (a.data, b.data) == (0.9, 0.5)
    opt.param_groups[0]["lr"] = 0.2
    opt.step()
    assert a.data == pytest.approx(0.7)


@pytest.mark.parametrize("make,error,match", [
    (lambda: SGD([], lr=0.1), ValueError, "empty parameter list"),
    (lambda: SGD([Value(1.0), 2.0], lr=0.1), TypeError, "must be Values, got float"),
    (lambda: SGD([Value(1.0)], lr=-1), ValueError, "invalid lr"),
    (lambda: SGD([Value(1.0)], lr=0.1, momentum=-0.5), ValueError, "invalid momentum"),
    (lambda: Adam([Value(1.0)], betas=(0.9, 1.0)), ValueError, "beta parameter at index 1"),
    (lambda: Adam([Value(1.0)], eps=float("nan")), ValueError, "invalid eps"),
    (lambda: AdamW([Value(1.0)], weight_decay=-0.1), ValueError, "invalid weight_decay"),
    (lambda: SGD([{"params": [Value(1.0)], "betas": (0.9, 0.9)}], lr=0.1), TypeError, "unknown options"),
    (lambda: SGD([{"lr": 0.1}], lr=0.1), TypeError, "a parameter group is a dict with 'params'"),
])
def test_bad_arguments(make, error, match):
    with pytest.raises(error, match=match):
        make()


def test_a_parameter_twice_is_an_error():
    p = Value(1.0)
    with pytest.raises(ValueError, match="appears twice"):
        Adam([p, p])
    with pytest.raises(ValueError, match="appears twice"):
        SGD([{"params": [p]}, {"params": [p]}], lr=0.1)


def test_params_sgd_and_zero_grad_match_python_loops():
    random.seed(3)
    model = ag.nn.MLP(3, [4, 1])
    ps = model.parameters()
    for i, p in enumerate(ps):
        p.grad = (i % 5) - 2 if i % 2 else 0.25 * i
    want = [p.data - 0.37 * p.grad for p in ps]
    P = Params(ps)
    assert len(P) == len(ps) and list(P) == ps
    P.sgd(0.37)
    assert [bits(p.data) for p in ps] == [bits(w) for w in want]
    P.zero_grad()
    assert all(bits(p.grad) == bits(0) for p in ps)
    with pytest.raises(TypeError):
        Params([1.0])
