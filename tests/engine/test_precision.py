"""train.amp / train.channels_last "auto": the CPU's native bf16 detected through torch's
queries (faked both ways here), the choice told in the log's first line and recorded."""

from __future__ import annotations

import json

import pytest
import torch

from medseg.engine import load_checkpoint, train
from medseg.engine import step as step_module
from medseg.engine.step import Precision, cpu_has_native_bf16, resolve_precision
from medseg.runs import RunFolder

CPU = torch.device("cpu")


def fake_cpu(monkeypatch, *, machine="x86_64", avx512_bf16=False, amx=False, onednn_bf16=False,
             onednn=True):
    """Make torch's capability queries answer as the described CPU would."""
    monkeypatch.setattr(step_module.platform, "machine", lambda: machine)
    monkeypatch.setattr(torch.cpu, "_is_avx512_bf16_supported", lambda: avx512_bf16)
    monkeypatch.setattr(torch.cpu, "_is_amx_tile_supported", lambda: amx)
    monkeypatch.setattr(torch.ops.mkldnn, "_is_mkldnn_bf16_supported", lambda: onednn_bf16)
    monkeypatch.setattr(torch.backends.mkldnn, "is_available", lambda: onednn)


@pytest.mark.parametrize(
    ("cpu", "native"),
    [
        ({"avx512_bf16": True, "onednn_bf16": True}, True),  # Zen 4, Cooper Lake
        ({"amx": True, "avx512_bf16": True, "onednn_bf16": True}, True),  # Sapphire Rapids
        ({"amx": True}, True),
        ({"onednn_bf16": True}, False),  # plain AVX512 (Skylake): oneDNN emulates bf16
        ({}, False),  # AVX2 (Zen 3)
        ({"avx512_bf16": True, "onednn": False}, False),  # a torch without oneDNN
        ({"machine": "aarch64", "onednn_bf16": True}, True),  # Arm with BF16 (Graviton 3)
        ({"machine": "arm64", "onednn_bf16": False}, False),
        ({"machine": "aarch64", "avx512_bf16": True}, False),  # only oneDNN's query counts there
    ],
)
def test_native_bf16_is_read_from_torchs_queries(monkeypatch, cpu, native):
    fake_cpu(monkeypatch, **cpu)
    assert cpu_has_native_bf16() is native


def test_auto_on_a_cpu_with_native_bf16_is_bf16_autocast_and_channels_last(monkeypatch):
    fake_cpu(monkeypatch, avx512_bf16=True)
    auto = resolve_precision("auto", CPU)
    assert (auto.autocast_dtype, auto.channels_last, auto.scales_loss) == (torch.bfloat16, True, False)
    assert auto.label == "bf16 autocast, channels_last"
    # an explicit setting wins over auto, on either side
    assert resolve_precision("off", CPU).label == "fp32"  # channels_last auto follows the bf16 choice
    assert resolve_precision("auto", CPU, "off").label == "bf16 autocast"
    assert resolve_precision("fp16", CPU).label == "fp16 autocast, loss scaling"


def test_auto_on_a_cpu_without_native_bf16_stays_fp32(monkeypatch):
    fake_cpu(monkeypatch, onednn_bf16=True)  # emulated bf16 only
    auto = resolve_precision("auto", CPU)
    assert (auto.autocast_dtype, auto.channels_last) == (None, False)
    assert auto.label == "fp32"
    assert resolve_precision("bf16", CPU).label == "bf16 autocast"  # asked for: no layout change
    assert resolve_precision("bf16", CPU, "on").label == "bf16 autocast, channels_last"


def test_auto_on_cuda_does_not_ask_the_cpu(monkeypatch):
    fake_cpu(monkeypatch)
    auto = resolve_precision("auto", torch.device("cuda", 0))
    assert auto.label == "bf16 autocast, channels_last"


def test_the_label_names_every_choice():
    assert Precision("cuda", torch.float16, True).label == "fp16 autocast, loss scaling, channels_last"
    assert Precision("cpu", None, True).label == "fp32, channels_last"


def test_an_auto_run_says_and_records_what_it_chose_and_resumes(monkeypatch, capsys, tiny_lgg, tmp_path,
                                                               lgg_config):
    fake_cpu(monkeypatch, avx512_bf16=True)
    autocast_dtypes = []
    original = Precision.autocast

    def spy(self):
        autocast_dtypes.append(self.autocast_dtype)
        return original(self)

    monkeypatch.setattr(Precision, "autocast", spy)
    run = RunFolder(tmp_path / "run")
    cfg = lgg_config(tiny_lgg, run.path, epochs=1, max_steps_per_epoch=1, amp="auto", channels_last="auto")
    train(cfg)
    first = capsys.readouterr().err.splitlines()[0]
    assert first == "precision: bf16 autocast, channels_last (train.amp auto, train.channels_last auto, cpu)"
    assert set(autocast_dtypes) == {torch.bfloat16}
    assert load_checkpoint(run.last_checkpoint)["training_precision"] == "bf16 autocast, channels_last"
    metrics = json.loads(run.metrics_file.read_text())
    assert metrics["training_precision"] == "bf16 autocast, channels_last"

    fake_cpu(monkeypatch)  # resumed on a CPU without bf16: auto chooses again, and says so
    result = train(lgg_config(tiny_lgg, run.path, epochs=2, max_steps_per_epoch=1, amp="auto",
                              channels_last="auto"), resume=True)
    # on resume the run folder's housekeeping (a removed metrics.json) may come first; the
    # precision is said once, before training resumes
    resumed_log = capsys.readouterr().err.splitlines()
    said = [number for number, line in enumerate(resumed_log) if line.startswith("precision: ")]
    resuming = next(number for number, line in enumerate(resumed_log) if line.startswith("resuming "))
    assert len(said) == 1 and said[0] < resuming, resumed_log[:3]
    assert resumed_log[said[0]].startswith("precision: fp32 (train.amp auto")
    assert result.best_epoch in (1, 2) and len(result.history) == 2
    assert load_checkpoint(run.last_checkpoint)["training_precision"] == "fp32"
