"""Gradient checking: compare hand-derived gradients with central finite differences.

Seed 002 ("检查求导是否正确", after Bouvrie §4) recommends exactly this: perturb one weight by ``±ε``,
evaluate the loss twice, and compare ``(E(w + ε) − E(w − ε)) / 2ε`` with what back-propagation says.
The truncation error of the central difference is ``O(ε²)`` and the rounding error ``O(u·|E|/ε)``
(``u`` the unit round-off), so in float64 with ``ε = 1e-6`` both stay near ``1e-10`` and a correct
gradient agrees to far better than the default tolerance ``1e-6``. In float32 the rounding term
alone is ``~1e-1``: checks therefore insist on float64.

For each parameter tensor and for the input, the report gives the norm-wise relative error
``‖g_analytic − g_numeric‖ / max(‖g_analytic‖, ‖g_numeric‖)``.

Usage::

    layer = numcnn.Conv2d(3, 4, 3, stride=2, padding=1, dtype=np.float64, rng=0)
    report = numcnn.gradcheck(layer, np.random.default_rng(0).standard_normal((2, 3, 7, 7)))
    print(report)            # one row per tensor
    assert report.passed
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field

import numpy as np

from numcnn.errors import ConfigurationError, NumcnnError
from numcnn.layers.base import Layer, make_generator
from numcnn.layers.flat import walk_layers
from numcnn.losses import Loss

__all__ = ["GradcheckEntry", "GradcheckReport", "gradcheck", "numerical_gradient", "relative_error"]

# Below this norm two gradients count as zero: the relative error would only measure rounding noise.
_NORM_FLOOR = 1e-10


def relative_error(analytic: np.ndarray, numeric: np.ndarray) -> float:
    """``‖a − n‖ / max(‖a‖, ‖n‖)`` (2-norms), with tiny norms floored so that 0 vs 0 gives 0."""
    difference = float(np.linalg.norm(np.ravel(analytic) - np.ravel(numeric)))
    scale = max(float(np.linalg.norm(analytic)), float(np.linalg.norm(numeric)), _NORM_FLOOR)
    return difference / scale


def numerical_gradient(
    function: Callable[[], float],
    array: np.ndarray,
    eps: float = 1e-6,
    indices: np.ndarray | None = None,
) -> np.ndarray:
    """Central differences of the scalar ``function()`` with respect to the entries of ``array``.

    ``array`` is perturbed in place and restored exactly. With ``indices`` (flat positions) only
    those entries are differentiated; the result then has ``len(indices)`` entries, else ``array``'s shape.
    """
    flat = array.reshape(-1)
    if not np.shares_memory(flat, array):
        raise ConfigurationError("numerical_gradient needs a contiguous array it can perturb in place")
    positions = np.arange(flat.size) if indices is None else np.asarray(indices)
    result = np.empty(positions.size, dtype=np.float64)
    for k, position in enumerate(positions):
        saved = flat[position]
        flat[position] = saved + eps
        plus = function()
        flat[position] = saved - eps
        minus = function()
        flat[position] = saved
        result[k] = (plus - minus) / (2.0 * eps)
    return result.reshape(array.shape) if indices is None else result


@dataclass
class GradcheckEntry:
    """The comparison for one tensor (the input, or one named parameter)."""

    name: str
    shape: tuple[int, ...]
    checked: int  # how many entries were differentiated numerically
    max_abs_error: float
    relative_error: float
    passed: bool


@dataclass
class GradcheckReport:
    entries: list[GradcheckEntry] = field(default_factory=list)
    tolerance: float = 1e-6
    eps: float = 1e-6

    @property
    def passed(self) -> bool:
        return all(entry.passed for entry in self.entries)

    @property
    def max_relative_error(self) -> float:
        return max((entry.relative_error for entry in self.entries), default=0.0)

    def __getitem__(self, name: str) -> GradcheckEntry:
        for entry in self.entries:
            if entry.name == name:
                return entry
        raise KeyError(name)

    def raise_if_failed(self) -> None:
        if not self.passed:
            failed = ", ".join(
                f"{e.name} (relative error {e.relative_error:.2e})" for e in self.entries if not e.passed
            )
            raise NumcnnError(f"gradient check failed for {failed}; tolerance {self.tolerance:.0e}")

    def __str__(self) -> str:
        header = f"{'tensor':<24} {'shape':<20} {'checked':>8} {'max |a-n|':>11} {'rel. error':>11}  result"
        lines = [f"gradient check, central differences with eps={self.eps:g}, tolerance {self.tolerance:g}", header]
        for e in self.entries:
            lines.append(
                f"{e.name:<24} {e.shape!s:<20} {e.checked:>8} {e.max_abs_error:>11.3e} "
                f"{e.relative_error:>11.3e}  {'ok' if e.passed else 'FAILED'}"
            )
        lines.append("passed" if self.passed else "FAILED")
        return "\n".join(lines)


def _require_float64(module, x: np.ndarray) -> None:
    """Refuse anything that would compute in float32: parameters, floating buffers (e.g. RBF prototypes),
    or a layer's ``dtype`` (its forward casts the input to it) -- parameter-free layers included."""
    wrong = []
    if isinstance(module, Layer):
        wrong += [name for name, param, _ in module.named_parameters() if param.dtype != np.float64]
        wrong += [
            name
            for name, value in module.named_buffers()
            if np.issubdtype(value.dtype, np.floating) and value.dtype != np.float64
        ]
        if not wrong:  # the parameters and buffers are fine, but a layer may still cast its input
            wrong = [
                f"the dtype {np.dtype(layer.dtype)} of {type(layer).__name__}"
                for layer in walk_layers(module)
                if getattr(layer, "dtype", None) is not None and np.dtype(layer.dtype) != np.float64
            ]
    if wrong or x.dtype != np.float64:
        what = ", ".join(wrong) if wrong else "the input"
        raise ConfigurationError(
            f"gradcheck needs float64 ({what} is not); build layers with dtype=np.float64 -- "
            "float32 rounding swamps finite differences"
        )


def gradcheck(
    module: Layer | Loss,
    inputs: np.ndarray,
    *,
    targets: np.ndarray | None = None,
    loss: Loss | None = None,
    eps: float = 1e-6,
    tolerance: float = 1e-6,
    max_checks: int | None = None,
    check_input: bool = True,
    rng: np.random.Generator | int | None = 0,
) -> GradcheckReport:
    """Check every gradient that ``module.backward`` produces against central differences.

    The scalar being differentiated is

    * ``module.forward(inputs, targets)`` when ``module`` is a :class:`~numcnn.losses.Loss`;
    * ``loss.forward(module.forward(inputs), targets)`` when a ``loss`` is given;
    * otherwise ``Σ module.forward(inputs) ∘ R`` for a fixed random ``R`` -- a random projection,
      so that every output entry contributes with its own weight;

    plus ``module.penalty()`` for a layer or model: the regularisation terms (e.g. the sparsity of
    learned map combinations, seed 000 eq. 11) whose gradients ``backward`` adds.

    Args:
        module: a layer, a model (``Sequential``) or a loss, with float64 parameters.
        inputs: the input batch (converted to float64).
        max_checks: differentiate at most this many randomly chosen entries of each tensor
            (the sampled mode for large tensors); ``None`` checks every entry.
        check_input: also check ``∂E/∂inputs``.
        rng: seed or generator for ``R`` and for the sampled entries.

    The module's gradients are zeroed and left holding the analytic gradient of the objective.
    """
    generator = make_generator(rng)
    x = np.array(inputs, dtype=np.float64)  # a private copy: it is perturbed in place
    _require_float64(module, x)

    if isinstance(module, Loss):
        if targets is None:
            raise ConfigurationError("gradcheck of a loss needs targets")

        def objective() -> float:
            return float(module.forward(x, targets))

        objective()
        analytic_input = module.backward()
        named = []
    else:
        if loss is not None and targets is None:
            raise ConfigurationError("gradcheck with a loss needs targets")
        projection = None
        if loss is None:
            projection = generator.standard_normal(module.forward(x).shape)

        def objective() -> float:
            outputs = module.forward(x)
            if loss is not None:
                return float(loss.forward(outputs, targets)) + module.penalty()
            return float(np.sum(outputs * projection)) + module.penalty()

        module.zero_grad()
        objective()
        grad_output = loss.backward() if loss is not None else projection
        analytic_input = module.backward(grad_output, need_input_grad=check_input)
        named = module.named_parameters()

    report = GradcheckReport(tolerance=tolerance, eps=eps)
    tensors = [("input", x, analytic_input)] if check_input else []
    tensors += [(name, param, grad.copy()) for name, param, grad in named]
    for name, array, analytic in tensors:
        if analytic is None:
            raise NumcnnError(f"backward returned no gradient for {name}")
        indices = None
        if max_checks is not None and array.size > max_checks:
            indices = np.sort(generator.choice(array.size, size=max_checks, replace=False))
        numeric = numerical_gradient(objective, array, eps, indices)
        analytic_values = analytic if indices is None else analytic.reshape(-1)[indices]
        error = relative_error(analytic_values, numeric)
        report.entries.append(
            GradcheckEntry(
                name=name,
                shape=tuple(array.shape),
                checked=int(numeric.size),
                max_abs_error=float(np.max(np.abs(np.ravel(analytic_values) - np.ravel(numeric)), initial=0.0)),
                relative_error=error,
                passed=error < tolerance,
            )
        )
    return report
