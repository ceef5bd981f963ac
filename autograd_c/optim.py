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
"""
import math
from typing import Any, Dict, Iterable, List, Tuple, Union

from .engine import Value
from .graph import Params

# what an optimizer takes: Values, or parameter groups (dicts with "params")
ParamsArg = Union[Iterable[Value], Iterable[Dict[str, Any]]]


class Optimizer:
    """The base: parameter groups, per-Value state, zero_grad()."""

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

    def __repr__(self) -> str:
        groups = "".join(
            f"\n  group {i}: " + ", ".join(f"{k}={v}" for k, v in g.items() if k != "params")
            for i, g in enumerate(self.param_groups))
        return f"{type(self).__name__}({groups}\n)"


class SGD(Optimizer):
    """torch.optim.SGD: g = grad + weight_decay*p; with momentum,
    buf = g at the first step, then buf = momentum*buf + g, and g = buf;
    p -= lr*g."""

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
