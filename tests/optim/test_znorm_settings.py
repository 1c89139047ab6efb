"""ZNorm's settings: one definition of the defaults, read by every function and wrapper."""

from __future__ import annotations

import dataclasses
import inspect

import pytest
import torch

from medseg.config import OptimConfig
from medseg.optim import (
    ZNORM_DEFAULTS,
    BlockNorm,
    ZNorm,
    ZNormSettings,
    blocknorm_,
    build_optimizer,
    znorm_,
)


def defaults(function) -> dict:
    return {name: parameter.default for name, parameter in inspect.signature(function).parameters.items()
            if parameter.default is not inspect.Parameter.empty}


def test_the_defaults_are_the_papers():
    assert dataclasses.asdict(ZNORM_DEFAULTS) == {"granularity": "tensor", "eps": 1e-8, "min_ndim": 2}
    assert ZNormSettings() == ZNORM_DEFAULTS


@pytest.mark.parametrize(("function", "names"), [
    (znorm_, ("granularity", "eps", "min_ndim")),
    (ZNorm, ("granularity", "eps", "min_ndim")),
    (blocknorm_, ("eps", "min_ndim")),
    (BlockNorm, ("eps", "min_ndim")),
])
def test_every_function_and_wrapper_defaults_to_the_settings(function, names):
    assert {name: defaults(function)[name] for name in names} == {
        name: getattr(ZNORM_DEFAULTS, name) for name in names}


def test_the_config_and_the_factory_default_to_the_settings():
    config = OptimConfig()
    assert (config.granularity, config.eps, config.min_ndim) == dataclasses.astuple(ZNORM_DEFAULTS)
    opt = build_optimizer("adam+znorm", [torch.zeros(2, 2, requires_grad=True)])
    assert opt.settings == dataclasses.asdict(ZNORM_DEFAULTS)


@pytest.mark.parametrize(("kwargs", "message"), [
    ({"eps": 0.0}, "znorm eps must be a positive finite number, got 0.0"),
    ({"eps": True}, "znorm eps must be a positive finite number, got True"),
    ({"min_ndim": 0}, "znorm min_ndim must be an integer >= 1, got 0"),
    ({"granularity": "layer"}, "znorm granularity must be one of tensor, channel, got 'layer'"),
])
def test_invalid_settings_are_refused_on_creation(kwargs, message):
    with pytest.raises(ValueError) as err:
        ZNormSettings(**kwargs)
    assert str(err.value) == message
    with pytest.raises(ValueError, match=message):
        ZNorm(torch.optim.SGD([torch.zeros(1, requires_grad=True)]), **kwargs)


def test_settings_are_frozen():
    with pytest.raises(dataclasses.FrozenInstanceError):
        ZNORM_DEFAULTS.eps = 1.0  # type: ignore[misc]
