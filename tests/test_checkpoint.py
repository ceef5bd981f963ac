"""Optimizer checkpoints: state_dict() in torch.optim's layout, and
load_state_dict() that continues training bit for bit -- in this process
and in a fresh one (a subprocess loading a pickle) -- and refuses a
state_dict that does not fit, changing nothing."""
import copy
import json
import os
import pickle
import subprocess
import sys
import textwrap

import pytest

from autograd_c import Value, nn
from autograd_c.datasets import make_moons
from autograd_c.optim import SGD, Adam, AdamW
from autograd_c.train import make_model, moons_loss
from support import bits

OPTIMIZERS = {
    "sgd": lambda ps: SGD(ps, lr=0.1),
    "momentum": lambda ps: SGD(ps, lr=0.05, momentum=0.9, weight_decay=1e-3),
    "adam": lambda ps: Adam(ps, lr=0.01),
    "adamw": lambda ps: AdamW(ps, lr=0.01, betas=(0.8, 0.99)),
    "groups": lambda ps: Adam([{"params": ps[:5], "lr": 0.02}, {"params": ps[5:]}], lr=0.01),
}


def _steps(model, opt, X, y, n):
    """n training steps; the loss before each, as a float."""
    losses = []
    for _ in range(n):
        loss, _ = moons_loss(Value, model, X, y)
        opt.zero_grad()
        loss.backward()
        opt.step()
        losses.append(loss.data)
    return losses


def _data():
    return make_moons(20, noise=0.1)


def test_state_dict_has_torch_layout_and_is_a_copy():
    params = [Value(1.0), Value(-2.0), Value(0.5)]
    opt = Adam([{"params": params[:1], "lr": 0.1}, {"params": params[1:]}], lr=0.01)
    for p in params:
        p.grad = 0.25
    opt.step()
    sd = opt.state_dict()
    assert set(sd) == {"state", "param_groups"}
    assert [g["params"] for g in sd["param_groups"]] == [[0], [1, 2]]
    assert [g["lr"] for g in sd["param_groups"]] == [0.1, 0.01]
    assert set(sd["param_groups"][1]) == {"params", "lr", "betas", "eps", "weight_decay"}
    assert set(sd["state"]) == {0, 1, 2}
    for i, p in enumerate(params):
        assert sd["state"][i] == opt.state[p]
        assert set(sd["state"][i]) == {"step", "exp_avg", "exp_avg_sq"}
    sd["state"][0]["step"] = 99
    sd["param_groups"][0]["lr"] = 5.0
    assert opt.state[params[0]]["step"] == 1 and opt.param_groups[0]["lr"] == 0.1


@pytest.mark.parametrize("name", sorted(OPTIMIZERS))
@pytest.mark.parametrize("via", ["object", "pickle", "json"])
def test_loading_continues_bit_for_bit(name, via):
    X, y = _data()
    model = make_model(nn.MLP)
    opt = OPTIMIZERS[name](model.parameters())
    _steps(model, opt, X, y, 3)
    model_sd, opt_sd = model.state_dict(), opt.state_dict()
    if via == "pickle":
        model_sd, opt_sd = pickle.loads(pickle.dumps((model_sd, opt_sd)))
    elif via == "json":
        model_sd, opt_sd = json.loads(json.dumps((model_sd, opt_sd)))
    expected = _steps(model, opt, X, y, 3)          # uninterrupted
    restored = make_model(nn.MLP, seed=7)           # other weights, overwritten
    restored.load_state_dict(model_sd)
    opt2 = OPTIMIZERS[name](restored.parameters())
    opt2.load_state_dict(opt_sd)
    assert [bits(x) for x in _steps(restored, opt2, X, y, 3)] == [bits(x) for x in expected]
    assert [bits(p.data) for p in restored.parameters()] == \
        [bits(p.data) for p in model.parameters()]


def test_options_are_loaded_as_torch_does():
    params = [Value(1.0)]
    opt = SGD(params, lr=0.1, momentum=0.5)
    other = SGD([Value(1.0)], lr=0.3, momentum=0.9)
    opt.load_state_dict(other.state_dict())
    assert (opt.param_groups[0]["lr"], opt.param_groups[0]["momentum"]) == (0.3, 0.9)
    assert opt.param_groups[0]["params"] == params


SCRIPT = textwrap.dedent("""
    import pickle, sys
    from autograd_c import Value, nn
    from autograd_c.optim import Adam
    from autograd_c.train import make_model, moons_loss
    with open(sys.argv[1], "rb") as f:
        X, y, model_sd, opt_sd = pickle.load(f)
    model = make_model(nn.MLP, seed=99)
    model.load_state_dict(model_sd)
    opt = Adam(model.parameters(), lr=0.01)
    opt.load_state_dict(opt_sd)
    losses = []
    for _ in range(3):
        loss, _ = moons_loss(Value, model, X, y)
        opt.zero_grad()
        loss.backward()
        opt.step()
        losses.append(loss.data)
    print(repr([x.hex() for x in losses]))
""")


def test_a_fresh_process_continues_to_the_same_loss(tmp_path):
    X, y = _data()
    model = make_model(nn.MLP)
    opt = Adam(model.parameters(), lr=0.01)
    _steps(model, opt, X, y, 4)
    path = tmp_path / "checkpoint.pkl"
    with open(path, "wb") as f:
        pickle.dump((X, y, model.state_dict(), opt.state_dict()), f)
    expected = _steps(model, opt, X, y, 3)
    env = dict(os.environ, PYTHONPATH=os.pathsep.join(sys.path))
    done = subprocess.run([sys.executable, "-c", SCRIPT, str(path)], capture_output=True,
                          text=True, env=env, check=True)
    assert done.stdout.strip() == repr([x.hex() for x in expected])


def _fresh_adam():
    params = [Value(1.0), Value(2.0)]
    opt = Adam(params, lr=0.01)
    for p in params:
        p.grad = 0.5
    opt.step()
    return opt


def _bad(change):
    sd = _fresh_adam().state_dict()
    change(sd)
    return sd


@pytest.mark.parametrize("change, message", [
    (lambda sd: sd.update(extra=1), r"keys 'state' and 'param_groups', got \['extra'"),
    (lambda sd: sd.pop("state"), r"got \['param_groups'\]"),
    (lambda sd: sd["param_groups"].append({}), "2 parameter groups, the optimizer 1"),
    (lambda sd: sd["param_groups"][0]["params"].append(2), "has 3 parameters, the optimizer's"),
    (lambda sd: sd["param_groups"][0]["params"].pop(), "has 1 parameters"),
    (lambda sd: sd["param_groups"][0].update(momentum=0.9), r"unknown \['momentum'\]"),
    (lambda sd: sd["param_groups"][0].pop("eps"), r"missing \['eps'\]"),
    (lambda sd: sd["param_groups"][0].update(lr=-1.0), "invalid lr"),
    (lambda sd: sd["param_groups"][0].update(lr="fast"), r"\['lr'\] must be a number"),
    (lambda sd: sd["param_groups"][0].update(betas=(0.9,)), "betas'] must be two numbers"),
    (lambda sd: sd["param_groups"][0].update(params=[0, 0]), "index twice"),
    (lambda sd: sd["state"].update({5: {}}), "has parameter 5, which no group lists"),
    (lambda sd: sd["state"][0].update(momentum_buffer=1.0), "must be a dict of"),
    (lambda sd: sd["state"][0].update(exp_avg=[0.1, 0.2]), r"\['exp_avg'\] must be a number"),
    (lambda sd: sd["state"][1].update(exp_avg_sq=None), r"\[1\]\['exp_avg_sq'\] must be a n"),
    (lambda sd: sd["state"].update({"x": {}}), "index must be an int"),
])
def test_a_state_dict_that_does_not_fit_is_refused_and_changes_nothing(change, message):
    opt = _fresh_adam()
    before = copy.deepcopy(opt.state_dict())
    with pytest.raises(ValueError, match=message):
        opt.load_state_dict(_bad(change))
    assert opt.state_dict() == before
