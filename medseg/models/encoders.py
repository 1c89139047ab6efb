"""ResNet encoder names and their weights: none, a local file, or a locally cached ImageNet copy.

Nothing here downloads. ``"imagenet"`` resolves smp's hub copy (``smp-hub/<encoder>.imagenet``)
in the local Hugging Face cache only, so an offline machine fails at once with a message
instead of retrying the hub for ~23 s.

Example:
    >>> encoder = torchvision.models.resnet18(weights=None)
    >>> load_encoder_weights(encoder, "resnet18", "weights/resnet18.pt", skip_prefixes=("fc.",))
"""

from __future__ import annotations

import os
from pathlib import Path

import torch
from torch import nn

from medseg.errors import MedsegError

ENCODER_NAMES: tuple[str, ...] = ("resnet18", "resnet34", "resnet50")


def check_encoder_name(name: str) -> None:
    """Raise :class:`MedsegError` unless ``name`` is one of :data:`ENCODER_NAMES`."""
    if name not in ENCODER_NAMES:
        raise MedsegError(
            f"model.encoder: {name!r} is not supported; choose one of {', '.join(ENCODER_NAMES)}"
        )


def _hub_cache_dir() -> Path:
    """The Hugging Face hub cache, read from the environment at call time."""
    from huggingface_hub import constants

    if os.environ.get("HF_HUB_CACHE"):
        return Path(os.environ["HF_HUB_CACHE"])
    if os.environ.get("HF_HOME"):
        return Path(os.environ["HF_HOME"]) / "hub"
    return Path(constants.HF_HUB_CACHE)


def cached_imagenet_file(encoder: str) -> Path:
    """Path of smp's ImageNet weights for ``encoder`` in the local Hugging Face cache.

    Raises:
        MedsegError: when no cached copy exists (nothing is downloaded).
    """
    from huggingface_hub import try_to_load_from_cache
    from segmentation_models_pytorch.encoders import encoders as smp_encoders

    settings = smp_encoders[encoder]["pretrained_settings"]["imagenet"]
    cache_dir = _hub_cache_dir()
    found = try_to_load_from_cache(
        settings["repo_id"], "model.safetensors", cache_dir=cache_dir, revision=settings["revision"]
    )
    if not isinstance(found, str):
        raise MedsegError(
            f"model.encoder_weights: 'imagenet' weights for {encoder} are not in the local cache "
            f"{cache_dir} (repo {settings['repo_id']}) and medseg never downloads; pass a local "
            f"weights file (torch.save of a {encoder} state_dict) or null for random init"
        )
    return Path(found)


def read_state_dict(path: Path) -> dict[str, torch.Tensor]:
    """Read a tensor state_dict from a ``.safetensors`` file or a ``torch.save`` file.

    Raises:
        MedsegError: when the file is missing or is not a mapping of names to tensors.
    """
    if not path.is_file():
        raise MedsegError(f"model.encoder_weights: {path}: file not found")
    try:
        if path.suffix == ".safetensors":
            from safetensors.torch import load_file

            state = load_file(str(path), device="cpu")
        else:
            state = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as err:
        reason = str(err).splitlines()[0] if str(err) else type(err).__name__
        raise MedsegError(
            f"model.encoder_weights: {path}: not a weights file saved with torch.save ({reason})"
        ) from None
    if not isinstance(state, dict) or not all(
        isinstance(key, str) and isinstance(value, torch.Tensor) for key, value in state.items()
    ):
        raise MedsegError(
            f"model.encoder_weights: {path}: expected a state_dict (names -> tensors), "
            f"got {type(state).__name__}"
        )
    return state


def load_encoder_weights(
    module: nn.Module,
    encoder: str,
    weights: str | None,
    *,
    skip_prefixes: tuple[str, ...] = ("fc.",),
) -> bool:
    """Load encoder weights into ``module`` in place; return whether any were loaded.

    Every key of ``module`` outside ``skip_prefixes`` must be in the file with the same shape;
    keys of the file under ``skip_prefixes`` (a torchvision classifier head) are ignored, any
    other extra key is an error. A torchvision ResNet state_dict and an smp ResNet encoder
    state_dict are therefore interchangeable.

    Args:
        module: a torchvision ResNet or an smp ``ResNetEncoder`` (same parameter names).
        encoder: the encoder name, for ``"imagenet"`` and messages.
        weights: None (keep the random init), ``"imagenet"`` (local cache only) or a file path.
        skip_prefixes: parameter-name prefixes that are not part of the encoder.

    Raises:
        MedsegError: naming the file and the first missing, unexpected or mis-shaped key.
    """
    if weights is None:
        return False
    path = cached_imagenet_file(encoder) if weights == "imagenet" else Path(weights)
    state = read_state_dict(path)
    expected = {
        key: value
        for key, value in module.state_dict().items()
        if not key.startswith(skip_prefixes)
    }
    provided = {key: value for key, value in state.items() if not key.startswith(skip_prefixes)}
    missing = [key for key in expected if key not in provided]
    if missing:
        raise MedsegError(
            f"model.encoder_weights: {path}: not {encoder} weights: {len(missing)} keys missing, "
            f"first {missing[0]!r}"
        )
    unexpected = [key for key in provided if key not in expected]
    if unexpected:
        raise MedsegError(
            f"model.encoder_weights: {path}: not {encoder} weights: unexpected key "
            f"{unexpected[0]!r}"
        )
    for key, value in expected.items():
        if provided[key].shape != value.shape:
            raise MedsegError(
                f"model.encoder_weights: {path}: not {encoder} weights: {key!r} has shape "
                f"{tuple(provided[key].shape)}, expected {tuple(value.shape)}"
            )
    module.load_state_dict(provided, strict=False)
    return True
