"""docs/extending.md's worked examples work as written: its ``# file:`` blocks are written into the
test's folder (the YAML files where ``./studies`` is read, the data script where ``./datasets`` is),
its modules imported under the names the packages give their own, and then the architecture
samples what it trains at every budget and runs a study, and the dataset loads batches and a search
on it is planned."""

from __future__ import annotations

import importlib.util
import json
import re
import runpy
import sys
from pathlib import Path

import optuna
import pytest
import torch

from hpo_vidpred import archs, budgets
from hpo_vidpred import data as datasets
from hpo_vidpred.errors import HpoError
from hpo_vidpred.specs import StudySpec, to_dict
from hpo_vidpred.study.plan import plan_study

DOC = Path(__file__).resolve().parents[1] / "docs" / "extending.md"
BLOCK = re.compile(r"^```\w*\n# file: (\S+)\n(.*?)^```$", re.MULTILINE | re.DOTALL)
FILES = {"hpo_vidpred/archs/lastframe.py", "studies/lastframe.yaml", "studies/fixed/lastframe.yaml",
         "datasets/clips/make_clips.py", "hpo_vidpred/data/clips.py"}


def _blocks() -> dict[str, str]:
    return {m.group(1): m.group(2) for m in BLOCK.finditer(DOC.read_text())}


@pytest.fixture
def extended(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """The doc's files written below the test's folder (its working directory) and its modules
    registered, for this test only."""
    for registry in (archs.ARCHS, budgets.WIDTHS, datasets.DATASETS):
        monkeypatch.setattr(registry, "_items", dict(registry._items))
    for name, text in _blocks().items():
        path = tmp_path / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text)
        if name.startswith("hpo_vidpred/"):
            module = name.removesuffix(".py").replace("/", ".")
            spec = importlib.util.spec_from_file_location(module, path)
            monkeypatch.setitem(sys.modules, module, importlib.util.module_from_spec(spec))
            spec.loader.exec_module(sys.modules[module])
    return tmp_path


def test_the_doc_writes_an_architecture_and_a_dataset() -> None:
    assert set(_blocks()) == FILES


@pytest.mark.parametrize("budget", budgets.BUDGETS.names())
def test_the_example_architecture_trains_what_it_samples(extended: Path, budget: str) -> None:
    plan = plan_study(StudySpec(arch="lastframe", data="mmnist", budget=budget))
    study = optuna.create_study(sampler=optuna.samplers.RandomSampler(seed=0))
    most = budgets.get(budget).max_width
    widths = set()
    for number in range(40):
        trial = study.ask()
        values = plan.sample_space.sample(trial)
        model, train = plan.trial_specs(values, number, device="cpu")
        trained = plan.space.trained_values(to_dict(model), to_dict(train))
        assert {k: trained.get(k) for k in trial.params} == trial.params
        archs.check_spec(model)
        widths.add(model.config["width"])
        study.tell(trial, 0.0)
    assert max(widths) <= (most or 64) and len(widths) > 2  # capped by the budget, still a range
    data = plan.data
    with torch.no_grad():
        frames = archs.create_model(plan.model)(
            torch.rand(2, data.n_in, data.channels, data.height, data.width), data.n_out).frames
    assert frames.shape == (2, data.n_out, data.channels, data.height, data.width)


def test_the_example_architecture_runs_a_study_and_has_a_fixed_configuration(
        extended: Path, capsys: pytest.CaptureFixture[str]) -> None:
    from hpo_vidpred.cli import main
    from hpo_vidpred.workflows.matrix import plan_matrix

    storage = f"sqlite:///{extended / 'store.db'}"
    assert main(["run", "--arch", "lastframe", "--data", "mmnist", "--budget", "smoke",
                 "--trials", "2", "--workers", "1", "--storage", storage, "--quiet",
                 "--json"]) == 0
    summary = json.loads(capsys.readouterr().out)
    assert summary["study"] == "lastframe-mmnist" and summary["trials"]["finished"] == 2
    study = optuna.load_study(study_name="lastframe-mmnist", storage=storage)
    assert all(t.user_attrs["model_spec"]["arch"] == "lastframe" for t in study.trials)
    assert all(t.params["width"] <= 8 for t in study.trials)  # smoke's width cap, sampled so

    assert main(["models", "--data", "mmnist", "--json"]) == 0
    rows = [r for r in json.loads(capsys.readouterr().out) if r["arch"] == "lastframe"]
    assert len(rows) == 2 and all(r["seed_params"] is None and r["params"] > 0 for r in rows)
    fixed = archs.fixed_spec("lastframe", "mmnist", "convlstm")
    assert (fixed.channels, dict(fixed.config)) == (1, {"width": 16, "kernel": 3})
    with pytest.raises(HpoError, match="no fixed configuration of lastframe for dataset 'kth'.*"
                                       "leave lastframe out with --archs"):
        plan_matrix(["kth"], trials=1)


def test_the_example_dataset_loads_batches_and_a_search_on_it_is_planned(
        extended: Path) -> None:
    runpy.run_path(str(extended / "datasets" / "clips" / "make_clips.py"))
    spec = datasets.default_spec("clips")
    assert datasets.info(spec)["splits"]["val"] == {"clips": 20, "frames per clip": 12}
    data = datasets.load(spec, "cpu")
    batch = data.train_batch(4, data.generator(0))
    assert batch.shape == (4, 10, 1, 32, 32) and 0 <= batch.min() < batch.max() <= 1
    assert data.size("val") == 20  # 20 clips of 12 frames: one window of 5 -> 5 each
    # moving squares: each frame lights 64 pixels, one square's worth
    assert torch.all((batch > 0.5).sum(dim=(-1, -2, -3)) == 64)
    plan = plan_study(StudySpec(arch="autoencoder", data="clips", budget="smoke"))
    assert (plan.data.height, plan.data.n_in) == (16, 2) and plan.model.channels == 1
    assert archs.check_spec(plan.model).depth == 2  # no fixed configuration: the defaults
    with pytest.raises(HpoError, match="no fixed configuration of autoencoder for dataset "
                                       "'clips'"):
        archs.fixed_spec("autoencoder", "clips", "convlstm")
    datasets.clear_cache()
