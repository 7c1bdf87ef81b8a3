"""Asynchronous promotion (study/promote.py), its records in a study (study/segments.py) and
`hpo run --scheduler promote` with real processes: configurations pause at rungs, the best are
resumed, one trial per configuration, and a killed worker loses only the segment it trained."""

from __future__ import annotations

import json
import math
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import optuna
import pytest
from optuna.trial import TrialState

from hpo_vidpred.study import segments
from hpo_vidpred.study.promote import DONE, PAUSED, TRAINING, Config, CurveStop, Promotion, Rungs
from hpo_vidpred.store import lifecycle, open_storage


def test_rungs_are_geometric_and_end_at_the_full_length() -> None:
    assert Rungs.geometric(1, 8, 3).levels == (1, 3, 8)
    assert Rungs.geometric(1, 8, 2).levels == (1, 2, 4, 8)
    assert Rungs.geometric(2, 16, 2).levels == (2, 4, 8, 16)
    assert Rungs.geometric(4, 4, 3).levels == (4,)
    assert Rungs.geometric(1, 8, 3).after(3) == 8 and Rungs.geometric(1, 8, 3).after(0) == 1
    with pytest.raises(ValueError):
        Rungs.geometric(3, 2, 3)


def _paused(key: int, *curve: float) -> Config:
    return Config(key, tuple(curve), PAUSED)


def test_the_best_third_of_a_rung_is_promoted_without_waiting_for_the_rung_to_fill() -> None:
    scheduler = Promotion(Rungs.geometric(1, 8, 3))
    two = [_paused(0, 0.5), _paused(1, 0.4)]
    assert scheduler.next(two).kind == "start"  # a third of two is none: a new configuration
    three = two + [_paused(2, 0.3)]
    step = scheduler.next(three)
    assert (step.kind, step.until, step.key) == ("resume", 3, 2)
    # once it trains, the next best is not in the top third: start another
    training = [two[0], two[1], Config(2, (0.3,), TRAINING, 3)]
    assert scheduler.next(training).kind == "start"
    # a higher rung goes first
    six = [_paused(i, 0.5 + i / 100) for i in range(3)] + [
        _paused(3, 0.2, 0.15, 0.1), Config(4, (0.3, 0.25, 0.2), DONE), _paused(5, 0.4, 0.3, 0.3)]
    step = scheduler.next(six)
    assert (step.kind, step.until, step.key) == ("resume", 8, 3)


def test_with_a_number_of_configurations_the_leader_is_finished_then_the_study_ends() -> None:
    scheduler = Promotion(Rungs.geometric(1, 8, 3), configurations=2)
    configs = [_paused(0, 0.5), _paused(1, 0.4)]
    assert scheduler.next(configs).kind == "resume" and scheduler.next(configs).key == 1
    assert scheduler.next(configs).until == 8  # the returned model is always fully trained
    assert scheduler.next([configs[0], Config(1, (0.4,), TRAINING, 8)]).kind == "wait"
    done = [configs[0], Config(1, (0.4,) * 8, DONE)]
    assert scheduler.next(done).kind == "finish"
    assert scheduler.leader(done).key == 1


def test_the_curve_rule_stops_what_cannot_win_and_nothing_it_cannot_judge() -> None:
    stop = CurveStop()
    flat = [0.30, 0.25, 0.24, 0.238]
    assert stop.hopeless(flat, 8, best_final=0.10)
    assert not stop.hopeless(flat, 8, best_final=0.24)
    assert not stop.hopeless(flat[:2], 8, best_final=0.10)  # too few points to say
    assert not stop.hopeless(flat, 8, best_final=math.inf)  # nothing reached the end yet
    steep = [1.0, 0.5, 0.33, 0.25]  # 1 / t: heading for 0.125 at epoch 8
    assert stop.optimistic(steep, 8) < 0.13 and not stop.hopeless(steep, 8, best_final=0.15)
    scheduler = Promotion(Rungs.geometric(1, 8, 3), stop=stop)
    others = [Config(9, (0.15,) * 8, DONE)]
    assert not scheduler.keep_going(Config(1, tuple(flat), TRAINING, 8), others)
    # a hopeless configuration in the top third is not promoted
    rung = [_paused(0, 0.9, 0.85, 0.84), _paused(1, 0.95, 0.9, 0.9), _paused(2, 1, 1, 1)]
    assert scheduler.next(rung + others).kind == "start"


def test_one_trial_per_configuration_through_pause_resume_and_the_end(tmp_path: Path) -> None:
    """The records in the study: RUNNING while training or paused (status, rung, epochs of
    the paused run), the curve as intermediate values, COMPLETE at the last rung, PRUNED for
    configurations paused when the study ends."""
    study = optuna.create_study(storage=f"sqlite:///{tmp_path}/s.db",
                                sampler=optuna.samplers.RandomSampler(seed=0))
    scheduler = Promotion(Rungs.geometric(1, 3, 3), configurations=3)

    def sample(trial: optuna.Trial) -> None:
        trial.suggest_float("x", 0, 1)

    values = {0: [0.5, 0.4, 0.3], 1: [0.6, 0.5, 0.4], 2: [0.2, 0.1, 0.05]}
    while True:
        got = segments.begin(study, scheduler, sample)
        if isinstance(got, segments.Segment):
            for epoch in range(got.start + 1, got.until + 1):
                how = segments.report(study, scheduler, got, epoch, values[got.number][epoch - 1])
            segments.end(study, scheduler, got, "stopped" if how == "stop" else "paused")
            trial = study.trials[got.number]
            if trial.state == TrialState.RUNNING:
                assert trial.system_attrs[lifecycle.STATUS] == PAUSED
                assert trial.system_attrs[lifecycle.EPOCHS] == got.until
        elif got.kind == "finish":
            assert segments.finish(study) == [0, 1]
            break
    states = {t.number: t.state for t in study.trials}
    assert states == {0: TrialState.PRUNED, 1: TrialState.PRUNED, 2: TrialState.COMPLETE}
    assert study.best_trial.number == 2 and study.best_value == 0.05
    assert len(study.trials[2].intermediate_values) == 3
    assert [len(study.trials[n].intermediate_values) for n in (0, 1)] == [1, 1]


def test_a_stale_resumed_segment_goes_back_to_its_rung_and_a_first_one_is_retried(
        tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path}/s.db"
    storage = open_storage(url, heartbeat_interval=1, grace_period=1)
    study = optuna.create_study(study_name="s", storage=storage)
    scheduler = Promotion(Rungs.geometric(1, 3, 3))
    first = segments.begin(study, scheduler, lambda t: t.suggest_float("x", 0, 1),
                           ask=lifecycle.ask)
    segments.report(study, scheduler, first, 1, 0.5)
    segments.end(study, scheduler, first, "paused")
    resumed = segments.begin(study, Promotion(Rungs.geometric(1, 3, 3), configurations=1),
                             lambda t: None, ask=lifecycle.ask, beat=lifecycle.beat)
    assert resumed.number == first.number and resumed.start == 1
    segments.report(study, scheduler, resumed, 2, 0.45)  # then its worker dies
    new = segments.begin(study, scheduler, lambda t: t.suggest_float("x", 0, 1),
                         ask=lifecycle.ask)  # and so does this one's, in its first segment
    time.sleep(3)
    lifecycle.fail_stale(study, orphan_age_s=60)
    trials = study.get_trials()
    assert trials[first.number].state == TrialState.RUNNING  # paused again, at its rung
    assert trials[first.number].system_attrs[lifecycle.STATUS] == PAUSED
    assert segments.config_of(trials[first.number]).curve == (0.5,)
    assert trials[new.number].state == TrialState.FAIL
    assert [t.state for t in trials[new.number + 1:]] == [TrialState.WAITING]  # its retry


RUN = [sys.executable, "-m", "hpo_vidpred.cli", "run", "--arch", "autoencoder", "--data",
       "mmnist", "--budget", "smoke", "--scheduler", "promote", "--epochs", "24", "--workers",
       "1", "--heartbeat", "1", "--quiet", "--study", "p", "--pruner", "none"]


@pytest.mark.slow
def test_hpo_run_promotes_and_a_killed_worker_loses_only_its_segment(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path}/s.db"
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    proc = subprocess.Popen([*RUN, "--trials", "8", "--storage", url], env=env, cwd=tmp_path,
                            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    victim, storage = None, None
    deadline = time.time() + 240
    while victim is None and time.time() < deadline and proc.poll() is None:
        time.sleep(0.2)  # a segment past the second rung trains for several epochs
        try:  # one storage for all the looks (opening one checks the schema)
            storage = storage or optuna.storages.RDBStorage(url)
            trials = optuna.load_study(study_name="p", storage=storage).get_trials(deepcopy=False)
        except Exception:  # noqa: BLE001 (not created yet)
            continue
        victim = next((t.number for t in trials if t.state == TrialState.RUNNING
                       and t.system_attrs.get(lifecycle.STATUS) == TRAINING
                       and t.system_attrs.get(lifecycle.EPOCHS, 0) >= 3), None)
    assert victim is not None, proc.stderr.read().decode()[-2000:]
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    killed = optuna.load_study(study_name="p", storage=url).trials[victim]
    paused_at = killed.system_attrs[lifecycle.EPOCHS]
    assert (tmp_path / "artifacts" / "paused" / "p" / f"trial-{victim}.pt").is_file()
    time.sleep(2.5)  # past its heartbeat's grace
    before = sum(t.state.is_finished() for t in optuna.load_study(study_name="p",
                                                                   storage=url).trials)
    done = subprocess.run([*RUN, "--trials", "8", "--storage", url, "--json"], env=env,
                          cwd=tmp_path, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-2000:]
    # every configuration this run ended counts, those its end stopped at a rung too
    assert json.loads(done.stdout)["ran_this_run"] == 8 - before
    trials = optuna.load_study(study_name="p", storage=url).trials
    assert len(trials) == 8 and all(t.state.is_finished() for t in trials)  # one per config
    assert trials[victim].state != TrialState.FAIL  # resumed from its rung, not retried
    assert not any(t.system_attrs.get("retry_history") for t in trials)
    assert len(trials[victim].intermediate_values) >= paused_at
    complete = [t for t in trials if t.state == TrialState.COMPLETE]
    assert complete and all(len(t.intermediate_values) == 24 for t in complete)
    for t in trials:  # every configuration stopped at a rung (or was stopped by a rule)
        assert t.state != TrialState.PRUNED or len(t.intermediate_values) in (1, 3, 9) or \
            t.user_attrs.get("stop_reason") in ("no better than a trivial predictor",
                                                "pruned")
    assert not list((tmp_path / "artifacts" / "paused" / "p").glob("*.pt"))  # cleaned up


def test_a_promotion_study_keeps_the_rungs_it_recorded(monkeypatch) -> None:  # noqa: ANN001
    from hpo_vidpred.specs import StudySpec
    from hpo_vidpred.study import strategy
    from hpo_vidpred.study.plan import plan_study
    from hpo_vidpred.study.rung_tpe import RungTPESampler

    plan = plan_study(StudySpec(arch="autoencoder", data="mmnist", budget="smoke",
                                scheduler="promote"))
    recorded = plan.record_attrs()
    assert recorded["rungs"] == {"levels": [1, 3, 4], "eta": 3}
    monkeypatch.setattr(strategy, "ETA", 4)  # a later default
    assert strategy.make_scheduler(plan).rungs.levels == (1, 4)  # a new study takes it
    again = plan.as_recorded({**recorded, "spec": {}})  # the study that recorded eta 3
    assert strategy.make_scheduler(again).rungs.to_dict() == recorded["rungs"]
    sampler = strategy.make_sampler(again, 0)  # TPE models the recorded rungs too
    assert isinstance(sampler, RungTPESampler) and sampler._rungs.levels == (1, 3, 4)
    assert not sampler._tpe._multivariate and sampler._tpe._constant_liar
    assert strategy.make_scheduler(again, eta=2).rungs.levels == (1, 2, 4)  # asked for


def test_a_study_keeps_the_scheduler_it_started_with(tmp_path: Path, monkeypatch,
                                                     capsys) -> None:
    """--scheduler auto resolves once, when the study is created; a rerun of the same command
    continues it so even after the default changed. Promotion with several objectives is one
    line."""
    from hpo_vidpred.cli import main
    from hpo_vidpred.study import strategy as samplers

    url = f"sqlite:///{tmp_path}/s.db"
    run = ["run", "--arch", "autoencoder", "--data", "mmnist", "--budget", "smoke", "--workers",
           "1", "--quiet", "--storage", url, "--pruner", "none"]
    monkeypatch.setattr(samplers, "DEFAULT_SCHEDULER", "fifo")
    assert main([*run, "--trials", "2"]) == 0
    monkeypatch.setattr(samplers, "DEFAULT_SCHEDULER", "promote")
    assert main([*run, "--trials", "3"]) == 0
    study = optuna.load_study(study_name="autoencoder-mmnist", storage=url)
    assert study.user_attrs["scheduler"] == "fifo" and "rungs" not in study.user_attrs
    assert len(study.trials) == 3
    assert not any(lifecycle.STATUS in t.system_attrs for t in study.trials)
    assert all(len(t.intermediate_values) == 2 for t in study.trials)  # smoke's 2 epochs
    assert main([*run, "--trials", "2", "--study", "new"]) == 0
    new = optuna.load_study(study_name="new", storage=url)
    assert new.user_attrs["scheduler"] == "promote"
    assert new.user_attrs["rungs"] == {"levels": [1, 3, 4], "eta": 3}
    capsys.readouterr()
    assert main([*run, "--trials", "2", "--study", "mo", "--scheduler", "promote",
                 "--objectives", "val_mse,params"]) == 2
    assert "with several --objectives use --scheduler fifo" in capsys.readouterr().err
