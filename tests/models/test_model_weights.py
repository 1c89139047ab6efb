"""encoder_weights: local files (smp encoder or torchvision state_dicts), the ImageNet cache, errors."""

from __future__ import annotations

import re

import pytest
import segmentation_models_pytorch as smp
import torch
import torchvision
from safetensors.torch import save_file

from medseg.config import ModelConfig
from medseg.errors import MedsegError
from medseg.models import build_model


def _unet(weights: str | None, **changes) -> torch.nn.Module:
    cfg = ModelConfig(arch="unet", encoder="resnet18", encoder_weights=weights, **changes)
    return build_model(cfg, "segmentation")


def _classifier(weights: str | None) -> torch.nn.Module:
    cfg = ModelConfig(arch="resnet", encoder="resnet18", encoder_weights=weights)
    return build_model(cfg, "classification")


def _assert_same_encoder(model_state: dict, saved: dict, prefix: str = "") -> None:
    for key, value in saved.items():
        if not key.startswith("fc."):
            assert torch.equal(model_state[prefix + key], value), key


def test_unet_loads_a_saved_smp_encoder(tmp_path) -> None:
    saved = smp.encoders.get_encoder("resnet18", weights=None).state_dict()
    path = tmp_path / "encoder.pt"
    torch.save(saved, path)
    model = _unet(str(path))
    _assert_same_encoder(model.state_dict(), saved, prefix="encoder.")
    assert not torch.equal(model.encoder.conv1.weight, _unet(None).encoder.conv1.weight)


def test_torchvision_resnet_weights_fill_unet_and_classifier(tmp_path) -> None:
    saved = torchvision.models.resnet18(weights=None).state_dict()  # includes a 1000-way fc
    path = tmp_path / "resnet18.pt"
    torch.save(saved, path)
    _assert_same_encoder(_unet(str(path)).state_dict(), saved, prefix="encoder.")
    classifier = _classifier(str(path))
    _assert_same_encoder(classifier.state_dict(), saved)
    assert classifier.fc.weight.shape == (1, 512)  # the head stays new


def test_one_channel_unet_sums_the_pretrained_first_conv(tmp_path) -> None:
    saved = torchvision.models.resnet18(weights=None).state_dict()
    path = tmp_path / "resnet18.pt"
    torch.save(saved, path)
    model = _unet(str(path), in_channels=1)
    expected = saved["conv1.weight"].sum(dim=1, keepdim=True)
    assert torch.allclose(model.encoder.conv1.weight, expected)


def test_missing_file_is_named(tmp_path) -> None:
    path = tmp_path / "absent.pt"
    with pytest.raises(MedsegError, match=re.escape(f"{path}: file not found")):
        _unet(str(path))


def test_missing_key_is_named(tmp_path) -> None:
    saved = torchvision.models.resnet18(weights=None).state_dict()
    del saved["layer3.1.conv2.weight"]
    path = tmp_path / "partial.pt"
    torch.save(saved, path)
    expected = f"{path}: not resnet18 weights: 1 keys missing, first 'layer3.1.conv2.weight'"
    with pytest.raises(MedsegError, match=re.escape(expected)):
        _classifier(str(path))


def test_weights_of_another_encoder_are_refused(tmp_path) -> None:
    path = tmp_path / "resnet34.pt"
    torch.save(torchvision.models.resnet34(weights=None).state_dict(), path)
    expected = f"{path}: not resnet18 weights: unexpected key 'layer1.2.conv1.weight'"
    with pytest.raises(MedsegError, match=re.escape(expected)):
        _unet(str(path))


def test_wrong_shape_is_named(tmp_path) -> None:
    saved = torchvision.models.resnet18(weights=None).state_dict()
    saved["conv1.weight"] = torch.zeros(64, 1, 7, 7)
    path = tmp_path / "gray.pt"
    torch.save(saved, path)
    expected = f"{path}: not resnet18 weights: 'conv1.weight' has shape (64, 1, 7, 7), expected (64, 3, 7, 7)"
    with pytest.raises(MedsegError, match=re.escape(expected)):
        _unet(str(path))


def test_a_file_that_is_not_torch_save_is_refused(tmp_path) -> None:
    path = tmp_path / "notes.pt"
    path.write_text("these are not weights")
    with pytest.raises(MedsegError, match=re.escape(f"{path}: not a weights file saved with torch.save")):
        _unet(str(path))


def test_a_torch_file_without_tensors_is_refused(tmp_path) -> None:
    path = tmp_path / "meta.pt"
    torch.save({"epoch": 3}, path)
    with pytest.raises(MedsegError, match=re.escape(f"{path}: expected a state_dict (names -> tensors)")):
        _unet(str(path))


def test_imagenet_without_a_cached_copy_fails_at_once(tmp_path, monkeypatch) -> None:
    monkeypatch.setenv("HF_HOME", str(tmp_path))
    monkeypatch.delenv("HF_HUB_CACHE", raising=False)
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")  # belt and braces: no network even on a bug
    with pytest.raises(MedsegError, match=r"'imagenet' weights for resnet18 are not in the local cache.*pass a local weights file"):
        _unet("imagenet")


def test_imagenet_from_the_local_cache(tmp_path, monkeypatch) -> None:
    settings = smp.encoders.encoders["resnet18"]["pretrained_settings"]["imagenet"]
    repo_folder = "models--" + settings["repo_id"].replace("/", "--")
    snapshot = tmp_path / "hub" / repo_folder / "snapshots" / settings["revision"]
    snapshot.mkdir(parents=True)
    saved = smp.encoders.get_encoder("resnet18", weights=None).state_dict()
    save_file(saved, str(snapshot / "model.safetensors"))
    monkeypatch.setenv("HF_HOME", str(tmp_path))
    monkeypatch.delenv("HF_HUB_CACHE", raising=False)
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    _assert_same_encoder(_unet("imagenet").state_dict(), saved, prefix="encoder.")
    _assert_same_encoder(_classifier("imagenet").state_dict(), saved)
