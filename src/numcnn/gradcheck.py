"""Gradient checking: compare hand-derived gradients with central finite differences.

Seed 002 ("检查求导是否正确", after Bouvrie §4) recommends exactly this: perturb one weight by ``±h``,
evaluate the loss twice, and compare ``n = (E(w + h) − E(w − h)) / 2h`` with the gradient ``a`` that
back-propagation gives.

**How far may a correct ``a`` lie from ``n``?** Taylor's theorem and the rounding of ``E`` give

    |n − E′(w)|  ≤  δ_E / h  +  h² · |E‴(ξ)| / 6,

where ``δ_E`` bounds the absolute rounding error of one evaluation of ``E`` (``E(w ± h)`` are each off
by at most ``δ_E``, their difference by ``2δ_E``, divided by ``2h``) and the second term is the
truncation error of the central difference (``ξ`` within ``h`` of ``w``). numcnn takes
``δ_E = 16·u·S`` with ``u = 2⁻⁵³`` the unit round-off and ``S`` the magnitude of the objective (``|E|``, or
``Σ|y∘R|`` for a random projection, whose terms may cancel), and bounds the truncation term by
``(h/λ)² · g`` with ``g = max|a|`` over the tensor -- the assumption that the gradient changes by its own
size only over distances ``≥ λ = 1e-3`` in parameter space (functions bending faster are caught by the
step test below). An entry passes when

    |a − n|  ≤  atol + rtol · max(|a|, |n|),        atol = 16·u·S / h + (h/λ)² · g,

with ``rtol = 1e-5`` by default. In float64 with ``h = 1e-6`` and ``|E| ≈ 2`` the round-off term is
``≈ 4e-9``: an exactly-zero true gradient (a bias that batch normalisation cancels) passes, while a
gradient off by 1% fails as soon as it exceeds ``~4e-7``. In float32 the round-off term alone is
``~1e-1``: checks therefore insist on float64.

**Kinks.** ReLU and max pooling are only piecewise smooth. When ``w ± h`` straddles a point where a
ReLU switches or a pooling window's maximum changes, ``n`` is off by up to half the jump of the slope,
whatever the step. An entry that fails is therefore examined before it is called wrong:

* ``n`` is recomputed with the step ``h/2``. Where ``E`` is smooth the two agree within the bound
  above; a kink between ``w − h`` and ``w + h`` makes them disagree (the kink's share changes with the
  step);
* for a kink *at* ``w`` both steps agree, but then the one-sided differences ``(E(w+h) − E(w))/h`` and
  ``(E(w) − E(w−h))/h`` disagree with each other, and ``a`` matches one of them (the side the code
  takes);
* in either case the check is repeated with steps ``h/10`` and ``h/100``, which almost always miss a
  kink that ``h`` hit. An entry still near a kink at the smallest step is reported as a kink and
  skipped; an entry whose finite differences are consistent but disagree with ``a`` has FAILED.

A wrong gradient never hides as a kink: where ``E`` is smooth the finite differences agree with each
other at every step and one-sided differences agree with the central one to ``h·|E″|``, so a gradient
off by a factor 1.01 fails at the first step.

For each parameter tensor and for the input the report gives the status (``ok``, ``kink, skipped`` when
every checked entry sat at a kink, or ``FAILED``), the number of kinks skipped, the largest ``|a − n|``,
the ``atol`` used, and the norm-wise relative error ``‖a − n‖ / max(‖a‖, ‖n‖)`` over the compared entries.

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

__all__ = [
    "GradcheckEntry", "GradcheckReport", "gradcheck", "check_model", "numerical_gradient", "relative_error",
    "ErrorBound",
]  # fmt: skip

# Below this norm two gradients count as zero: the relative error would only measure rounding noise.
_NORM_FLOOR = 1e-10
UNIT_ROUNDOFF = float(np.finfo(np.float64).eps) / 2  # u = 2⁻⁵³
ROUNDOFF_FACTOR = 16.0  # δ_E = 16·u·S: a network's loss is a long sum, rounded at every layer
SMOOTHNESS_SCALE = 1e-3  # λ: the gradient is assumed to change by its own size only over distances ≥ λ
SMALLER_STEPS = (10.0, 100.0)  # retry divisors of the step for entries that sit near a kink
DEFAULT_RTOL = 1e-5

OK, KINK, FAILED = "ok", "kink", "FAILED"


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
    flat = _flat_view(array)
    positions = np.arange(flat.size) if indices is None else np.asarray(indices)
    result = np.empty(positions.size, dtype=np.float64)
    for k, position in enumerate(positions):
        plus, minus = _evaluate_pair(function, flat, int(position), eps)
        result[k] = (plus - minus) / (2.0 * eps)
    return result.reshape(array.shape) if indices is None else result


def _flat_view(array: np.ndarray) -> np.ndarray:
    flat = array.reshape(-1)
    if not np.shares_memory(flat, array):
        raise ConfigurationError("numerical_gradient needs a contiguous array it can perturb in place")
    return flat


def _evaluate_pair(function: Callable[[], float], flat: np.ndarray, position: int, step: float) -> tuple[float, float]:
    """``(E(w + step), E(w − step))`` for the entry ``flat[position]``, restored exactly afterwards."""
    saved = flat[position]
    try:
        flat[position] = saved + step
        plus = function()
        flat[position] = saved - step
        minus = function()
    finally:
        flat[position] = saved
    return plus, minus


@dataclass(frozen=True)
class ErrorBound:
    """``|a − n| ≤ atol(h) + rtol · max(|a|, |n|)`` with ``atol(h) = δ_E/h + (h/λ)²·g`` (module docstring).

    Attributes:
        roundoff: ``δ_E``, the rounding error of one evaluation of the objective.
        gradient_scale: ``g = max|a|`` over the tensor.
        rtol: the relative part.
    """

    roundoff: float
    gradient_scale: float
    rtol: float

    def atol(self, step: float) -> float:
        return self.roundoff / step + (step / SMOOTHNESS_SCALE) ** 2 * self.gradient_scale

    def accepts(self, first: float, second: float, step: float, widen: float = 1.0) -> bool:
        allowed = widen * self.atol(step) + self.rtol * max(abs(first), abs(second))
        return abs(first - second) <= allowed


def check_entry(
    objective: Callable[[], float],
    flat: np.ndarray,
    position: int,
    analytic: float,
    step: float,
    value: float,
    bound: ErrorBound,
) -> tuple[str, float, float]:
    """Compare ``analytic`` with finite differences of ``objective`` in ``flat[position]``.

    ``value`` is the objective at the unperturbed point. Returns ``(status, numeric, step used)`` with
    status ``"ok"``, ``"kink"`` (no kink-free step found) or ``"FAILED"``; see the module docstring.
    """
    numeric = np.nan
    for divisor in (1.0, *SMALLER_STEPS):
        h = step / divisor
        plus, minus = _evaluate_pair(objective, flat, position, h)
        numeric = (plus - minus) / (2.0 * h)
        if bound.accepts(analytic, numeric, h):
            return OK, numeric, h
        half_plus, half_minus = _evaluate_pair(objective, flat, position, h / 2)
        half = (half_plus - half_minus) / h
        if bound.accepts(analytic, half, h / 2):
            return OK, half, h / 2
        if not bound.accepts(numeric, half, h / 2):
            continue  # the finite differences depend on the step: a kink lies within ±h
        forward, backward = (plus - value) / h, (value - minus) / h
        # One-sided differences carry twice the rounding error and a truncation error of h·|E″|/2.
        sides_disagree = not bound.accepts(forward, backward, h, widen=4.0)
        matches_a_side = any(bound.accepts(analytic, side, h, widen=4.0) for side in (forward, backward))
        if not (sides_disagree and matches_a_side):
            return FAILED, numeric, h  # consistent finite differences that disagree with a
    return KINK, numeric, step / SMALLER_STEPS[-1]


@dataclass
class GradcheckEntry:
    """The comparison for one tensor (the input, or one named parameter).

    ``max_abs_error`` and ``relative_error`` cover the compared entries (kinks excluded); ``atol`` is the
    absolute part of the bound at the nominal step.
    """

    name: str
    shape: tuple[int, ...]
    checked: int  # how many entries were differentiated numerically
    max_abs_error: float
    relative_error: float
    passed: bool
    kinks: int = 0  # entries whose every step crossed a ReLU/max-pooling kink: skipped
    failures: int = 0  # entries whose consistent finite differences disagree with the analytic gradient
    atol: float = 0.0

    @property
    def status(self) -> str:
        if not self.passed:
            return "FAILED"
        if self.checked and self.kinks == self.checked:
            return "kink, skipped"
        return "ok"


@dataclass
class GradcheckReport:
    entries: list[GradcheckEntry] = field(default_factory=list)
    tolerance: float = DEFAULT_RTOL  # rtol
    eps: float = 1e-6

    @property
    def passed(self) -> bool:
        return all(entry.passed for entry in self.entries)

    @property
    def rtol(self) -> float:
        return self.tolerance

    @property
    def max_relative_error(self) -> float:
        return max((entry.relative_error for entry in self.entries), default=0.0)

    @property
    def kinks(self) -> int:
        return sum(entry.kinks for entry in self.entries)

    def __getitem__(self, name: str) -> GradcheckEntry:
        for entry in self.entries:
            if entry.name == name:
                return entry
        raise KeyError(name)

    def raise_if_failed(self) -> None:
        if not self.passed:
            failed = ", ".join(
                f"{e.name} ({e.failures} of {e.checked} entries, max |a-n| {e.max_abs_error:.2e})"
                for e in self.entries
                if not e.passed
            )
            raise NumcnnError(f"gradient check failed for {failed}; rtol {self.tolerance:.0e}")

    def __str__(self) -> str:
        header = (
            f"{'tensor':<24} {'shape':<20} {'checked':>7} {'kinks':>5} {'max |a-n|':>10} {'atol':>9} "
            f"{'rel. error':>10}  result"
        )
        lines = [
            f"gradient check, central differences with step {self.eps:g} (smaller near kinks); "
            f"entry ok if |a-n| <= atol + {self.tolerance:g}*max(|a|,|n|)",
            header,
        ]
        for e in self.entries:
            lines.append(
                f"{e.name:<24} {e.shape!s:<20} {e.checked:>7} {e.kinks:>5} {e.max_abs_error:>10.3e} "
                f"{e.atol:>9.2e} {e.relative_error:>10.3e}  {e.status}"
            )
        verdict = "passed" if self.passed else "FAILED"
        if self.kinks:
            verdict += f" ({self.kinks} entries at ReLU/max-pooling kinks skipped)"
        lines.append(verdict)
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
    tolerance: float = DEFAULT_RTOL,
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
        eps: the finite-difference step ``h`` (smaller steps are tried near kinks).
        tolerance: ``rtol`` of the entry-wise criterion ``|a − n| ≤ atol + rtol·max(|a|, |n|)``;
            ``atol`` follows from the rounding error of the objective, the step and the tensor's
            gradient magnitude (module docstring).
        max_checks: differentiate at most this many randomly chosen entries of each tensor
            (the sampled mode for large tensors); ``None`` checks every entry.
        check_input: also check ``∂E/∂inputs``.
        rng: seed or generator for ``R`` and for the sampled entries.

    The module's gradients are zeroed and left holding the analytic gradient of the objective.
    """
    if not eps > 0 or not tolerance > 0:
        raise ConfigurationError(f"gradcheck needs eps > 0 and tolerance > 0, got {eps} and {tolerance}")
    generator = make_generator(rng)
    x = np.array(inputs, dtype=np.float64)  # a private copy: it is perturbed in place
    _require_float64(module, x)

    analytic_input: np.ndarray | None  # None when the input gradient is not checked
    if isinstance(module, Loss):
        if targets is None:
            raise ConfigurationError("gradcheck of a loss needs targets")

        def objective() -> float:
            return float(module.forward(x, targets))

        value = objective()
        magnitude = abs(value)
        analytic_input = module.backward()
        named = []
    else:
        if loss is not None and targets is None:
            raise ConfigurationError("gradcheck with a loss needs targets")
        # Without a loss, E = Σ R ∘ output for a fixed random R (unused, and empty, with a loss).
        projection = generator.standard_normal(module.forward(x).shape) if loss is None else np.empty(0)

        def objective() -> float:
            outputs = module.forward(x)
            if loss is not None and targets is not None:
                return float(loss.forward(outputs, targets)) + module.penalty()
            return float(np.sum(outputs * projection)) + module.penalty()

        module.zero_grad()
        value = objective()
        penalty = abs(module.penalty())
        if loss is not None:
            magnitude = abs(value) + penalty
        else:  # the projection's terms may cancel: its rounding follows their sizes, not their sum
            magnitude = float(np.sum(np.abs(module.forward(x) * projection))) + penalty
            value = objective()  # the caches of the last forward pass must belong to the backward
        grad_output = loss.backward() if loss is not None else projection
        analytic_input = module.backward(grad_output, need_input_grad=check_input)
        named = module.named_parameters()

    roundoff = ROUNDOFF_FACTOR * UNIT_ROUNDOFF * magnitude
    report = GradcheckReport(tolerance=tolerance, eps=eps)
    tensors = [("input", x, analytic_input)] if check_input else []
    tensors += [(name, param, grad.copy()) for name, param, grad in named]
    for name, array, analytic in tensors:
        if analytic is None:
            raise NumcnnError(f"backward returned no gradient for {name}")
        entry = _check_tensor(objective, name, array, analytic, value, roundoff, eps, tolerance, max_checks, generator)
        report.entries.append(entry)
    return report


def _check_tensor(
    objective: Callable[[], float],
    name: str,
    array: np.ndarray,
    analytic: np.ndarray,
    value: float,
    roundoff: float,
    eps: float,
    rtol: float,
    max_checks: int | None,
    generator: np.random.Generator,
) -> GradcheckEntry:
    """Check the sampled entries of one tensor (the input or a parameter) and summarise them."""
    flat = _flat_view(array)
    analytic_flat = np.ravel(analytic)
    positions = np.arange(flat.size)
    if max_checks is not None and flat.size > max_checks:
        positions = np.sort(generator.choice(flat.size, size=max_checks, replace=False))
    bound = ErrorBound(roundoff, float(np.max(np.abs(analytic_flat), initial=0.0)), rtol)
    compared_analytic, compared_numeric = [], []
    kinks = failures = 0
    for position in positions:
        status, numeric, _ = check_entry(
            objective, flat, int(position), float(analytic_flat[position]), eps, value, bound
        )
        if status == KINK:
            kinks += 1
            continue
        failures += status == FAILED
        compared_analytic.append(analytic_flat[position])
        compared_numeric.append(numeric)
    a, n = np.asarray(compared_analytic, dtype=np.float64), np.asarray(compared_numeric, dtype=np.float64)
    return GradcheckEntry(
        name=name,
        shape=tuple(array.shape),
        checked=int(positions.size),
        max_abs_error=float(np.max(np.abs(a - n), initial=0.0)),
        relative_error=relative_error(a, n),
        passed=failures == 0,
        kinks=kinks,
        failures=failures,
        atol=bound.atol(eps),
    )


def check_model(
    name: str,
    *,
    batch_size: int = 2,
    max_checks: int | None = 20,
    seed: int = 0,
    eps: float = 1e-6,
    rtol: float = DEFAULT_RTOL,
    prepare: Callable[[Layer], None] | None = None,
) -> GradcheckReport:
    """What ``numcnn gradcheck NAME`` checks: the registered model ``name`` built in float64 from ``seed``,
    on a batch of standard-normal images with random labels, through its training loss (or a random
    projection for losses that need target vectors). Dropout masks are drawn once and frozen, so that
    every evaluation sees the same function. ``prepare(model)`` runs on the built model first (tests
    use it to plant bugs).
    """
    from numcnn import models
    from numcnn.layers import Dropout
    from numcnn.train import make_loss

    spec = models.get_spec(name)
    rng = np.random.default_rng(seed)
    model = models.build(name, rng=rng, dtype=np.float64)
    if prepare is not None:
        prepare(model)
    inputs = rng.standard_normal((batch_size, *spec.input_shape))
    dropouts = [layer for layer in walk_layers(model) if isinstance(layer, Dropout)]
    if dropouts:
        model.forward(inputs)
        for layer in dropouts:
            layer.freeze_mask()
    labels = rng.integers(0, spec.num_classes, size=batch_size)
    # Losses that need target vectors, not labels, are checked with a random projection instead.
    targets = labels if spec.loss in ("cross_entropy", "rbf_mse", "rbf_map") else None
    return gradcheck(
        model, inputs, loss=make_loss(spec) if targets is not None else None, targets=targets,
        max_checks=max_checks, eps=eps, tolerance=rtol, rng=rng,
    )  # fmt: skip
