"""Optimizers with PyTorch's update rules and defaults: SGD, Adam, AdamW.

    opt = Adam(model.parameters(), lr=1e-2)
    for step in range(100):
        loss = ...
        opt.zero_grad()
        loss.backward()
        opt.step()

As in torch.optim, `params` is an iterable of Values or of parameter groups
(dicts with "params" and any option to override), each group's options live
in `opt.param_groups` (change "lr" there to schedule it) and the per-Value
buffers in `opt.state`.  step() reads each .grad and writes each .data;
zero_grad() sets every .grad to 0 (micrograd's convention, not None).

Checkpoints as in torch.optim: `opt.state_dict()` gives
{"state": {index: {buffer: number}}, "param_groups": [{option: value, ...,
"params": [index, ...]}]}, parameters numbered across the groups in order;
`opt.load_state_dict(sd)` on an optimizer over the same parameters (of a
model restored by its own load_state_dict) continues where that one left.
"""
import math
import numbers
from typing import Any, Dict, Iterable, List, Mapping, Tuple, Union

from .engine import Value
from .graph import Params

# what an optimizer takes: Values, or parameter groups (dicts with "params")
ParamsArg = Union[Iterable[Value], Iterable[Dict[str, Any]]]


class Optimizer:
    """The base: parameter groups, per-Value state, zero_grad(), state_dict()."""

    state_keys: Tuple[str, ...] = ()  # the buffers a parameter's state may hold

    def __init__(self, params: ParamsArg, defaults: Dict[str, Any]):
        groups = list(params)
        if not groups:
            raise ValueError("optimizer got an empty parameter list")
        if not isinstance(groups[0], dict):
            groups = [{"params": groups}]
        self.defaults = defaults
        self.param_groups: List[Dict[str, Any]] = []
        self.state: Dict[Value, Dict[str, Any]] = {}
        seen = set()
        for group in groups:
            if not isinstance(group, dict) or "params" not in group:
                raise TypeError(f"a parameter group is a dict with 'params', got {group!r}")
            unknown = set(group) - set(defaults) - {"params"}
            if unknown:
                raise TypeError(f"unknown options {sorted(unknown)} for {type(self).__name__}")
            ps = [group["params"]] if isinstance(group["params"], Value) else list(group["params"])
            for p in ps:
                if not isinstance(p, Value):
                    raise TypeError(f"optimizer params must be Values, got {type(p).__name__}")
                if p in seen:
                    raise ValueError("a parameter appears twice in the optimizer's parameters")
                seen.add(p)
            full = {**defaults, **group, "params": ps}
            self._check(full)
            self.param_groups.append(full)

    @staticmethod
    def _check(group: Dict[str, Any]) -> None:
        """Raise ValueError for an option out of range (as torch does)."""
        for name in ("lr", "momentum", "weight_decay", "eps"):
            if name in group and not group[name] >= 0.0:
                raise ValueError(f"invalid {name}: {group[name]!r} (must be >= 0)")
        for i, beta in enumerate(group.get("betas", ())):
            if not 0.0 <= beta < 1.0:
                raise ValueError(f"invalid beta parameter at index {i}: {beta!r}")

    def zero_grad(self) -> None:
        """p.grad = 0 for every parameter, in one C call (Params.zero_grad)."""
        Params([p for group in self.param_groups for p in group["params"]]).zero_grad()

    def step(self) -> None:
        for group in self.param_groups:
            self._step_group(group)

    def _step_group(self, group: Dict[str, Any]) -> None:
        """Update the parameters of one group, each by _update."""
        for p in group["params"]:
            p.data = self._update(p, p.data, p.grad, group, self.state.setdefault(p, {}))

    def _update(self, p: Value, x: float, g: float, group: Dict[str, Any],
                state: Dict[str, Any]) -> float:
        """The new data of one parameter."""
        raise NotImplementedError

    def _params(self) -> List[Value]:
        return [p for group in self.param_groups for p in group["params"]]

    def state_dict(self) -> Dict[str, Any]:
        """torch.optim's layout: {"state": {index: {buffer: number}} for each
        parameter with state, "param_groups": [the group's options and
        "params": its parameters' indices]}; indices number the parameters
        across the groups in order.  Plain numbers, copies (pickle keeps
        them exactly)."""
        index = {p: i for i, p in enumerate(self._params())}
        groups = [{**{k: v for k, v in g.items() if k != "params"},
                   "params": [index[p] for p in g["params"]]} for g in self.param_groups]
        state = {index[p]: dict(s) for p, s in self.state.items() if p in index}
        return {"state": state, "param_groups": groups}

    def load_state_dict(self, state_dict: Mapping[str, Any]) -> None:
        """Take the options and buffers of state_dict (as state_dict() made
        it, possibly by another optimizer object of the same class over the
        same parameters, in another process).  Saved parameter k is this
        optimizer's k-th parameter.  Everything is checked before anything
        changes: ValueError for other keys than "state" and "param_groups",
        another number of groups or of parameters in a group, unknown or
        missing options, an option out of range, state for an index no
        group has, an unknown buffer, a buffer that is not a number."""
        groups, state = _checked_state_dict(state_dict, self.param_groups, self.state_keys)
        saved = [i for g in groups for i in g["params"]]
        by_index = dict(zip(saved, self._params()))
        for mine, loaded in zip(self.param_groups, groups):
            mine.update({k: v for k, v in loaded.items() if k != "params"})
        self.state = {by_index[i]: s for i, s in state.items()}

    def __repr__(self) -> str:
        groups = "".join(
            f"\n  group {i}: " + ", ".join(f"{k}={v}" for k, v in g.items() if k != "params")
            for i, g in enumerate(self.param_groups))
        return f"{type(self).__name__}({groups}\n)"


class SGD(Optimizer):
    """torch.optim.SGD: g = grad + weight_decay*p; with momentum,
    buf = g at the first step, then buf = momentum*buf + g, and g = buf;
    p -= lr*g."""

    state_keys = ("momentum_buffer",)

    def __init__(self, params: ParamsArg, lr: float, momentum: float = 0.0,
                 weight_decay: float = 0.0):
        super().__init__(params, {"lr": lr, "momentum": momentum, "weight_decay": weight_decay})

    def _step_group(self, group):
        """Plain SGD (no momentum, no weight decay) with a float lr is
        micrograd's step: Params.sgd, in one C call and with the bits of
        _update's x - lr*g.  Anything else (an int lr keeps int data) goes
        by _update."""
        if type(group["lr"]) is float and not group["momentum"] and not group["weight_decay"]:
            for p in group["params"]:
                self.state.setdefault(p, {})  # as _update's path (and torch) keep it
            Params(group["params"]).sgd(group["lr"])
        else:
            super()._step_group(group)

    def _update(self, p, x, g, group, state):
        g = g + group["weight_decay"] * x if group["weight_decay"] else g
        if group["momentum"]:
            buf = state.get("momentum_buffer")
            g = state["momentum_buffer"] = g if buf is None else group["momentum"] * buf + g
        return x - group["lr"] * g


class Adam(Optimizer):
    """torch.optim.Adam (amsgrad off): g = grad + weight_decay*p (L2);
    m = b1*m + (1-b1)*g;  v = b2*v + (1-b2)*g*g;  at step t,
    p -= lr/(1-b1**t) * m / (sqrt(v)/sqrt(1-b2**t) + eps)."""

    decoupled = False  # AdamW: weight decay applied to p, not added to g
    state_keys = ("step", "exp_avg", "exp_avg_sq")

    def __init__(self, params: ParamsArg, lr: float = 1e-3, betas: Tuple[float, float] = (0.9, 0.999),
                 eps: float = 1e-8, weight_decay: float = 0.0):
        super().__init__(params, {"lr": lr, "betas": tuple(betas), "eps": eps,
                                  "weight_decay": weight_decay})

    def _update(self, p, x, g, group, state):
        lr, (b1, b2), wd = group["lr"], group["betas"], group["weight_decay"]
        if self.decoupled:
            x = x * (1 - lr * wd)
        elif wd:
            g = g + wd * x
        t = state["step"] = state.get("step", 0) + 1
        m = state["exp_avg"] = b1 * state.get("exp_avg", 0.0) + (1 - b1) * g
        v = state["exp_avg_sq"] = b2 * state.get("exp_avg_sq", 0.0) + (1 - b2) * g * g
        denom = math.sqrt(v) / math.sqrt(1 - b2 ** t) + group["eps"]
        return x - lr / (1 - b1 ** t) * m / denom


class AdamW(Adam):
    """torch.optim.AdamW: p *= 1 - lr*weight_decay, then Adam's step
    without the L2 term.  weight_decay defaults to 1e-2."""

    decoupled = True

    def __init__(self, params: ParamsArg, lr: float = 1e-3, betas: Tuple[float, float] = (0.9, 0.999),
                 eps: float = 1e-8, weight_decay: float = 1e-2):
        super().__init__(params, lr, betas, eps, weight_decay)


# -- checking a state_dict before loading it -----------------------------------

def _number(x: Any, what: str) -> Union[int, float]:
    """x if it is an int or float (not a bool: taken for a mistake), else
    ValueError naming what."""
    if isinstance(x, bool) or not isinstance(x, numbers.Real):
        raise ValueError(f"{what} must be a number, got {type(x).__name__}: {x!r}")
    return int(x) if isinstance(x, numbers.Integral) else float(x)


def _checked_group(saved: Any, mine: Dict[str, Any], g: int) -> Dict[str, Any]:
    """Saved group g, checked against this optimizer's group g: a new dict."""
    if not isinstance(saved, Mapping):
        raise ValueError(f"param_groups[{g}] must be a dict, got {type(saved).__name__}")
    unknown, missing = sorted(set(saved) - set(mine)), sorted(set(mine) - set(saved))
    if unknown or missing:
        raise ValueError(f"param_groups[{g}] does not match the optimizer's options: "
                         f"unknown {unknown}, missing {missing}")
    params = saved["params"]
    if not isinstance(params, (list, tuple)) or len(params) != len(mine["params"]):
        size = len(params) if isinstance(params, (list, tuple)) else type(params).__name__
        raise ValueError(f"param_groups[{g}] has {size} parameters, the optimizer's group "
                         f"{len(mine['params'])}")
    group = {}
    for k, v in saved.items():
        if k == "params":
            group[k] = [_index(i, f"param_groups[{g}]['params']") for i in v]
        elif k == "betas":
            if not isinstance(v, (list, tuple)) or len(v) != 2:
                raise ValueError(f"param_groups[{g}]['betas'] must be two numbers, got {v!r}")
            group[k] = tuple(_number(b, f"param_groups[{g}]['betas']") for b in v)
        else:
            group[k] = _number(v, f"param_groups[{g}][{k!r}]")
    Optimizer._check(group)
    return group


def _index(i: Any, what: str) -> int:
    """A parameter index: an int, or its decimal string (a JSON object key)."""
    if isinstance(i, str) and i.isdigit():
        return int(i)
    if isinstance(i, bool) or not isinstance(i, numbers.Integral) or i < 0:
        raise ValueError(f"{what}: a parameter index must be an int >= 0, got {i!r}")
    return int(i)


def _checked_state_dict(sd: Any, mine: List[Dict[str, Any]], buffers: Tuple[str, ...]):
    """(groups, {index: state}) of a state_dict, every part checked."""
    if not isinstance(sd, Mapping) or set(sd) != {"state", "param_groups"}:
        keys = sorted(map(str, sd)) if isinstance(sd, Mapping) else type(sd).__name__
        raise ValueError(f"an optimizer state_dict has the keys 'state' and 'param_groups', "
                         f"got {keys}")
    saved_groups = sd["param_groups"]
    if not isinstance(saved_groups, (list, tuple)) or len(saved_groups) != len(mine):
        n = len(saved_groups) if isinstance(saved_groups, (list, tuple)) else saved_groups
        raise ValueError(f"state_dict has {n!r} parameter groups, the optimizer {len(mine)}")
    groups = [_checked_group(s, m, g) for g, (s, m) in enumerate(zip(saved_groups, mine))]
    indices = [i for group in groups for i in group["params"]]
    if len(set(indices)) != len(indices):
        raise ValueError("state_dict's param_groups list a parameter index twice")
    if not isinstance(sd["state"], Mapping):
        raise ValueError(f"state_dict['state'] must be a dict, got {type(sd['state']).__name__}")
    state = {}
    for key, entry in sd["state"].items():
        i = _index(key, "state_dict['state']")
        if i not in indices:
            raise ValueError(f"state_dict['state'] has parameter {i}, which no group lists")
        if not isinstance(entry, Mapping) or not set(entry) <= set(buffers):
            raise ValueError(f"state_dict['state'][{i}] must be a dict of {list(buffers)}, "
                             f"got {entry!r}")
        state[i] = {k: _number(v, f"state_dict['state'][{i}][{k!r}]") for k, v in entry.items()}
    return groups, state
