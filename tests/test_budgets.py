"""Budgets scale steps, epochs, evaluation sizes and (CPU levels) frames, sequences and widths."""

from __future__ import annotations

from dataclasses import replace

import pytest

from hpo_vidpred import archs, budgets
from hpo_vidpred import data as datasets
from hpo_vidpred.errors import HpoError
from hpo_vidpred.specs import TrainSpec


def _specs(data: str, arch: str = "autoencoder", cell: str = "convlstm"):
    data_spec = datasets.default_spec(data)
    return data_spec, archs.fixed_spec(arch, data, cell, channels=data_spec.channels), TrainSpec()


SEED_SCHEDULES = {  # slides, "Experimental setup"; TrainSpec's defaults are 20 x 500
    "mmnist": (1, 5000, ["train.epochs: 20 -> 1", "train.steps_per_epoch: 500 -> 5000"]),
    "kth": (20, 500, []),
    "kitti": (50, 500, ["train.epochs: 20 -> 50"]),
}


@pytest.mark.parametrize("data", SEED_SCHEDULES)
def test_seed_budget_is_the_seeds_schedule_and_changes_nothing_else(data) -> None:
    epochs, steps, changes = SEED_SCHEDULES[data]
    before = _specs(data)
    data_spec, model_spec, train = budgets.apply("seed", *before)
    assert (train.epochs, train.steps_per_epoch) == (epochs, steps)
    assert data_spec == before[0] and model_spec == before[1]
    assert budgets.describe("seed", *before)["changes"] == changes


@pytest.mark.parametrize("data,size,task", [("mmnist", (32, 32), (5, 5)),
                                            ("kth", (32, 40), (5, 5)),
                                            ("kitti", (32, 40), (5, 1))])
def test_small_budget_shrinks_frames_keeping_the_aspect_and_shortens_sequences(data, size,
                                                                               task) -> None:
    data_spec, _, train = budgets.apply("small", *_specs(data))
    assert (data_spec.height, data_spec.width) == size
    assert (data_spec.n_in, data_spec.n_out) == task
    assert data_spec.val_size == 64 and data_spec.test_size == 64
    assert (train.epochs, train.steps_per_epoch, train.batch_size) == (4, 150, 8)
    # one digit on Moving MNIST (the CPU learns it in minutes); other datasets keep their options
    assert dict(data_spec.options) == ({"digits": 1} if data == "mmnist" else {})


def test_small_budget_records_what_it_does_to_searched_configurations() -> None:
    data_spec, model_spec, train = _specs("mmnist")
    patched = replace(model_spec, config={**model_spec.config, "patch": 1})
    _, small, _ = budgets.apply("small", data_spec, patched, train)
    assert small.config["patch"] == 4  # the space-to-depth floor of the CPU demo
    _, seed, _ = budgets.apply("seed", data_spec, patched, train)
    assert seed.config["patch"] == 1
    _, fixed, _ = budgets.apply("small", data_spec, patched, train, fixed_model=True)
    assert fixed.config["patch"] == 1  # fixed configurations keep their own
    assert budgets.search_caps("small") == [
        "searched widths at most 32 channels per layer (the first width of a doubling stack "
        "bounded through its depth)", "searched space-to-depth patch at least 4",
        "searched batch sizes at most 16"]
    assert budgets.search_caps("seed") == []
    changes = budgets.describe("small", data_spec, model_spec, train)["changes"]
    assert "data.options.digits: <unset> -> 1" in changes


def test_smoke_budget_caps_batches_and_keeps_smaller_settings() -> None:
    data_spec, model_spec, train = _specs("mmnist")
    data_spec = replace(data_spec, n_in=1, val_size=4)
    out_data, _, out_train = budgets.apply("smoke", data_spec, model_spec,
                                           TrainSpec(batch_size=2, val_batch_size=64))
    assert (out_data.height, out_data.n_in, out_data.n_out, out_data.val_size) == (16, 1, 2, 4)
    assert (out_train.batch_size, out_train.val_batch_size) == (2, 8)


@pytest.mark.parametrize("arch", ["autoencoder", "prednet", "spatiotemporal"])
@pytest.mark.parametrize("budget", ["smoke", "small", "seed", "full"])
def test_fixed_configurations_keep_their_parameter_count(arch, budget) -> None:
    data_spec, model_spec, train = _specs("kitti", arch, "stlstm")
    _, budgeted, _ = budgets.apply(budget, data_spec, model_spec, train, fixed_model=True)
    assert budgeted == model_spec
    assert archs.count_params(archs.create_model(budgeted)) == \
        archs.count_params(archs.create_model(model_spec))


def test_search_space_widths_are_capped() -> None:
    data_spec, model_spec, train = _specs("mmnist", "spatiotemporal")
    wide = replace(model_spec, config={**model_spec.config, "hidden": 64})
    _, small, _ = budgets.apply("small", data_spec, wide, train)
    assert small.config["hidden"] == 32 and small.config["enc_channels"] == 32
    assert small.config["kernel"] == wide.config["kernel"]
    deep = replace(model_spec, arch="autoencoder", config={"depth": 3, "hidden": 60, "kernel": 3})
    _, capped, _ = budgets.apply("small", data_spec, deep, train)
    assert capped.config["hidden"] == 8  # layers 8, 16, 32: none wider than 32
    per_layer = replace(wide, config={"hidden": (4, 12, 40), "depth": 3})
    _, smoke, _ = budgets.apply("smoke", data_spec, per_layer, train)
    assert smoke.config["hidden"] == (4, 8, 8)
    assert archs.count_params(archs.create_model(small)) < \
        archs.count_params(archs.create_model(wide))


def test_describe_lists_every_change_for_the_record() -> None:
    record = budgets.describe("small", *_specs("kth"))
    assert record["budget"] == "small" and "minutes" in record["summary"]
    assert "data.height: 64 -> 32" in record["changes"]
    assert "data.width: 80 -> 40" in record["changes"]
    assert "data.n_out: 10 -> 5" in record["changes"]
    assert "model.config.hidden: 32 -> 16" in record["changes"]  # layers 16, 32
    assert "train.steps_per_epoch: 500 -> 150" in record["changes"]


def test_unknown_budget_lists_the_valid_ones() -> None:
    with pytest.raises(HpoError, match="unknown budget 'huge'; choose one of: smoke, small, "
                                       "medium, seed, full"):
        budgets.apply("huge", *_specs("mmnist"))


@pytest.mark.parametrize("arch", archs.ARCHS.names())
@pytest.mark.parametrize("budget", budgets.BUDGETS.names())
def test_every_sampled_value_is_the_trained_one(arch: str, budget: str) -> None:
    """The space a sampler sees is what trains: at every budget, for every shipped space, the
    values of many randomly sampled trials equal those of the specs the trials build (the budget
    changes nothing after sampling), and each range is filled, not collapsed to its bound."""
    import optuna

    from hpo_vidpred.study.plan import plan_study
    from hpo_vidpred.specs import StudySpec, to_dict

    plan = plan_study(StudySpec(arch=arch, data="mmnist", budget=budget))
    study = optuna.create_study(sampler=optuna.samplers.RandomSampler(seed=0))
    seen: dict[str, set] = {}
    for number in range(150):
        trial = study.ask()
        values = plan.sample_space.sample(trial)
        model, train = plan.trial_specs(values, number, device="cpu")
        trained = plan.space.trained_values(to_dict(model), to_dict(train))
        assert {k: trained.get(k) for k in trial.params} == trial.params, trial.params
        archs.check_spec(model)
        study.tell(trial, 0.0)
        for name, value in trial.params.items():
            seen.setdefault(name, set()).add(value)
    b = budgets.get(budget)
    assert set(seen) <= set(plan.sample_space.dimensions())
    if b.max_batch is not None and "batch_size" in seen:
        assert max(seen["batch_size"]) <= b.max_batch
    if b.min_patch is not None and arch == "autoencoder":
        assert "patch" not in seen and plan.sample_space.fixed["patch"] == b.min_patch
    if "hidden" in seen:
        assert len(seen["hidden"]) >= 2  # bounded through depth, still a range


def test_widths_are_what_each_architecture_declares(monkeypatch: pytest.MonkeyPatch) -> None:
    """A width key of any name is capped and narrowed once its architecture declares it."""
    from hpo_vidpred.search_space import Param, SearchSpace
    from hpo_vidpred.specs import ModelSpec

    assert budgets.WIDTHS.get("spatiotemporal") == {"enc_channels": "", "hidden": "depth"}
    monkeypatch.setattr(budgets.WIDTHS, "_items", dict(budgets.WIDTHS._items))
    budgets.WIDTHS.register("wide")({"channels": "layers", "stem": ""})
    data_spec, _, train = _specs("mmnist")
    model = ModelSpec(arch="wide", config={"channels": 64, "layers": 2, "stem": 40, "hidden": 99})
    _, small, _ = budgets.apply("small", data_spec, model, train)
    assert dict(small.config) == {"channels": 16, "layers": 2, "stem": 32, "hidden": 99}
    space = SearchSpace(arch="wide", params=(
        Param("layers", "int", low=1, high=3), Param("channels", "int", low=8, high=64),
        Param("stem", "int", low=8, high=64), Param("hidden", "int", low=8, high=64)))
    narrowed = {p.name: p for p in budgets.narrow("small", space).params}
    assert (narrowed["channels"].cap, narrowed["channels"].doubling) == (32, "layers")
    assert narrowed["stem"].high == 32 and narrowed["hidden"].high == 64  # not a width of "wide"
