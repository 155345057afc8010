"""The experiment runner: TOML sweeps, parallel resumable runs, results.csv / Markdown / plots."""

from __future__ import annotations

import csv
import json
import os
from pathlib import Path

import pytest

from numcnn.cli.main import main
from numcnn.errors import ConfigurationError
from numcnn.experiments import (
    RunSpec,
    load_experiment,
    load_result,
    markdown,
    packaged_configs,
    run_experiment,
    write_report,
)
from numcnn.train import TrainConfig, fit, read_metrics

QUIET = {"log": lambda line: None}


def write_config(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "sweep.toml"
    path.write_text(text, encoding="utf-8")
    return path


SMALL = """
name = "small"
title = "two models, two seeds"

[train]
epochs = 2
batch_size = 50
lr = 0.05
momentum = 0.9

[defaults]
sizes = [300]

[quick]
epochs = 1
size_divisor = 3
test_limit = 50

[[sweep]]
name = "models"
models = ["lenet5", "sk_0.2"]
train = { lr = 0.002 }

[[sweep]]
name = "seeds"
title = "lenet5 with three seeds"
models = ["lenet5"]
seeds = [0, 1, 2]

[[sweep]]
name = "sizes"
models = ["lenet5"]
sizes = [100, 300]
"""


def sweep_named(experiment, name: str):
    return next(sweep for sweep in experiment.sweeps if sweep.name == name)


def test_packaged_exercise_config_expands_to_the_exercise_runs():
    assert "exercise_15_6" in packaged_configs()
    experiment = load_experiment("exercise_15_6")
    assert [s.name for s in experiment.sweeps] == ["b-d", "b-d-seeds", "e", "f", "g", "h", "i"]
    runs = experiment.runs()
    # 26 for the exercise (shared runs, e.g. SK-0.2 on the first 10,000 with seed 0, are trained once)
    # and 12 more for (b)-(d) with three more seeds.
    assert len(runs) == 38
    assert all(dict(run.train)["epochs"] == 20 and dict(run.train)["batch_size"] == 100 for run in runs)
    sweep = {s.name: s for s in experiment.sweeps}
    assert [r.offset for r in sweep["h"].runs] == [0, 10_000, 20_000, 30_000, 40_000, 50_000]
    assert [r.seed for r in sweep["i"].runs] == [0, 1, 12, 123, 1234, 12345, 123456]
    assert [r.size for r in sweep["g"].runs] == [500, 1000, 2000, 5000, 10_000, 20_000, 60_000]
    assert sweep["g"].varying == ("sizes",) and sweep["b-d"].varying == ("models",)
    assert [r.model for r in sweep["b-d"].runs] == ["base", "bn", "base_dropout", "bn_dropout"]
    config = sweep["i"].runs[3].train_config()
    assert (config.model, config.seed, config.train_limit, config.train_offset, config.lr) == (
        "sk_0.2",
        123,
        10_000,
        0,
        0.001,
    )

    quick = load_experiment("exercise_15_6", quick=True)
    assert all(dict(run.train)["epochs"] == 1 and run.test_limit == 300 for run in quick.runs())
    assert [r.size for r in sweep_named(quick, "g").runs] == [5, 10, 20, 50, 100, 200, 600]
    assert {r.run_id for r in quick.runs()}.isdisjoint({r.run_id for r in runs})


@pytest.mark.parametrize(
    "text, message",
    [
        ("name = 'x'\n[[sweep]]\nname = 'a'\nmodels = ['lenet7']\n", "unknown model 'lenet7'"),
        (
            "name = 'x'\n[train]\nlearning_rate = 1\n[[sweep]]\nname = 'a'\nmodels = ['lenet5']\n",
            "unknown training setting",
        ),
        (
            "name = 'x'\n[[sweep]]\nname = 'a'\nmodels = ['lenet5']\nseeds = [-1]\n",
            "seeds must be a list of integers >= 0",
        ),
        ("name = 'x'\n", "at least one"),
        ("name = 'x'\n[[sweep]]\nname = 'a'\nmodels = ['lenet5']\nepochs = 3\n", "unknown key"),
        ("name = 'x\n", "not valid TOML"),
        ("name = 'x'\n[train]\nlr = -1\n[[sweep]]\nname = 'a'\nmodels = ['lenet5']\n", "learning rate must be > 0"),
    ],
)
def test_bad_experiment_files_give_one_line_errors(tmp_path, text, message):
    with pytest.raises(ConfigurationError, match=message) as caught:
        load_experiment(write_config(tmp_path, text))
    assert "\n" not in str(caught.value)
    with pytest.raises(ConfigurationError, match=r"no experiment file 'nope'.*exercise_15_6"):
        load_experiment("nope")


SWEEP = "[[sweep]]\nname = 'a'\nmodels = ['lenet5']\n"


@pytest.mark.parametrize(
    "text, message",
    [
        ("name = 'x'\nsweep = 3\n", r"sweep must be an array of tables \(\[\[sweep\]\]\), got 3"),
        ("name = 'x'\ndefaults = 5\n" + SWEEP, r"defaults must be a table \(\[defaults\]\), got 5"),
        ("name = 'x'\n[train]\nlr = 'x'\n" + SWEEP, r"\[train\]: lr must be a number, got 'x'"),
        ("name = 'x'\n[train]\nepochs = 2.5\n" + SWEEP, r"\[train\]: epochs must be an integer, got 2.5"),
        ("name = 'x'\n[train]\naugment_flip = 1\n" + SWEEP, r"augment_flip must be true or false, got 1"),
        ("name = 'x'\n[quick]\nepochs = 'one'\n" + SWEEP, r"\[quick\]: epochs must be an integer, got 'one'"),
        (
            "name = 'x'\n[[sweep]]\nname = 'a'\nmodels = 'lenet5'\n",
            "models must be a list of model names, got 'lenet5'",
        ),
        (
            "name = 'x'\n[[sweep]]\nname = 'a'\nmodels = ['lenet5']\nsizes = [10000]\nsubsets = [7]\n",
            "sweep 'a': subset 7 of size 10000 needs examples 70000-79999, but MNIST has 60,000 training examples",
        ),
    ],
)
def test_wrongly_typed_experiment_values_name_the_key(tmp_path, text, message):
    with pytest.raises(ConfigurationError, match=message) as caught:
        load_experiment(write_config(tmp_path, text))
    assert "\n" not in str(caught.value)


def test_parallel_sweep_writes_results_and_a_second_call_skips_everything(tmp_path, synthetic_digits):
    experiment = load_experiment(write_config(tmp_path, SMALL))
    out = tmp_path / "out"
    outcome = run_experiment(experiment, out, jobs=2, threads_per_job=1, dataset=synthetic_digits, **QUIET)
    # lenet5 on 300 examples with seed 0 is shared by "seeds" and "sizes"; "models" trains it at another lr.
    assert not outcome.failures and len(outcome.results) == 6
    for result in outcome.results.values():
        assert 0.0 <= result["test_error"] <= 1.0 and result["epochs"] == 2 and result["test_images"] == 200
    # By the sweep's own runs: the "models" sweep also has a lenet5 run on 300 examples with seed 0 (at
    # another lr), and the results are in the order the parallel jobs finished.
    seeds = {outcome.results[run.run_id]["seed"]: outcome.results[run.run_id]
             for run in sweep_named(experiment, "seeds").runs}  # fmt: skip
    assert len(seeds) == 3 and len({r["test_loss"] for r in seeds.values()}) == 3  # the seed matters

    lines = []
    again = run_experiment(experiment, out, jobs=2, dataset=synthetic_digits, log=lines.append)
    assert "6 already finished, 0 to run" in lines[0] and again.results == outcome.results

    files = write_report(experiment, outcome.results, out, command="numcnn experiment sweep.toml")
    names = {path.name for path in files}
    assert {"results.csv", "results.md", "models_error_per_model.png", "seeds_error_per_seed.png",
            "sizes_error_vs_size.png", "seeds_curves.png"} <= names  # fmt: skip
    with open(out / "results.csv", newline="") as handle:
        rows = list(csv.DictReader(handle))
    assert [row["sweep"] for row in rows] == ["models"] * 2 + ["seeds"] * 3 + ["sizes"] * 2
    assert rows[2]["model"] == "lenet5" and float(rows[2]["test_error"]) == seeds[0]["test_error"]
    report = (out / "results.md").read_text()
    assert "`numcnn experiment sweep.toml`" in report and "| lenet5 | 300 | 0 | 2 |" in report
    last_two = [1 - r["test_accuracy"] for r in read_metrics(out / "runs" / seeds[0]["run_id"])]
    assert float(rows[2]["test_error_last5"]) == pytest.approx(sum(last_two) / 2)  # 2 epochs: both
    assert "sample standard deviation" in report and "## seeds: lenet5 with three seeds" in report


ONE_RUN = SMALL.split("[[sweep]]")[0] + "[[sweep]]\nname = 'one'\nmodels = ['lenet5']\nseeds = [1]\nsizes = [150]\n"


def test_report_gives_each_model_its_spread_over_seeds(tmp_path):
    text = SMALL.split("[[sweep]]")[0] + "[[sweep]]\nname = 'grid'\nmodels = ['lenet5', 'sk_0.2']\nseeds = [0, 1]\n"
    experiment = load_experiment(write_config(tmp_path, text))
    errors = iter([0.010, 0.030, 0.020, 0.024])
    results = {
        run.run_id: {"test_error": next(errors), "train_error": 0.0, "seconds": 1.0, "model": run.model}
        for run in experiment.runs()
    }
    report = markdown(experiment, results)
    assert "lenet5: mean test error 2.00%, sample standard deviation 1.41%, range 1.00%–3.00% (n = 2)." in report
    assert "sk_0.2: mean test error 2.20%" in report
    write_report(experiment, results, tmp_path)
    assert (tmp_path / "grid_error_per_model.png").is_file()


def test_report_and_cost_use_the_models_recommended_settings(tmp_path):
    from numcnn.experiments.runner import estimated_cost

    text = "name = 'paper'\n[[sweep]]\nname = 'l98'\nmodels = ['lenet5_1998']\nsizes = [100]\n"
    experiment = load_experiment(write_config(tmp_path, text))
    (run,) = experiment.runs()
    results = {run.run_id: {"test_error": 0.01, "train_error": 0.0, "seconds": 1.0, "model": run.model}}
    report = markdown(experiment, results)
    # lenet5_1998 recommends SDLM, lr 0.002, batch 32, 20 epochs -- not the fallbacks 10 / 64 / 0.05
    assert "Training: 20 epochs, batch 32, lr 0.002, momentum 0.9, weight decay 0.0, optimizer sdlm." in report
    twenty, ten = (RunSpec("lenet5_1998", 100, 0, 0, (("epochs", epochs),)) for epochs in (20, 10))
    assert estimated_cost(run) == estimated_cost(twenty) == 2 * estimated_cost(ten)  # 20 epochs, not 10


def test_an_interrupted_run_resumes_from_its_checkpoint(tmp_path, synthetic_digits):
    experiment = load_experiment(write_config(tmp_path, ONE_RUN))
    (run,) = experiment.runs()
    out = tmp_path / "out"
    folder = out / "runs" / run.run_id
    # A sweep killed after the first of two epochs left this behind:
    first_epoch = TrainConfig(**{**vars(run.train_config()), "epochs": 1})
    fit(first_epoch, synthetic_digits, folder, log=lambda line: None, show_progress=False)
    straight = fit(run.train_config(), synthetic_digits, log=lambda line: None, show_progress=False)

    outcome = run_experiment(experiment, out, jobs=1, dataset=synthetic_digits, **QUIET)
    assert "resuming lenet5 from the checkpoint at the end of epoch 1" in (folder / "train.log").read_text()
    assert [r["epoch"] for r in read_metrics(folder)] == [1, 2]
    assert outcome.results[run.run_id]["test_loss"] == pytest.approx(straight[-1].test_loss, rel=1e-6)
    assert load_result(out, run) == outcome.results[run.run_id]


def test_finished_checkpoint_without_result_is_not_retrained(tmp_path, synthetic_digits):
    experiment = load_experiment(write_config(tmp_path, ONE_RUN))
    (run,) = experiment.runs()
    out = tmp_path / "out"
    folder = out / "runs" / run.run_id
    fit(run.train_config(), synthetic_digits, folder, log=lambda line: None, show_progress=False)
    result = run_experiment(experiment, out, jobs=1, dataset=synthetic_digits, **QUIET).results[run.run_id]
    assert result["test_error"] == pytest.approx(1 - read_metrics(folder)[-1]["test_accuracy"])
    assert "resuming" not in (folder / "train.log").read_text()


def test_failed_runs_are_reported_and_the_others_finish(tmp_path, synthetic_digits):
    text = SMALL.split("[[sweep]]")[0] + "[[sweep]]\nname = 'subsets'\nmodels = ['sk_0.2']\nsubsets = [0, 5]\n"
    experiment = load_experiment(write_config(tmp_path, text))
    outcome = run_experiment(experiment, tmp_path / "out", jobs=1, dataset=synthetic_digits, **QUIET)
    assert len(outcome.results) == 1 and len(outcome.failures) == 1
    assert "beyond the 600 training examples" in next(iter(outcome.failures.values()))


def test_changed_settings_in_an_old_run_folder_are_refused(tmp_path, synthetic_digits):
    experiment = load_experiment(write_config(tmp_path, ONE_RUN))
    (run,) = experiment.runs()
    folder = tmp_path / "out" / "runs" / run.run_id
    folder.mkdir(parents=True)
    (folder / "run.json").write_text(json.dumps({**run.describe(), "seed": 99}))
    (folder / "result.json").write_text(json.dumps({"test_error": 0.5}))
    assert load_result(tmp_path / "out", run) is None  # a stale result is not reused
    outcome = run_experiment(experiment, tmp_path / "out", jobs=1, dataset=synthetic_digits, **QUIET)
    assert "different settings" in outcome.failures[run.run_id]


@pytest.mark.parametrize("jobs", ["1", "2"])
def test_missing_mnist_is_the_same_one_line_error_with_any_number_of_jobs(tmp_path, capsys, monkeypatch, jobs):
    monkeypatch.delenv("NUMCNN_DATA", raising=False)
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))
    empty = tmp_path / "empty"
    empty.mkdir()
    config = write_config(tmp_path, ONE_RUN)
    code = main(["experiment", str(config), "--jobs", jobs, "--data-dir", str(empty), "--out", str(tmp_path / "out")])
    err = capsys.readouterr().err
    assert code == 1
    assert err.startswith("numcnn: error: MNIST files not found") and str(empty) in err
    assert err.count("\n") == 1 and "Traceback" not in err and "BrokenProcessPool" not in err


def test_a_worker_whose_setup_failed_reports_it_for_each_run(tmp_path, monkeypatch):
    from numcnn.experiments import runner

    monkeypatch.setenv("NUMBA_NUM_THREADS", "1")  # _init_worker sets it; restored afterwards
    monkeypatch.setattr(runner, "configure_compute", lambda backend, threads: None)  # keep this process's
    monkeypatch.setattr(runner, "_WORKER", {})
    monkeypatch.delenv("NUMCNN_DATA", raising=False)
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    runner._init_worker(1, None, str(tmp_path), None)  # no MNIST in tmp_path
    (run,) = load_experiment(write_config(tmp_path, ONE_RUN)).runs()
    result = runner._worker_run(run, str(tmp_path / "out"))
    assert result["run_id"] == run.run_id and result["failed"].startswith("MNIST files not found")


def test_a_setting_numcnn_gained_later_counts_as_its_default(tmp_path):
    experiment = load_experiment(write_config(tmp_path, ONE_RUN))
    (run,) = experiment.runs()
    folder = tmp_path / "out" / "runs" / run.run_id
    folder.mkdir(parents=True)
    older = run.describe()
    del older["train"]["augment_rotate"]  # as written before the field existed
    (folder / "run.json").write_text(json.dumps(older))
    (folder / "result.json").write_text(json.dumps({"test_error": 0.5}))
    assert load_result(tmp_path / "out", run) == {"test_error": 0.5}
    older["train"]["lr"] = 0.5  # but a setting that differs is a different run
    (folder / "run.json").write_text(json.dumps(older))
    assert load_result(tmp_path / "out", run) is None


@pytest.mark.slow
@pytest.mark.skipif(not os.environ.get("NUMCNN_DATA"), reason="needs the real MNIST files (NUMCNN_DATA)")
def test_quick_exercise_suite_end_to_end_on_mnist(tmp_path, capsys):
    code = main(["experiment", "exercise_15_6", "--quick", "--jobs", "2", "--out", str(tmp_path)])
    output = capsys.readouterr().out
    assert code == 0, output
    with open(tmp_path / "results.csv", newline="") as handle:
        rows = list(csv.DictReader(handle))
    assert len(rows) == 4 + 16 + 2 + 5 + 7 + 6 + 7  # one row per sweep entry
    assert {row["sweep"] for row in rows} == {"b-d", "b-d-seeds", "e", "f", "g", "h", "i"}
    assert all(0.0 <= float(row["test_error"]) <= 1.0 and row["test_images"] == "300" for row in rows)
    assert (tmp_path / "g_error_vs_size.png").is_file() and (tmp_path / "i_error_per_seed.png").is_file()
    report = (tmp_path / "results.md").read_text()
    assert "(quick profile)" in report
    assert "training sets of 5, 10, 20, 50, 100, 200, 600 examples, 1 epoch(s), test error on the first 300" in report
    assert main(["experiment", "exercise_15_6", "--quick", "--out", str(tmp_path), "--dry-run"]) == 0
    assert capsys.readouterr().out.count("finished") == 38
