"""Experiment configurations: a TOML file describing sweeps over models × training-set size × subset × seed.

Format (all keys but ``name``, ``models`` and the sweeps' ``name`` are optional)::

    name = "exercise_15_6"
    title = "..."

    [train]                     # numcnn.train.TrainConfig fields shared by every run
    epochs = 20
    batch_size = 100
    lr = 0.001

    [defaults]                  # sweep axes a sweep does not set itself
    sizes = [10000]             # training-set sizes
    subsets = [0]               # subset i trains on examples [i·size, (i+1)·size)
    seeds = [0]

    [quick]                     # what --quick changes: a smoke test of the whole pipeline
    epochs = 1
    size_divisor = 50           # every size divided by this (at least 1)
    test_limit = 500            # evaluate on the first 500 test images only

    [[sweep]]
    name = "g"
    title = "SK-0.2 with more or less training data"
    models = ["sk_0.2"]
    sizes = [500, 1000, 2000]
    train = { lr = 0.01 }       # optional TrainConfig overrides for this sweep

A *run* is one (model, size, subset, seed, training settings) combination; a run shared by several
sweeps (e.g. SK-0.2 on the first 10,000 examples with seed 0) is trained once.
"""

from __future__ import annotations

import hashlib
import json
import sys
from dataclasses import asdict, dataclass, field, fields
from importlib import resources
from pathlib import Path
from typing import Any

from numcnn import models
from numcnn.errors import ConfigurationError, one_line
from numcnn.train import TrainConfig

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover - Python 3.10 installs the tomli backport (pyproject dependency)
    import tomli as tomllib

__all__ = ["RunSpec", "Sweep", "ExperimentConfig", "load_experiment", "packaged_configs", "resolve_config_path"]

TRAIN_FIELDS = {f.name for f in fields(TrainConfig)} - {"model", "seed", "train_limit", "train_offset"}
QUICK_KEYS = {"size_divisor", "test_limit"} | TRAIN_FIELDS
AXES = ("sizes", "subsets", "seeds")
RESULT_NEUTRAL = {"eval_batch_size"}
MNIST_TRAIN_SIZE = 60000  # subsets must lie inside MNIST's training set


@dataclass(frozen=True)
class RunSpec:
    """One training run of a sweep."""

    model: str
    size: int  # training examples
    subset: int  # which block of ``size`` consecutive examples: offset = subset · size
    seed: int
    train: tuple[tuple[str, Any], ...]  # TrainConfig fields besides model/seed/limit/offset, sorted
    test_limit: int | None = None  # evaluate on the first test_limit test images only (quick profile)

    @property
    def offset(self) -> int:
        return self.subset * self.size

    @property
    def run_id(self) -> str:
        """Directory name: readable, plus a digest of the training settings and test limit (not of
        settings that cannot change a result, such as the evaluation batch size)."""
        settings = [item for item in self.train if item[0] not in RESULT_NEUTRAL]
        digest = hashlib.sha1(json.dumps([settings, self.test_limit]).encode()).hexdigest()[:8]
        return f"{self.model}-n{self.size}-subset{self.subset}-seed{self.seed}-{digest}"

    def train_config(self) -> TrainConfig:
        """numcnn's defaults, then the model's recommended settings, then the experiment's."""
        return TrainConfig.for_model(
            self.model, seed=self.seed, train_limit=self.size, train_offset=self.offset, **dict(self.train)
        )

    def describe(self) -> dict[str, Any]:
        """What identifies the run, as stored in ``run.json`` and compared when a sweep resumes."""
        return {"model": self.model, "size": self.size, "subset": self.subset, "seed": self.seed,
                "test_limit": self.test_limit, "train": asdict(self.train_config())}  # fmt: skip


@dataclass(frozen=True)
class Sweep:
    name: str
    title: str
    runs: tuple[RunSpec, ...]
    varying: tuple[str, ...]  # which of "models", "sizes", "subsets", "seeds" take more than one value


@dataclass
class ExperimentConfig:
    name: str
    title: str
    sweeps: list[Sweep]
    path: Path | None = None
    quick: bool = False
    notes: list[str] = field(default_factory=list)

    def runs(self) -> list[RunSpec]:
        """Every distinct run, in first-appearance order."""
        unique: dict[str, RunSpec] = {}
        for sweep in self.sweeps:
            for run in sweep.runs:
                unique.setdefault(run.run_id, run)
        return list(unique.values())


def packaged_configs() -> list[str]:
    """Names of the configurations shipped in ``numcnn/configs`` (e.g. ``exercise_15_6``)."""
    folder = resources.files("numcnn") / "configs"
    return sorted(entry.name[: -len(".toml")] for entry in folder.iterdir() if entry.name.endswith(".toml"))


def resolve_config_path(name_or_path: str | Path) -> Path:
    """A TOML file path as given, or the packaged configuration of that name."""
    path = Path(name_or_path)
    if path.is_file():
        return path
    packaged = resources.files("numcnn") / "configs" / f"{path.stem if path.suffix == '.toml' else path.name}.toml"
    if packaged.is_file():
        return Path(str(packaged))
    known = ", ".join(packaged_configs())
    raise ConfigurationError(f"no experiment file {str(name_or_path)!r}; packaged ones: {known}")


# The TOML types each training setting accepts (from TrainConfig's annotations, which are strings here).
_NUMBER = (int, float)
_TRAIN_TYPES = {
    f.name: {"int": int, "float": _NUMBER, "str": str, "bool": bool}.get(str(f.type), dict)
    for f in fields(TrainConfig)
    if f.name in TRAIN_FIELDS
}
_TYPE_NAMES = {int: "an integer", _NUMBER: "a number", str: "a string", bool: "true or false", dict: "a table"}


def _check_value(value: Any, expected: Any, key: str, where: str) -> None:
    wrong = not isinstance(value, expected) or (isinstance(value, bool) and expected is not bool)
    if expected is dict and not wrong:
        wrong = any(isinstance(v, bool) or not isinstance(v, _NUMBER) for v in value.values())
    if wrong:
        raise ConfigurationError(f"{where}: {key} must be {_TYPE_NAMES[expected]}, got {value!r}")


def _int_list(value: Any, key: str, where: str, minimum: int) -> list[int]:
    values = value if isinstance(value, list) else [value]
    if not values or any(isinstance(v, bool) or not isinstance(v, int) or v < minimum for v in values):
        raise ConfigurationError(f"{where}: {key} must be a list of integers >= {minimum}, got {value!r}")
    return values


def _check_train(table: Any, where: str) -> dict[str, Any]:
    if not isinstance(table, dict):
        raise ConfigurationError(f"{where} must be a table of training settings, got {table!r}")
    unknown = sorted(set(table) - TRAIN_FIELDS)
    if unknown:
        raise ConfigurationError(f"{where}: unknown training setting(s) {unknown}; known: {sorted(TRAIN_FIELDS)}")
    for key, value in table.items():
        _check_value(value, _TRAIN_TYPES[key], key, where)
    return dict(table)


def load_experiment(name_or_path: str | Path, *, quick: bool = False) -> ExperimentConfig:
    """Read, validate and expand an experiment file (a path, or a packaged name like ``exercise_15_6``)."""
    path = resolve_config_path(name_or_path)
    try:
        document = tomllib.loads(path.read_text(encoding="utf-8"))
    except tomllib.TOMLDecodeError as error:
        raise ConfigurationError(f"{path}: not valid TOML ({one_line(error)})") from None
    unknown = sorted(set(document) - {"name", "title", "train", "defaults", "quick", "sweep", "notes"})
    if unknown:
        raise ConfigurationError(f"{path}: unknown top-level key(s) {unknown}")
    if "name" not in document or not document.get("sweep"):
        raise ConfigurationError(f"{path}: an experiment needs a name and at least one [[sweep]]")
    for key in ("name", "title"):
        if not isinstance(document.get(key, ""), str):
            raise ConfigurationError(f"{path}: {key} must be a string, got {document[key]!r}")
    notes = document.get("notes", [])
    if not isinstance(notes, list) or not all(isinstance(note, str) for note in notes):
        raise ConfigurationError(f"{path}: notes must be a list of strings, got {notes!r}")
    if not isinstance(document["sweep"], list) or not all(isinstance(t, dict) for t in document["sweep"]):
        raise ConfigurationError(f"{path}: sweep must be an array of tables ([[sweep]]), got {document['sweep']!r}")

    train = _check_train(document.get("train", {}), f"{path} [train]")
    defaults = document.get("defaults", {})
    if not isinstance(defaults, dict):
        raise ConfigurationError(f"{path}: defaults must be a table ([defaults]), got {defaults!r}")
    if set(defaults) - set(AXES):
        raise ConfigurationError(f"{path} [defaults]: only {', '.join(AXES)} may be set there")
    quick_table = document.get("quick", {})
    if not isinstance(quick_table, dict):
        raise ConfigurationError(f"{path}: quick must be a table ([quick]), got {quick_table!r}")
    if set(quick_table) - QUICK_KEYS:
        raise ConfigurationError(f"{path} [quick]: unknown key(s) {sorted(set(quick_table) - QUICK_KEYS)}")
    quick_train = _check_train({k: v for k, v in quick_table.items() if k in TRAIN_FIELDS}, f"{path} [quick]")
    divisor, test_limit = 1, None
    if quick:
        divisor = _int_list(quick_table.get("size_divisor", 1), "size_divisor", f"{path} [quick]", 1)[0]
        if "test_limit" in quick_table:
            test_limit = _int_list(quick_table["test_limit"], "test_limit", f"{path} [quick]", 1)[0]
        train.update(quick_train)

    sweeps, names = [], set()
    for index, table in enumerate(document["sweep"]):
        where = f"{path} sweep {table.get('name', index + 1)!r}"
        extra = sorted(set(table) - {"name", "title", "models", "train", *AXES})
        if extra or "name" not in table or not table.get("models"):
            raise ConfigurationError(f"{where}: needs name and models; unknown key(s) {extra or 'none'}")
        if not isinstance(table["name"], str) or not isinstance(table.get("title", ""), str):
            raise ConfigurationError(f"{where}: name and title must be strings")
        if not isinstance(table["models"], list) or not all(isinstance(m, str) for m in table["models"]):
            raise ConfigurationError(f"{where}: models must be a list of model names, got {table['models']!r}")
        if table["name"] in names:
            raise ConfigurationError(f"{where}: sweep name used twice")
        names.add(table["name"])
        for model in table["models"]:
            models.get_spec(model)  # unknown model names fail here, listing the known ones
        settings = {**train, **_check_train(table.get("train", {}), f"{where} train")}
        for model in table["models"]:
            TrainConfig.for_model(model, **settings).validate()
        frozen = tuple(sorted(settings.items()))
        axes = {
            "sizes": _int_list(table.get("sizes", defaults.get("sizes", [10000])), "sizes", where, 1),
            "subsets": _int_list(table.get("subsets", defaults.get("subsets", [0])), "subsets", where, 0),
            "seeds": _int_list(table.get("seeds", defaults.get("seeds", [0])), "seeds", where, 0),
        }
        for size in axes["sizes"]:
            size = max(1, size // divisor)
            last = max(axes["subsets"])
            if (last + 1) * size > MNIST_TRAIN_SIZE:
                raise ConfigurationError(
                    f"{where}: subset {last} of size {size} needs examples {last * size}-{(last + 1) * size - 1}, "
                    f"but MNIST has {MNIST_TRAIN_SIZE:,} training examples"
                )
        runs = tuple(
            RunSpec(model, max(1, size // divisor), subset, seed, frozen, test_limit)
            for model in table["models"]
            for size in axes["sizes"]
            for subset in axes["subsets"]
            for seed in axes["seeds"]
        )
        varying = tuple(key for key, values in [("models", table["models"]), *axes.items()] if len(values) > 1)
        sweeps.append(Sweep(table["name"], table.get("title", ""), runs, varying))
    return ExperimentConfig(document["name"], document.get("title", ""), sweeps, path, quick, list(notes))
