"""The ONNX Runtime baseline for inference: the same network exported to ONNX and run by ``onnxruntime``.

Used by the benchmark when ``onnxruntime`` is installed. The ONNX file comes from numcnn's own
exporter (``numcnn.export.to_onnx``) when that module exists, otherwise from ``torch.onnx.export``
of the PyTorch twin (:mod:`numcnn.benchmark.torch_baseline`); either way it carries numcnn's
weights, with the batch axis left dynamic. The session runs on the CPU with ``threads`` intra-op
threads, like numcnn and PyTorch in the same benchmark.
"""

from __future__ import annotations

import importlib
import importlib.util
import tempfile
import warnings
from pathlib import Path

import numpy as np

from numcnn.errors import ConfigurationError

__all__ = ["OnnxRunner", "onnxruntime_available"]


def onnxruntime_available() -> bool:
    return importlib.util.find_spec("onnxruntime") is not None


def _export_with_numcnn(numcnn_model, path: Path) -> bool:
    """Export with numcnn's own exporter; False when this numcnn has none."""
    if importlib.util.find_spec("numcnn.export") is None:
        return False
    # Imported by name: numcnn.export is another branch's module and may not exist in this one.
    to_onnx = getattr(importlib.import_module("numcnn.export"), "to_onnx", None)
    if to_onnx is None:
        return False
    to_onnx(numcnn_model, path)
    return True


def _export_with_torch(torch_model, input_shape: tuple[int, ...], path: Path) -> None:
    import torch

    example = torch.zeros((2, *input_shape), dtype=torch.float32)
    torch_model.eval()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # the TorchScript exporter's deprecation notice
        torch.onnx.export(
            torch_model, (example,), str(path), input_names=["x"], output_names=["y"],
            dynamic_axes={"x": {0: "batch"}, "y": {0: "batch"}}, dynamo=False,
        )  # fmt: skip


class OnnxRunner:
    """An ONNX Runtime session of the benchmarked network; ``source`` says which exporter made it."""

    def __init__(self, numcnn_model, torch_model, input_shape: tuple[int, ...], threads: int) -> None:
        import onnxruntime

        self.onnxruntime = onnxruntime
        with tempfile.TemporaryDirectory() as folder:
            path = Path(folder) / "model.onnx"
            if _export_with_numcnn(numcnn_model, path):
                self.source = "numcnn.export.to_onnx"
            elif torch_model is not None:
                _export_with_torch(torch_model, input_shape, path)
                self.source = "torch.onnx.export of the PyTorch twin"
            else:
                raise ConfigurationError("no ONNX export for this model (needs its PyTorch twin or numcnn.export)")
            options = onnxruntime.SessionOptions()
            options.intra_op_num_threads = threads
            options.inter_op_num_threads = 1
            # ONNX Runtime's workers keep spinning after a run while the session lives: here they
            # slowed the numcnn training timed next by 12-19% (same process, LeNet-5, 12 rounds
            # alternating; a pause of 0.1 or 0.5 s did not help). Stopping them when a run returns
            # removed that and left ONNX Runtime's own inference time within noise (0.140-0.155
            # against 0.142-0.145 s per 10k images, medians); they still spin during a run.
            options.add_session_config_entry("session.force_spinning_stop", "1")
            self.session = onnxruntime.InferenceSession(
                str(path), sess_options=options, providers=["CPUExecutionProvider"]
            )
        self.input_name = self.session.get_inputs()[0].name
        self.threads = threads

    def run(self, x: np.ndarray) -> np.ndarray:
        return self.session.run(None, {self.input_name: np.ascontiguousarray(x, dtype=np.float32)})[0]

    def infer(self, batches) -> None:
        for x, _ in batches:
            self.run(x)

    def note(self) -> str:
        return f"ONNX Runtime {self.onnxruntime.__version__}, {self.threads} threads ({self.source})"
