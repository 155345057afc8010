"""The base class every layer derives from: parameters, gradients, buffers and the train/eval switch.

Contract (what users and tests write against):

* ``forward(x)`` computes the output and keeps, in ``self.cache``, only what ``backward`` needs.
* ``backward(grad_output, need_input_grad=True)`` returns ``∂E/∂x`` (or ``None`` when it was not
  asked for) and *adds* the parameter gradients into ``self.grads`` (``+=``), so gradients of several
  backward passes accumulate until :meth:`Layer.zero_grad` clears them. It never modifies
  ``grad_output`` or the cached arrays.
* ``params`` and ``grads`` are dicts with the same keys and shapes; ``buffers`` holds non-trained
  state that a checkpoint must keep (e.g. running statistics).
* ``training`` is switched by :meth:`train` / :meth:`eval`.
* Hooks (:meth:`register_forward_hook`, :meth:`register_backward_hook`) report a layer's output and
  its δ = ∂E/∂output as they are computed, without touching the layer's cache; containers call their
  children through :meth:`forward_with_hooks` / :meth:`backward_with_hooks`, and a hooked layer is
  never fused with its neighbours (:mod:`numcnn.layers.fusion`), so every hooked output exists.
* A layer made of other layers names them in :meth:`named_children`; parameters, buffers, gradients,
  parameter counts and the train/eval switch then recurse into them, each child's names prefixed
  with ``"<child name>."`` after the layer's own.

A parameter is also readable as an attribute (``conv.weight`` is ``conv.params["weight"]``), as in
PyTorch; always go through ``params`` when *replacing* an array.
"""

from __future__ import annotations

import inspect
from collections.abc import Callable, Iterator
from itertools import count
from typing import Any

import numpy as np

from numcnn.errors import CheckpointError, ConfigurationError, NumcnnError
from numcnn.functional.im2col import check_window, conv_output_size_2d, pair

__all__ = [
    "Layer", "VectorLayer", "WindowLayer", "make_generator", "fan_in_uniform",
    "ForwardHook", "BackwardHook", "HookHandle",
]  # fmt: skip

#: ``hook(layer, inputs, output)``: called after ``layer.forward(*inputs)`` returned ``output``.
ForwardHook = Callable[["Layer", tuple, np.ndarray], None]
#: ``hook(layer, grad_inputs, grad_output)``: called after ``layer.backward(grad_output)``; ``grad_inputs``
#: is a tuple with ``∂E/∂input`` per input (``None`` where it was not asked for).
BackwardHook = Callable[["Layer", tuple, np.ndarray], None]

_hook_ids = count()


class HookHandle:
    """Returned by the ``register_*_hook`` methods; :meth:`remove` unregisters the hook (as in PyTorch)."""

    def __init__(self, hooks: dict[int, Callable], key: int) -> None:
        self._hooks, self._key = hooks, key

    def remove(self) -> None:
        self._hooks.pop(self._key, None)


def make_generator(rng: np.random.Generator | int | None) -> np.random.Generator:
    """A ``numpy.random.Generator`` from a generator (used as is), a seed, or ``None`` (fresh entropy)."""
    if isinstance(rng, np.random.Generator):
        return rng
    return np.random.default_rng(rng)


def fan_in_uniform(
    shape: tuple[int, ...], fan_in: int, rng: np.random.Generator, dtype=np.float32
) -> np.ndarray:
    """Draw from ``U(−1/√fan_in, 1/√fan_in)``: PyTorch's default for Conv2d and Linear weights and biases.

    (PyTorch writes it as Kaiming-uniform with ``a = √5``, whose bound reduces to ``1/√fan_in``.)
    """
    bound = 1.0 / np.sqrt(fan_in)
    return rng.uniform(-bound, bound, size=shape).astype(dtype)


class Layer:
    """Base class of all layers. Subclasses implement ``forward`` and ``backward``."""

    def __init__(self) -> None:
        self.params: dict[str, np.ndarray] = {}
        self.grads: dict[str, np.ndarray] = {}
        self.buffers: dict[str, np.ndarray] = {}
        self.training = True
        self.cache: Any = None  # what backward needs; its form is each layer's own
        self.forward_hooks: dict[int, ForwardHook] = {}
        self.backward_hooks: dict[int, BackwardHook] = {}

    # -- parameters -------------------------------------------------------------------------
    def add_parameter(self, name: str, value: np.ndarray) -> np.ndarray:
        """Register a trainable array and its zero-initialised gradient of the same shape and dtype."""
        self.params[name] = value
        self.grads[name] = np.zeros_like(value)
        return value

    def parameters(self) -> list[tuple[np.ndarray, np.ndarray]]:
        """``(param, grad)`` pairs; optimisers update ``param`` in place."""
        return [(param, grad) for _, param, grad in self.named_parameters()]

    def named_parameters(self, prefix: str = "") -> list[tuple[str, np.ndarray, np.ndarray]]:
        """``(name, param, grad)`` triples, names prefixed like PyTorch's ``state_dict`` keys
        (``"0.weight"`` in a Sequential): the layer's own, then each child's."""
        triples = [(prefix + name, self.params[name], self.grads[name]) for name in self.params]
        for child_name, child in self.named_children():
            triples.extend(child.named_parameters(f"{prefix}{child_name}."))
        return triples

    def named_buffers(self, prefix: str = "") -> list[tuple[str, np.ndarray]]:
        pairs = [(prefix + name, value) for name, value in self.buffers.items()]
        for child_name, child in self.named_children():
            pairs.extend(child.named_buffers(f"{prefix}{child_name}."))
        return pairs

    def zero_grad(self) -> None:
        for grad in self.grads.values():
            grad.fill(0)
        for child in self.children():
            child.zero_grad()

    def num_parameters(self) -> int:
        own = int(sum(p.size for p in self.params.values()))
        return own + sum(child.num_parameters() for child in self.children())

    def state_dict(self) -> dict[str, np.ndarray]:
        """Copies of every parameter and buffer, keyed by :meth:`named_parameters`/:meth:`named_buffers` names."""
        state = {name: param.copy() for name, param, _ in self.named_parameters()}
        state.update({name: value.copy() for name, value in self.named_buffers()})
        return state

    def load_state_dict(self, state: dict[str, np.ndarray]) -> None:
        """Copy arrays into the existing parameters and buffers (in place, so optimisers stay bound)."""
        targets = {name: param for name, param, _ in self.named_parameters()}
        targets.update(dict(self.named_buffers()))
        missing = sorted(set(targets) - set(state))
        unexpected = sorted(set(state) - set(targets))
        if missing or unexpected:
            raise CheckpointError(
                f"state does not fit the model: missing {missing or 'nothing'}, unexpected {unexpected or 'nothing'}"
            )
        for name, target in targets.items():  # every shape first: a mismatch changes nothing
            shape = np.shape(state[name])
            if shape != target.shape:
                raise CheckpointError(f"{name}: saved shape {shape} does not match the model's {target.shape}")
        for name, target in targets.items():
            np.copyto(target, np.asarray(state[name]), casting="same_kind")

    # -- modes --------------------------------------------------------------------------------
    def train(self, mode: bool = True) -> Layer:
        """Switch this layer and its children to training (``True``) or evaluation mode."""
        self.training = bool(mode)
        for child in self.children():
            child.train(mode)
        return self

    def eval(self) -> Layer:
        return self.train(False)

    def named_children(self) -> Iterator[tuple[str, Layer]]:
        """``(name, layer)`` of the layers this one is made of; a plain layer has none.

        The names prefix the children's parameter and buffer names (a Sequential uses the index,
        a Graph the node name).
        """
        return iter(())

    def children(self) -> Iterator[Layer]:
        """The layers of :meth:`named_children`, in the same order."""
        return (child for _, child in self.named_children())

    # -- computation ----------------------------------------------------------------------------
    def forward(self, x: np.ndarray) -> np.ndarray:
        raise NotImplementedError

    def backward(self, grad_output: np.ndarray, need_input_grad: bool = True) -> np.ndarray | None:
        raise NotImplementedError

    def __call__(self, x: np.ndarray) -> np.ndarray:
        return self.forward_with_hooks(x)

    # -- hooks ------------------------------------------------------------------------------------
    def register_forward_hook(self, hook: ForwardHook) -> HookHandle:
        """Call ``hook(layer, inputs, output)`` after every forward pass this layer runs inside a container
        (or through ``layer(x)``), like PyTorch's ``register_forward_hook``. The arrays are the layer's
        own: copy them to keep them."""
        key = next(_hook_ids)
        self.forward_hooks[key] = hook
        return HookHandle(self.forward_hooks, key)

    def register_backward_hook(self, hook: BackwardHook) -> HookHandle:
        """Call ``hook(layer, grad_inputs, grad_output)`` after every backward pass this layer runs inside
        a container, like PyTorch's ``register_full_backward_hook``: ``grad_output`` is the layer's
        sensitivity ``δ = ∂E/∂output``, ``grad_inputs`` holds ``∂E/∂input`` (one per input)."""
        key = next(_hook_ids)
        self.backward_hooks[key] = hook
        return HookHandle(self.backward_hooks, key)

    def has_hooks(self) -> bool:
        """Whether a forward or backward hook is registered (then fusion leaves this layer alone)."""
        return bool(self.forward_hooks or self.backward_hooks)

    def forward_with_hooks(self, *inputs: np.ndarray) -> np.ndarray:
        """``forward(*inputs)``, then the forward hooks; how containers run their children."""
        output = self.forward(*inputs)
        for hook in tuple(self.forward_hooks.values()):
            hook(self, inputs, output)
        return output

    def backward_with_hooks(self, grad_output: np.ndarray, need_input_grad: bool = True):
        """``backward(grad_output, need_input_grad)``, then the backward hooks; how containers run their children."""
        grad_input = self.backward(grad_output, need_input_grad)
        if self.backward_hooks:
            grad_inputs = grad_input if isinstance(grad_input, tuple) else (grad_input,)
            for hook in tuple(self.backward_hooks.values()):
                hook(self, grad_inputs, grad_output)
        return grad_input

    def penalty(self) -> float:
        """A regularisation term this layer adds to the objective, ``Ẽ = E + Σ penalty()`` (default: the
        sum of its children's, 0 for a plain layer).

        A layer with a penalty adds the penalty's gradient in ``backward``, once per call, so
        :func:`numcnn.gradcheck` and the trainer add ``penalty()`` to ``E`` once per forward pass.
        """
        return float(sum(child.penalty() for child in self.children()))

    def backward_curvature(
        self, x: np.ndarray, curvature_output: np.ndarray, grad_output: np.ndarray | None = None
    ) -> tuple[np.ndarray, dict[str, np.ndarray]]:
        """Gauss–Newton diagonal pass (LeCun 1998, Appendix C; :mod:`numcnn.functional.curvature`).

        Given the layer input ``x`` and ``D = ∂²E/∂(output)²`` (diagonal), return ``∂²E/∂x²`` and the
        curvature ``h`` of each parameter, keyed like ``params``. ``grad_output`` (``∂E/∂output``) is only
        handed to a network's last layer, for output units whose own second derivative is kept (RBF).
        """
        raise NumcnnError(
            f"{type(self).__name__} has no curvature pass (backward_curvature), which the SDLM optimiser needs"
        )

    def output_shape(self, input_shape: tuple[int, ...]) -> tuple[int, ...]:
        """Shape ``(C, H, W)`` or ``(features,)`` of one output sample, for summaries; default: unchanged."""
        return tuple(input_shape)

    def require_cache(self):
        """The forward cache, or a clear error if ``backward`` is called before ``forward``."""
        if self.cache is None:
            raise NumcnnError(f"{type(self).__name__}.backward() was called before forward()")
        return self.cache

    # -- description ----------------------------------------------------------------------------
    def config(self) -> dict[str, Any]:
        """The constructor arguments that rebuild this layer, as plain data (numbers, strings, lists,
        nested descriptions): the inverse of :meth:`from_config`. Weights are not included -- they travel
        in the state dict. The default, ``{}``, suits a layer without arguments."""
        return {}

    @classmethod
    def from_config(cls, config: dict[str, Any], rng: np.random.Generator | None = None, dtype=np.float32) -> Layer:
        """A fresh layer from :meth:`config`'s data; ``rng`` and ``dtype`` go to constructors that take them."""
        accepted = inspect.signature(cls.__init__).parameters
        extra: dict[str, Any] = {}
        if "rng" in accepted:
            extra["rng"] = rng
        if "dtype" in accepted:
            extra["dtype"] = dtype
        return cls(**config, **extra)

    # -- presentation ---------------------------------------------------------------------------
    def extra_repr(self) -> str:
        return ""

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self.extra_repr()})"

    def __getattr__(self, name: str):
        # Only reached when normal lookup fails: expose parameters and buffers as attributes.
        for store in ("params", "buffers"):
            values = self.__dict__.get(store)
            if values is not None and name in values:
                return values[name]
        raise AttributeError(f"{type(self).__name__!r} object has no attribute {name!r}")


class VectorLayer(Layer):
    """A layer from ``(in_features,)`` to ``(out_features,)`` samples (Linear, EuclideanRBF): the sizes,
    their check, ``output_shape`` and the start of ``extra_repr``."""

    def _set_features(self, in_features: int, out_features: int) -> None:
        if in_features < 1 or out_features < 1:
            name = type(self).__name__
            raise ConfigurationError(f"{name} needs positive sizes, got {in_features} and {out_features}")
        self.in_features = int(in_features)
        self.out_features = int(out_features)

    def output_shape(self, input_shape: tuple[int, ...]) -> tuple[int, ...]:
        return (self.out_features,)

    def config(self) -> dict[str, Any]:
        return {"in_features": self.in_features, "out_features": self.out_features}

    def extra_repr(self) -> str:
        return f"in_features={self.in_features}, out_features={self.out_features}"


class WindowLayer(Layer):
    """A layer sliding a ``KH × KW`` window over ``(C_in, H, W)`` samples to give ``(C_out, OH, OW)``
    (Conv2d, LearnedCombination2d): the channel counts, the validated window settings,
    ``output_shape`` and the start of ``extra_repr``."""

    def _set_window(
        self, in_channels: int, out_channels: int, kernel_size, stride, padding, what: str = "channel"
    ) -> None:
        """``what`` names the channels in the error (``"map"`` for the notes' feature maps)."""
        name = type(self).__name__
        if in_channels < 1 or out_channels < 1:
            raise ConfigurationError(
                f"{name} needs at least one input and output {what}, got {in_channels} and {out_channels}"
            )
        self.in_channels, self.out_channels = int(in_channels), int(out_channels)
        self.kernel_size = pair(kernel_size, "kernel_size")
        self.stride = pair(stride, "stride")
        self.padding = pair(padding, "padding")
        check_window(self.kernel_size, self.stride, self.padding, name)

    def output_shape(self, input_shape: tuple[int, ...]) -> tuple[int, ...]:
        _, h, w = input_shape
        return (self.out_channels, *conv_output_size_2d((h, w), self.kernel_size, self.stride, self.padding))

    def config(self) -> dict[str, Any]:
        return {
            "in_channels": self.in_channels, "out_channels": self.out_channels,
            "kernel_size": list(self.kernel_size), "stride": list(self.stride), "padding": list(self.padding),
        }  # fmt: skip

    def extra_repr(self) -> str:
        return (
            f"{self.in_channels}, {self.out_channels}, kernel_size={self.kernel_size}, "
            f"stride={self.stride}, padding={self.padding}"
        )
