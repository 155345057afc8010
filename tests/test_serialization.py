"""numcnn.save / numcnn.load: any model round-trips bit-exactly, registered ones keep loading by name,
and checkpoints written by format version 1 still load."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

import numcnn
from numcnn import models
from numcnn.checkpoint import FORMAT_VERSION, load_checkpoint
from numcnn.errors import CheckpointError, ConfigurationError

FIXTURES = Path(__file__).parent / "fixtures"


@pytest.mark.parametrize("suffix", [".npz", ".safetensors"])
@pytest.mark.parametrize("kind", ["sequential", "graph"])
def test_user_built_models_round_trip_bit_exactly(tmp_path, user_models, randomised_statistics, kind, suffix):
    if suffix == ".safetensors":
        pytest.importorskip("safetensors")
    rng = np.random.default_rng(0)
    builder, shape = user_models[kind]
    model = builder(rng)
    randomised_statistics(model, rng)
    path = numcnn.save(model, tmp_path / f"model{suffix}", input_shape=shape, input_mean=0.5, input_std=0.25)
    loaded = numcnn.load(path)
    assert type(loaded) is type(model) and repr(loaded) == repr(model)
    ours, theirs = model.state_dict(), loaded.state_dict()
    assert list(ours) == list(theirs)
    for name in ours:
        assert ours[name].dtype == theirs[name].dtype and np.array_equal(ours[name], theirs[name]), name
    x = rng.standard_normal((3, *shape)).astype(np.float32)
    model.eval(), loaded.eval()
    np.testing.assert_array_equal(loaded.forward(x), model.forward(x))
    spec = loaded.spec
    assert (spec.input_shape, spec.input_mean, spec.input_std) == (shape, 0.5, 0.25)
    assert spec.num_classes == model.output_shape(shape)[0]
    assert numcnn.layers.describe_layer(loaded) == numcnn.layers.describe_layer(model)


def test_rbf_model_keeps_its_prediction_rule(tmp_path, user_models):
    model = user_models["sequential"][0](np.random.default_rng(1))
    numcnn.save(model, tmp_path / "m.npz", input_shape=(1, 12, 12), loss="rbf_mse", prediction="argmin")
    checkpoint = load_checkpoint(tmp_path / "m.npz")
    assert checkpoint.spec.prediction == "argmin" and checkpoint.spec.loss == "rbf_mse"
    assert checkpoint.meta["version"] == FORMAT_VERSION == 2 and checkpoint.meta["registered"] is False
    assert checkpoint.spec.predict_classes(np.array([[3.0, 1.0, 2.0, 5.0, 4.0]])).tolist() == [1]


def test_float64_models_round_trip(tmp_path, user_models):
    model = user_models["graph"][0](np.random.default_rng(2), dtype=np.float64)
    loaded = numcnn.load(numcnn.save(model, tmp_path / "m.npz", input_shape=(1, 8, 8)))
    assert loaded.state_dict()["fc.weight"].dtype == np.float64


@pytest.mark.parametrize("name", ["lenet5_1998", "resnet_mnist"])
def test_registered_models_load_by_name(tmp_path, name):
    model = models.build(name, rng=4)
    path = numcnn.save(model, tmp_path / "m.npz")
    checkpoint = load_checkpoint(path)
    assert checkpoint.meta["registered"] is True and checkpoint.spec is models.get_spec(name)
    assert checkpoint.meta["architecture"] == numcnn.layers.describe_layer(model)
    x = np.random.default_rng(0).standard_normal((2, *checkpoint.spec.input_shape)).astype(np.float32)
    model.eval(), checkpoint.model.eval()
    np.testing.assert_array_equal(checkpoint.model.forward(x), model.forward(x))


def test_version_1_checkpoint_written_by_the_previous_code_still_loads():
    """tests/fixtures/checkpoint_v1_sk_0.2.npz was written by numcnn before format version 2 (main at 13b0bdb)."""
    checkpoint = load_checkpoint(FIXTURES / "checkpoint_v1_sk_0.2.npz")
    assert checkpoint.meta["version"] == 1 and checkpoint.meta["epoch"] == 3 and checkpoint.spec.name == "sk_0.2"
    recorded = np.load(FIXTURES / "checkpoint_v1_sk_0.2_outputs.npy")
    x = recorded[:, : 28 * 28].reshape(2, 1, 28, 28).astype(np.float32)
    np.testing.assert_array_equal(checkpoint.model.eval().forward(x), recorded[:, 28 * 28 :].astype(np.float32))
    assert numcnn.load(FIXTURES / "checkpoint_v1_sk_0.2.npz").spec.name == "sk_0.2"


def test_loading_never_unpickles(tmp_path):
    path = tmp_path / "m.npz"
    np.savez(path, meta=np.array([{"format": "numcnn-checkpoint"}], dtype=object))
    with pytest.raises(CheckpointError, match=r"not a readable \.npz checkpoint"):
        load_checkpoint(path)


def test_bad_descriptions_and_suffixes_are_one_line_errors(tmp_path, user_models):
    model = user_models["graph"][0](np.random.default_rng(0))
    with pytest.raises(ConfigurationError, match=r"unknown model file suffix '\.pt'"):
        numcnn.save(model, tmp_path / "m.pt")
    path = numcnn.save(model, tmp_path / "m.npz", input_shape=(1, 8, 8))
    with np.load(path) as archive:
        arrays = {key: archive[key] for key in archive.files}
    meta = json.loads(str(arrays["meta"]))
    meta["architecture"]["config"]["nodes"][0]["layer"]["type"] = "NoSuchLayer"
    arrays["meta"] = np.array(json.dumps(meta))
    np.savez(path, **arrays)
    with pytest.raises(CheckpointError, match="unknown layer type 'NoSuchLayer'") as caught:
        numcnn.load(path)
    assert "\n" not in str(caught.value)
