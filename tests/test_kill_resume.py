"""A small run of benchmarks/kill_resume.py: ``kill -9`` at random moments, then ``--resume``."""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path

import pytest

SCRIPT = Path(__file__).resolve().parent.parent / "benchmarks" / "kill_resume.py"


def load_script():
    spec = importlib.util.spec_from_file_location("kill_resume", SCRIPT)
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module
    spec.loader.exec_module(module)
    return module


@pytest.mark.slow
def test_two_kills_and_a_full_disk_lose_nothing(tmp_path):
    script = load_script()
    argv = ["--kills", "2", "--synthetic", "--train-limit", "192", "--batch-size", "32", "--epochs", "2",
            "--checkpoint-every", "2", "--seed", "3", "--work", str(tmp_path)]  # fmt: skip
    counts = script.measure(script.parse_arguments(argv), log=lambda line: None)
    assert counts["kills"] == counts["readable"] == counts["equal_weights"] == 2
    assert counts["max_steps_lost"] <= 2  # one checkpoint interval
    assert counts["message"].startswith("numcnn: error: ") and "cannot be written" in counts["message"]
