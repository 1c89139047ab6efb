"""Planning a comparison: methods, seeds, per-method settings, the shared LGG split, the CLI."""

from __future__ import annotations

import json
import time
import tracemalloc

import pytest

from medseg.cli.main import main
from medseg.compare.execution import MAX_GPUS, check_gpus, prepare_split
from medseg.compare.planning import (
    MAX_SEEDS,
    METHOD_NAMES,
    check_method_overrides,
    check_methods,
    check_seeds,
    plan_runs,
    run_state,
)
from medseg.compare.spec import write_record
from medseg.config import MAX_SEED, config_from_dict
from medseg.errors import ConfigError, MedsegError
from tests.support import write_lgg

from .conftest import tiny_config


def _flatten(d, prefix=""):
    out = {}
    for key, value in d.items():
        if isinstance(value, dict):
            out.update(_flatten(value, f"{prefix}{key}."))
        else:
            out[f"{prefix}{key}"] = value
    return out


def test_runs_differ_only_in_seed_method_and_folder(tmp_path):
    cfg = config_from_dict(tiny_config(tmp_path))
    specs = plan_runs(cfg, ["adam", "adamw"], [0, 3], tmp_path / "out", None,
                      {"adamw": ["optim.weight_decay=0.01"]})
    assert [(s.method, s.seed) for s in specs] == [(m, k) for k in (0, 3) for m in ("adam", "adamw")]
    assert specs[3].run_dir == tmp_path / "out/runs/adamw/seed3"
    base = _flatten(cfg.to_dict())
    allowed = {"seed", "optim.name", "optim.weight_decay", "output.dir", "output.run_name"}
    for spec in specs:
        flat = _flatten(spec.cfg.to_dict())
        assert {k for k in flat if flat[k] != base[k]} <= allowed
        assert spec.cfg.optim.name == spec.method and spec.cfg.seed == spec.seed
        assert spec.cfg.optim.weight_decay == (0.01 if spec.method == "adamw" else 0.0)


def test_method_and_seed_lists_are_checked():
    assert check_methods(["adam", " adam+znorm "]) == ["adam", "adam+znorm"]
    with pytest.raises(ConfigError, match=r"unknown optimizer 'lion'; choose from .*adam\+znorm"):
        check_methods(["adam", "lion"])
    with pytest.raises(ConfigError, match="'adam' is listed twice"):
        check_methods(["adam", "adam"])
    with pytest.raises(ConfigError, match="at least one"):
        check_methods([""])
    assert check_seeds([2, 0]) == [2, 0]
    with pytest.raises(ConfigError, match="seed 1 is listed twice"):
        check_seeds([1, 1])
    with pytest.raises(ConfigError, match="seed must be >= 0, got -1"):
        check_seeds([-1])


def test_per_method_settings_stay_inside_optim(tmp_path):
    methods = ["adam", "adamw"]
    with pytest.raises(ConfigError, match=r"only optim\.\* settings"):
        check_method_overrides({"adamw": ["train.epochs=5"]}, methods)
    with pytest.raises(ConfigError, match=r"only optim\.\* settings"):
        check_method_overrides({"adamw": ["optim.name=sgd"]}, methods)
    with pytest.raises(ConfigError, match="'sgd' is not one of --methods"):
        check_method_overrides({"sgd": ["optim.lr=0.1"]}, methods)
    cfg = config_from_dict(tiny_config(tmp_path))
    with pytest.raises(ConfigError, match=r"--method-set adamw: .*optim\.weight_decay: expected a number"):
        plan_runs(cfg, methods, [0], tmp_path, None, {"adamw": ["optim.weight_decay=lots"]})


def test_lgg_split_is_written_once_and_shared_by_every_run(tmp_path):
    patients = [f"TCGA_CS_{4940 + i}_19960909" for i in range(10)]
    write_lgg(tmp_path / "lgg", dict.fromkeys(patients, 2), size=8, healthy=patients)
    raw = tiny_config(tmp_path)
    raw["data"] = {"format": "lgg", "root": str(tmp_path / "lgg"), "val_fraction": 0.2,
                   "test_fraction": 0.2}
    raw["model"] = {"arch": "unet", "encoder": "resnet18"}
    cfg = config_from_dict(raw)
    out = tmp_path / "out"
    out.mkdir()
    split_file = prepare_split(cfg, out)
    assert split_file == str(out / "split.json")
    split = json.loads((out / "split.json").read_text())
    assert split["seed"] == 0
    assert sorted(split["train"] + split["val"] + split["test"]) == patients
    assert len(split["val"]) == len(split["test"]) == 2
    mtime = (out / "split.json").stat().st_mtime_ns
    assert prepare_split(cfg, out) == split_file  # a rerun reuses it
    assert (out / "split.json").stat().st_mtime_ns == mtime
    specs = plan_runs(cfg, ["adam", "adam+znorm"], [0, 1, 2], out, split_file)
    assert {spec.cfg.data.split_file for spec in specs} == {split_file}
    given = config_from_dict({**raw, "data": {**raw["data"], "split_file": "mine.json"}})
    assert prepare_split(given, tmp_path / "other") == "mine.json"


def test_pcam_needs_no_split_file(tmp_path):
    cfg = config_from_dict(tiny_config(tmp_path))
    assert prepare_split(cfg, tmp_path) is None
    assert not (tmp_path / "split.json").exists()


@pytest.mark.parametrize(
    ("extra", "message"),
    [
        (["--methods", "adam,lion"], "unknown optimizer 'lion'"),
        (["--seed-list", "0,x"], "--seed-list '0,x': expected comma-separated integers"),
        (["--seeds", "0"], "--seeds 0: expected a number of seeds >= 1"),
        (["--method-set", "adamw"], "--method-set 'adamw': expected METHOD:KEY=VALUE"),
        (["--gpus", "first"], "--gpus 'first': expected auto, none or device indices"),
        (["--set", "train.epochs=0"], "train.epochs must be >= 1"),
    ],
)
def test_cli_rejects_bad_options_with_one_line(tiny_config_file, tmp_path, capsys, extra, message):
    code = main(["compare", str(tiny_config_file), "--out", str(tmp_path / "out"), *extra])
    err = capsys.readouterr().err
    assert code == 2
    assert err.startswith("medseg: error: ") and message in err and "Traceback" not in err
    assert not (tmp_path / "out" / "runs").exists()  # nothing was trained


def test_adam_bgn_is_adam_on_the_model_with_bgn_nodes_for_that_method_only(tmp_path):
    cfg = config_from_dict(tiny_config(tmp_path))
    assert "adam+bgn" in METHOD_NAMES and check_methods(["adam+bgn"]) == ["adam+bgn"]
    specs = plan_runs(cfg, ["adam", "adam+bgn", "adam+znorm"], [0, 1], tmp_path / "out", None,
                      {"adam+bgn": ["optim.lr=0.01"]})
    base = _flatten(cfg.to_dict())
    for spec in specs:
        flat = _flatten(spec.cfg.to_dict())
        changed = {k for k in flat if flat[k] != base[k]} - {"seed", "output.dir", "output.run_name"}
        if spec.method == "adam+bgn":
            assert spec.cfg.optim.name == "adam" and spec.cfg.model.bgn is True
            assert changed == {"model.bgn", "optim.lr"}
            assert spec.run_dir == tmp_path / "out" / "runs" / "adam+bgn" / f"seed{spec.seed}"
        else:
            assert spec.cfg.optim.name == spec.method and spec.cfg.model.bgn is False
            assert changed <= {"optim.name"}


def test_a_method_that_cannot_run_with_the_shared_settings_is_named_as_a_method(tmp_path):
    raw = tiny_config(tmp_path)
    raw["train"]["amp"] = "fp16"
    cfg = config_from_dict(raw)
    with pytest.raises(ConfigError, match=r"^method adam\+bgn: model\.bgn does not work with train\.amp fp16"):
        plan_runs(cfg, ["adam", "adam+bgn"], [0], tmp_path / "out", None)
    with pytest.raises(ConfigError, match=r"^--method-set adam\+bgn: model\.bgn does not work"):
        plan_runs(cfg, ["adam", "adam+bgn"], [0], tmp_path / "out", None, {"adam+bgn": ["optim.lr=0.01"]})


def test_a_record_written_before_new_settings_existed_still_matches(tmp_path):
    cfg = config_from_dict(tiny_config(tmp_path))
    (spec,) = plan_runs(cfg, ["adam"], [0], tmp_path / "out", None)
    write_record(spec, resumed=False)
    record = json.loads(spec.folder.compare_record.read_text())
    del record["config"]["model"]["bgn"], record["config"]["optim"]["clip_factor"]
    spec.folder.compare_record.write_text(json.dumps(record))
    assert run_state(spec) == "new"  # the missing keys are at their defaults: same config
    record["config"]["optim"]["lr"] = 0.5
    spec.folder.compare_record.write_text(json.dumps(record))
    with pytest.raises(MedsegError, match=r"different config \(optim.lr: 0.5 != 0.001\)"):
        run_state(spec)


def test_seed_counts_and_values_are_bounded_before_anything_is_allocated():
    tracemalloc.start()
    try:
        with pytest.raises(ConfigError) as err:
            check_seeds(range(10**8))
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert str(err.value) == f"--seeds: 100000000 seeds; a comparison runs at most {MAX_SEEDS}"
    assert peak < 2**20  # counted, never listed
    assert check_seeds(range(MAX_SEEDS)) == list(range(MAX_SEEDS))
    with pytest.raises(ConfigError, match=f"^--seeds: {MAX_SEEDS + 1} seeds; a comparison runs at most"):
        check_seeds(range(MAX_SEEDS + 1))
    assert check_seeds([MAX_SEED, 0]) == [MAX_SEED, 0]
    with pytest.raises(ConfigError) as err:
        check_seeds([0, MAX_SEED + 1])
    assert str(err.value) == f"--seed-list: a seed must be <= {MAX_SEED}, got {MAX_SEED + 1}"
    for bad in (1.5, "3", True):
        with pytest.raises(ConfigError, match=f"^--seed-list: seed {bad!r} is not a whole number$"):
            check_seeds([bad])


def test_a_long_method_list_is_refused_at_its_first_repeat_without_quadratic_work():
    start = time.perf_counter()
    with pytest.raises(ConfigError, match=r"^--methods: 'adam' is listed twice$"):
        check_methods(["adam"] * 50_000)
    assert time.perf_counter() - start < 0.5


def test_every_run_config_is_validated_as_a_config_file_is(tmp_path):
    cfg = config_from_dict(tiny_config(tmp_path))
    with pytest.raises(ConfigError) as err:
        plan_runs(cfg, ["adam"], [MAX_SEED + 1], tmp_path / "out", None)
    assert str(err.value) == f"adam seed {MAX_SEED + 1}: seed must be <= {MAX_SEED}, got {MAX_SEED + 1}"


def test_gpu_indices_are_bounded_and_given_once():
    assert check_gpus([1, 0]) == [1, 0] and check_gpus([]) == []
    with pytest.raises(ConfigError, match=f"^--gpus: device {MAX_GPUS} is not an index from 0 to {MAX_GPUS - 1}$"):
        check_gpus([0, MAX_GPUS])
    with pytest.raises(ConfigError, match=r"^--gpus: device -1 is not an index"):
        check_gpus([-1])
    with pytest.raises(ConfigError, match=r"^--gpus: device 1 is listed twice$"):
        check_gpus([1, 1])


@pytest.mark.parametrize(
    ("extra", "message"),
    [
        (["--seeds", "100000000", "--plan"], f"--seeds: 100000000 seeds; a comparison runs at most {MAX_SEEDS}"),
        (["--seeds", str(MAX_SEEDS + 1), "--collect"], f"--seeds: {MAX_SEEDS + 1} seeds"),
        (["--seed-list", f"0,{MAX_SEED + 1}", "--plan"], f"--seed-list: a seed must be <= {MAX_SEED}"),
        (["--seed-list", "0,2,0", "--plan"], "--seed-list: seed 0 is listed twice"),
        (["--methods", ",".join(["adam"] * 1000), "--plan"], "--methods: 'adam' is listed twice"),
        (["--gpus", "0,100000"], f"--gpus: device 100000 is not an index from 0 to {MAX_GPUS - 1}"),
        (["--gpus", "0,-1"], "--gpus: device -1 is not an index"),
        (["--gpus", "1,1"], "--gpus: device 1 is listed twice"),
    ],
    ids=["seeds-1e8-plan", "seeds-collect", "seed-value", "seed-twice", "methods-twice", "gpu-index",
         "gpu-negative", "gpu-twice"],
)
def test_cli_bounds_every_count_and_value_before_creating_anything(tiny_config_file, tmp_path, capsys,
                                                                   extra, message):
    out = tmp_path / "out"
    assert main(["compare", str(tiny_config_file), "--methods", "adam,adam+znorm", "--out", str(out),
                 *extra]) == 2
    err = capsys.readouterr().err
    assert err.startswith(f"medseg: error: {message}") and err.count("\n") == 1
    assert not out.exists()
