"""LeCun's stochastic diagonal Levenberg–Marquardt method (SDLM): one learning rate per parameter.

Seed 002 ("实际训练问题 / 学习率") mentions "LeCun's stochastic online method (diagonal approx to
hessian)"; LeCun, Bottou, Bengio, Haffner 1998 (§III.C, Appendix C) trained LeNet-5 with it::

    w_k ← w_k − ε_k · ∂E/∂w_k,        ε_k = η / (μ + h_kk)

where ``h_kk`` estimates the diagonal of the Hessian of ``E`` by the Gauss–Newton curvature pass
(:mod:`numcnn.functional.curvature`, each layer's ``backward_curvature``), averaged over a few hundred
training samples before every epoch and then held fixed for the epoch; ``μ`` keeps the step bounded
where the curvature is tiny. Directions of strong curvature get small steps, flat ones large steps --
Newton's method, one parameter at a time.

The paper's settings: 500 samples, ``μ = 0.02``, and a global ``η`` of 0.0005 for the first two passes,
0.0002 for the next three, 0.0001 for the next three, 0.00005 for the next four and 0.00001 thereafter
(:data:`LECUN_1998_SCHEDULE`, as factors of the first value). The paper updates after every sample; with
mini-batches of ``B`` samples numcnn takes ``B`` times fewer steps, so ``η`` is best scaled up accordingly.
"""

from __future__ import annotations

from collections.abc import Iterable

import numpy as np

from numcnn.errors import ConfigurationError, NumcnnError
from numcnn.layers.base import Layer
from numcnn.layers.flat import walk_layers
from numcnn.optim import Optimizer, ParameterPairs

__all__ = ["SDLM", "LECUN_1998_SCHEDULE", "gauss_newton_diagonal", "layers_without_curvature", "schedule_factor"]

# (first epoch, factor of the initial η): the paper's 0.0005, 0.0002, 0.0001, 0.00005, 0.00001.
LECUN_1998_SCHEDULE: tuple[tuple[int, float], ...] = ((1, 1.0), (3, 0.4), (6, 0.2), (9, 0.1), (13, 0.02))


def schedule_factor(schedule: Iterable[tuple[int, float]] | None, epoch: int) -> float:
    """The factor of the last step of ``schedule`` whose first epoch is ``<= epoch`` (1 without a schedule)."""
    factor = 1.0
    for first_epoch, step_factor in schedule or ():
        if epoch >= first_epoch:
            factor = step_factor
    return factor


def layers_without_curvature(model: Layer) -> list[str]:
    """Type names of the layers in ``model`` that have no curvature pass (``backward_curvature``): SDLM
    cannot train such a model. Every layer type of numcnn has one except ``LearnedCombination2d``."""
    return sorted(
        {
            type(layer).__name__
            for layer in walk_layers(model)
            if type(layer).backward_curvature is Layer.backward_curvature
        }
    )


def gauss_newton_diagonal(
    model, loss, images: np.ndarray, labels: np.ndarray, batch_size: int = 100
) -> dict[str, np.ndarray]:
    """The Gauss–Newton estimate ``h_kk`` of every parameter of ``model``, averaged over the samples.

    For each batch: forward, the loss's first and second derivatives at the outputs, then the curvature
    pass ``model.backward_curvature`` from the last layer to the first. With a mean loss each batch gives
    the per-sample average over that batch; batches are weighted by their size.

    Returns ``{name: h}`` with the names and shapes of ``model.named_parameters()``.
    """
    if len(images) == 0:
        raise ConfigurationError("the curvature estimate needs at least one sample")
    total: dict[str, np.ndarray] = {}
    for start in range(0, len(images), batch_size):
        batch_images, batch_labels = images[start : start + batch_size], labels[start : start + batch_size]
        outputs = model.forward(batch_images)
        loss.forward(outputs, batch_labels)
        _, curvatures = model.backward_curvature(batch_images, loss.curvature(), loss.backward())
        weight = len(batch_labels) / len(labels)
        for name, value in curvatures.items():
            total[name] = total.get(name, 0.0) + weight * value
    missing = [name for name, _, _ in model.named_parameters() if name not in total]
    if missing:
        raise NumcnnError(f"the curvature pass gave no estimate for {missing}")
    return total


class SDLM(Optimizer):
    """Stochastic diagonal Levenberg–Marquardt: ``w ← w − η/(μ + h) · ∂E/∂w`` per parameter entry.

    Args:
        parameters: ``(param, grad)`` pairs or groups (e.g. with their own ``lr``), as for :class:`SGD`.
        lr: the global η (multiplied by ``schedule``'s factor of the current epoch).
        damping: μ, added to the curvature (paper: 0.02).
        schedule: ``(first_epoch, factor)`` steps, e.g. :data:`LECUN_1998_SCHEDULE`; ``None`` keeps η.
        curvature_samples: how many training samples :meth:`start_epoch` estimates ``h`` on (paper: 500).

    Before the first estimate ``h = 0``, i.e. plain SGD with learning rate ``η/μ``. The estimate is
    optimiser state (slot ``"curvature"``), so it is saved in checkpoints.
    """

    def __init__(
        self,
        parameters: ParameterPairs | Iterable[dict],
        lr: float,
        damping: float = 0.02,
        schedule: Iterable[tuple[int, float]] | None = None,
        curvature_samples: int = 500,
        curvature_batch_size: int = 100,
    ) -> None:
        if lr <= 0 or damping <= 0 or curvature_samples < 1 or curvature_batch_size < 1:
            raise ConfigurationError(
                f"SDLM needs lr ({lr}) and damping ({damping}) > 0 and at least one curvature sample"
            )
        super().__init__(parameters, lr=float(lr), damping=float(damping))
        self.schedule = tuple(schedule) if schedule is not None else None
        self.initial_lrs = [group["lr"] for group in self.param_groups]
        self.curvature_samples = int(curvature_samples)
        self.curvature_batch_size = int(curvature_batch_size)

    def start_epoch(self, epoch: int, *, model=None, loss=None, images=None, labels=None, rng=None, **_) -> None:
        """Set η for ``epoch`` (1-based) from the schedule and re-estimate ``h`` on random training samples."""
        factor = schedule_factor(self.schedule, epoch)
        for group, initial_lr in zip(self.param_groups, self.initial_lrs):
            group["lr"] = initial_lr * factor
        if model is None:
            return
        if loss is None or images is None or labels is None:
            raise ConfigurationError("SDLM.start_epoch needs the model, the loss and training images/labels")
        generator = rng if rng is not None else np.random.default_rng()
        count = min(self.curvature_samples, len(labels))
        chosen = generator.choice(len(labels), size=count, replace=False)
        estimate = gauss_newton_diagonal(model, loss, images[chosen], labels[chosen], self.curvature_batch_size)
        self.set_curvature(model, estimate)

    def set_curvature(self, model, curvatures: dict[str, np.ndarray]) -> None:
        """Store ``h`` for every parameter of the optimiser, matched to ``model``'s parameters by name."""
        by_array = {id(param): curvatures[name] for name, param, _ in model.named_parameters() if name in curvatures}
        for index, (param, _) in enumerate(self.pairs()):
            if id(param) not in by_array:
                raise ConfigurationError("SDLM.set_curvature: the model does not own this optimiser's parameters")
            self.state.setdefault(index, {})["curvature"] = np.asarray(by_array[id(param)], dtype=param.dtype).copy()

    def curvature(self, index: int) -> np.ndarray | None:
        """The current ``h`` of parameter ``index`` (of :meth:`pairs`), or ``None`` before the first estimate."""
        return self.state.get(index, {}).get("curvature")

    def step(self) -> None:
        index = 0
        for group in self.param_groups:
            lr, damping = group["lr"], group["damping"]
            for param, grad in group["params"]:
                curvature = self.curvature(index)
                # ε_k = η / (μ + h_kk); h ≥ 0 by construction (Gauss–Newton), so ε_k ≤ η/μ.
                step_sizes = lr / (damping + (curvature if curvature is not None else 0.0))
                param -= step_sizes * grad
                index += 1
