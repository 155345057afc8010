"""Optimisers that update ``(param, grad)`` pairs in place.

``SGD`` follows PyTorch's update rule (dampening 0, no Nesterov)::

    g ← ∇E + λ·w          (weight decay λ)
    v ← μ·v + g           (momentum μ; v starts at g)
    w ← w − η·v

Seed 002 writes momentum as ``v ← μ·v − η·∇E; w ← w + v``; with a constant learning rate the two
forms produce the same sequence of weights (``v₀₀₂ = −η·v``).

Parameters may be given as a flat list of pairs or as groups with their own settings, e.g. a
different learning rate per layer (seed 002, "实际训练问题": lower layers have smaller, less reliable
gradients)::

    SGD([{"params": conv.parameters(), "lr": 0.01}, {"params": fc.parameters()}], lr=0.1)
    SGD(layer_groups(model, {"0": 0.01}), lr=0.1)      # the same, by layer index of a Sequential

LeCun's stochastic diagonal Levenberg–Marquardt method, a learning rate per *parameter*, is
:class:`numcnn.sdlm.SDLM`.

When a group's parameters and gradients lie back to back in flat buffers (models from
:func:`numcnn.models.build`, see :mod:`numcnn.layers.flat`), the update runs once on the whole buffer
instead of once per array: the same element-wise arithmetic, so the same numbers. The momentum
buffers are then views into one flat array too, and :meth:`Optimizer.state_dict` still lists them
per parameter.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any

import numpy as np

from numcnn import kernels
from numcnn.errors import CheckpointError, ConfigurationError
from numcnn.layers.flat import contiguous_span

__all__ = ["Optimizer", "SGD", "layer_groups"]

ParameterPairs = Iterable[tuple[np.ndarray, np.ndarray]]


class Optimizer:
    """Holds parameter groups; each group is a dict with ``"params"`` (pairs) and its hyper-parameters."""

    def __init__(self, parameters: ParameterPairs | Iterable[dict], **defaults: float) -> None:
        items: list[Any] = list(parameters)
        if not items:
            raise ConfigurationError("the optimiser got an empty parameter list")
        groups: list[dict] = items if isinstance(items[0], dict) else [{"params": items}]
        self.param_groups: list[dict] = []
        for group in groups:
            unknown = set(group) - {"params"} - set(defaults)
            if unknown:
                raise ConfigurationError(f"unknown optimiser setting(s) {sorted(unknown)}")
            pairs = [self._check_pair(pair) for pair in group["params"]]
            self.param_groups.append({**defaults, **group, "params": pairs})
        self.state: dict[int, dict[str, np.ndarray]] = {}
        # Per group: (flat params, flat grads) when both lie back to back in one buffer, else None.
        self._flat: list[tuple[np.ndarray, np.ndarray] | None] = [self._flat_pair(g) for g in self.param_groups]
        self._bound_velocity: dict[int, tuple[np.ndarray, list[np.ndarray]]] = {}  # first index -> (flat, views)

    @staticmethod
    def _flat_pair(group: dict) -> tuple[np.ndarray, np.ndarray] | None:
        params = contiguous_span([param for param, _ in group["params"]])
        grads = contiguous_span([grad for _, grad in group["params"]])
        return None if params is None or grads is None else (params, grads)

    @staticmethod
    def _check_pair(pair) -> tuple[np.ndarray, np.ndarray]:
        try:
            param, grad = pair
        except (TypeError, ValueError):
            raise ConfigurationError("parameters must be (param, grad) pairs, as model.parameters() returns") from None
        if param.shape != grad.shape:
            raise ConfigurationError(f"a parameter of shape {param.shape} has a gradient of shape {grad.shape}")
        return param, grad

    def pairs(self) -> list[tuple[np.ndarray, np.ndarray]]:
        return [pair for group in self.param_groups for pair in group["params"]]

    def zero_grad(self) -> None:
        for group, flat in zip(self.param_groups, self._flat):
            if flat is not None:
                flat[1].fill(0)
            else:
                for _, grad in group["params"]:
                    grad.fill(0)

    def step(self) -> None:
        raise NotImplementedError

    def start_epoch(self, epoch: int, **context) -> None:
        """Called by the trainer before epoch ``epoch`` (1-based) with ``model``, ``loss``, ``images``,
        ``labels`` and ``rng``; plain SGD ignores it, SDLM re-estimates its curvature there."""

    # -- checkpoints ------------------------------------------------------------------------------
    def state_dict(self) -> dict[str, np.ndarray]:
        """Per-parameter state as ``"<slot>.<index>"`` arrays (index into :meth:`pairs`)."""
        flat = {}
        for index, slots in self.state.items():
            for slot, value in slots.items():
                flat[f"{slot}.{index}"] = value.copy()
        return flat

    def load_state_dict(self, state: dict[str, np.ndarray]) -> None:
        pairs = self.pairs()
        self.state = {}
        for key, value in state.items():
            slot, _, index_text = key.rpartition(".")
            if not index_text.isdigit() or int(index_text) >= len(pairs):
                raise CheckpointError(f"optimiser state entry {key!r} does not match this model")
            index = int(index_text)
            if value.shape != pairs[index][0].shape:
                raise CheckpointError(
                    f"optimiser state {key!r} has shape {value.shape}, expected {pairs[index][0].shape}"
                )
            self.state.setdefault(index, {})[slot] = np.array(value, dtype=pairs[index][0].dtype)

    def set_lr(self, lr: float) -> None:
        """Set the learning rate of every group (used by schedules)."""
        for group in self.param_groups:
            group["lr"] = float(lr)


class SGD(Optimizer):
    """Stochastic gradient descent with optional momentum and L2 weight decay (PyTorch's rule).

    Online (batch of 1), mini-batch and full-batch training differ only in how many samples the
    gradient was averaged over before :meth:`step`.
    """

    def __init__(
        self,
        parameters: ParameterPairs | Iterable[dict],
        lr: float,
        momentum: float = 0.0,
        weight_decay: float = 0.0,
    ) -> None:
        if lr < 0 or momentum < 0 or weight_decay < 0:
            raise ConfigurationError(f"lr ({lr}), momentum ({momentum}) and weight_decay ({weight_decay}) must be >= 0")
        super().__init__(parameters, lr=float(lr), momentum=float(momentum), weight_decay=float(weight_decay))

    def step(self) -> None:
        update = kernels.active().sgd_update  # one pass over memory on the numba backend
        index = 0
        for group, flat in zip(self.param_groups, self._flat):
            lr, momentum, weight_decay = group["lr"], group["momentum"], group["weight_decay"]
            if flat is not None and self._flat_step(group, flat, index):
                index += len(group["params"])
                continue
            for param, grad in group["params"]:
                if not momentum:
                    update(param, grad, None, lr, 0.0, weight_decay)
                else:
                    slots = self.state.setdefault(index, {})
                    velocity = slots.get("velocity")
                    if velocity is None:  # first step: v starts at the direction (PyTorch's rule)
                        velocity = slots["velocity"] = _first_velocity(param, grad, weight_decay)
                        update(param, velocity, None, lr, 0.0, 0.0)
                    else:
                        update(param, grad, velocity, lr, momentum, weight_decay)
                index += 1

    def _flat_step(self, group: dict, flat: tuple[np.ndarray, np.ndarray], first: int) -> bool:
        """The update of :meth:`step` on a whole flat group; False if the momentum state is not flat."""
        lr, momentum, weight_decay = group["lr"], group["momentum"], group["weight_decay"]
        param, grad = flat
        update = kernels.active().sgd_update
        if not momentum:
            update(param, grad, None, lr, 0.0, weight_decay)
            return True
        velocity = self._flat_velocity(group, first, param.size)
        if velocity is False:
            return False  # some parameters have momentum state and some not: per-array path
        if velocity is None:
            velocity = _first_velocity(param, grad, weight_decay)
            self._bind_velocity(group, first, velocity)
            update(param, velocity, None, lr, 0.0, 0.0)
        else:
            update(param, grad, velocity, lr, momentum, weight_decay)
        return True

    def _flat_velocity(self, group: dict, first: int, size: int):
        """The group's flat momentum buffer, None before the first step, False if it cannot be flat."""
        slots = [self.state.get(first + k, {}).get("velocity") for k in range(len(group["params"]))]
        bound = self._bound_velocity.get(first)
        if bound is not None and all(slot is view for slot, view in zip(slots, bound[1])):
            return bound[0]  # the usual case: the state still holds the views bound last time
        if all(v is None for v in slots):
            return None
        arrays = [v for v in slots if v is not None]
        if len(arrays) != len(slots):
            return False
        span = contiguous_span(arrays)
        if span is None or span.size != size:
            # State loaded from a checkpoint arrives as separate arrays: gather them into one buffer.
            span = np.concatenate([v.reshape(-1) for v in arrays])
            self._bind_velocity(group, first, span)
        return span

    def _bind_velocity(self, group: dict, first: int, velocity: np.ndarray) -> None:
        """Expose the flat momentum buffer per parameter, as views, for state_dict and the per-array path."""
        offset, views = 0, []
        for k, (param, _) in enumerate(group["params"]):
            view = velocity[offset : offset + param.size].reshape(param.shape)
            self.state.setdefault(first + k, {})["velocity"] = view
            views.append(view)
            offset += param.size
        self._bound_velocity[first] = (velocity, views)


def _first_velocity(param: np.ndarray, grad: np.ndarray, weight_decay: float) -> np.ndarray:
    """The momentum buffer after the first step: the direction itself, ``g + λ·p`` (PyTorch's rule)."""
    return np.array(grad + weight_decay * param if weight_decay else grad, dtype=param.dtype)


def layer_groups(model, layer_lrs: Mapping[str, float] | Mapping[int, float]) -> list[dict]:
    """Parameter groups with a learning rate per layer (seed 002): ``{layer index: lr}`` for a ``Sequential``.

    Parameters are named ``"<index>.<name>"`` (``model.named_parameters()``); those of a listed layer
    go into a group with its ``lr``, all others into one group that uses the optimiser's default.

    >>> from numcnn import Linear, ReLU, Sequential
    >>> model = Sequential(Linear(3, 4, rng=0), ReLU(), Linear(4, 2, rng=0))
    >>> [(group.get("lr"), len(group["params"])) for group in layer_groups(model, {2: 0.5})]
    [(0.5, 2), (None, 2)]
    """
    rates = {str(layer): float(lr) for layer, lr in layer_lrs.items()}
    grouped: dict[str, list] = {layer: [] for layer in rates}
    default: list[tuple[np.ndarray, np.ndarray]] = []
    for name, param, grad in model.named_parameters():
        layer = name.split(".", 1)[0]
        grouped.get(layer, default).append((param, grad))
    empty = sorted(layer for layer, pairs in grouped.items() if not pairs)
    if empty:
        raise ConfigurationError(f"per-layer learning rates name layer(s) {empty}, which have no parameters")
    if any(lr <= 0 for lr in rates.values()):
        raise ConfigurationError(f"per-layer learning rates must be > 0, got {rates}")
    groups = [{"params": grouped[layer], "lr": rates[layer]} for layer in rates]
    if default:
        groups.append({"params": default})
    return groups
