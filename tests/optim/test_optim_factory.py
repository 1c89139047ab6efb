"""build_optimizer: names, aliases, hyper-parameter routing and errors."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from medseg.optim import (
    OPTIMIZER_NAMES,
    ClipGradNorm,
    GradCentralization,
    ZNorm,
    build_optimizer,
)

EXPECTED = {
    "adam": (None, torch.optim.Adam),
    "adamw": (None, torch.optim.AdamW),
    "sgd": (None, torch.optim.SGD),
    "adam+znorm": (ZNorm, torch.optim.Adam),
    "znorm": (ZNorm, torch.optim.Adam),
    "adamw+znorm": (ZNorm, torch.optim.AdamW),
    "sgd+znorm": (ZNorm, torch.optim.SGD),
    "adam+gc": (GradCentralization, torch.optim.Adam),
    "adam+clip": (ClipGradNorm, torch.optim.Adam),
}

# One config for every method of a comparison, as the compare runner passes it.
SHARED = {
    "lr": 0.01,
    "weight_decay": 1e-4,
    "momentum": 0.8,
    "granularity": "channel",
    "eps": 1e-6,
    "min_ndim": 1,
    "max_norm": 2.0,
}


def model() -> nn.Module:
    torch.manual_seed(0)
    return nn.Sequential(nn.Conv2d(1, 2, 3), nn.Flatten(), nn.Linear(8, 1))


def test_names_are_exactly_the_documented_ones():
    assert set(OPTIMIZER_NAMES) == set(EXPECTED)


@pytest.mark.parametrize("name", OPTIMIZER_NAMES)
def test_each_name_builds_its_optimizer_and_takes_a_step(name):
    wrapper, inner_class = EXPECTED[name]
    net = model()
    opt = build_optimizer(name, net.parameters(), **SHARED)
    inner = opt.optimizer if wrapper else opt
    assert type(opt) is (wrapper or inner_class)
    assert type(inner) is inner_class
    group = opt.param_groups[0]
    assert group["lr"] == 0.01
    assert group["weight_decay"] == 1e-4
    before = net[0].weight.detach().clone()
    net(torch.randn(2, 1, 4, 4)).sum().backward()
    opt.step()
    assert not torch.equal(before, net[0].weight)


def test_keys_that_do_not_apply_are_ignored():
    adam = build_optimizer("adam", model().parameters(), **SHARED)
    assert "momentum" not in adam.param_groups[0]
    sgd = build_optimizer("sgd", model().parameters(), **SHARED)
    assert sgd.param_groups[0]["momentum"] == 0.8
    gc = build_optimizer("adam+gc", model().parameters(), conv_only=True, **SHARED)
    assert gc.conv_only is True


def test_wrapper_settings_are_routed():
    znorm = build_optimizer("adam+znorm", model().parameters(), **SHARED)
    assert znorm.settings == {"granularity": "channel", "eps": 1e-6, "min_ndim": 1}
    assert znorm.param_groups[0]["eps"] == 1e-8  # Adam keeps its own eps
    clip = build_optimizer("adam+clip", model().parameters(), **SHARED)
    assert clip.max_norm == 2.0


def test_torch_defaults_fill_the_keys_not_given():
    adamw = build_optimizer("adamw", model().parameters())
    assert adamw.param_groups[0]["lr"] == 1e-3
    assert adamw.param_groups[0]["weight_decay"] == 1e-2
    znorm = build_optimizer("znorm", model().parameters())
    assert znorm.settings == {"granularity": "tensor", "eps": 1e-8, "min_ndim": 2}


def test_betas_from_yaml_lists_become_tuples():
    opt = build_optimizer("adam", model().parameters(), betas=[0.8, 0.99])
    assert opt.param_groups[0]["betas"] == (0.8, 0.99)


@pytest.mark.parametrize("name", ["adam", "adamw", "sgd", "adam+znorm"])
def test_cpu_parameters_use_the_multi_tensor_implementation(name):
    opt = build_optimizer(name, model().parameters())
    assert opt.defaults["foreach"] is True
    assert not opt.defaults.get("fused")


def test_param_group_dicts_and_generators_are_accepted():
    net = model()
    opt = build_optimizer(
        "adam+znorm",
        [{"params": net[0].parameters(), "lr": 0.1}, {"params": net[2].weight}],
        lr=0.01,
    )
    assert [g["lr"] for g in opt.param_groups] == [0.1, 0.01]
    assert [len(g["params"]) for g in opt.param_groups] == [2, 1]


def test_unknown_name_lists_the_valid_names():
    with pytest.raises(ValueError, match=r"unknown optimizer 'lamb'; choose from adam, adamw, sgd"):
        build_optimizer("lamb", model().parameters())


def test_unknown_key_names_the_valid_keys():
    with pytest.raises(
        ValueError, match=r"unknown optimizer option 'lr_decay'; valid options: lr, "
    ):
        build_optimizer("adam", model().parameters(), lr_decay=0.1)


@pytest.mark.parametrize(
    "params",
    [5, "weights", torch.ones(2, requires_grad=True), [1.0, 2.0], [{"lr": 0.1}], [{"params": [3]}]],
    ids=["int", "str", "tensor", "floats", "dict-without-params", "group-of-floats"],
)
def test_params_that_are_not_tensors_or_groups_raise_type_error(params):
    with pytest.raises(TypeError, match="params"):
        build_optimizer("adam", params)


def test_empty_params_raise_value_error():
    with pytest.raises(ValueError, match="params is empty"):
        build_optimizer("adam", [])


def test_invalid_wrapper_values_raise_value_error():
    with pytest.raises(ValueError, match="granularity"):
        build_optimizer("adam+znorm", model().parameters(), granularity="layer")
    with pytest.raises(ValueError, match="max_norm"):
        build_optimizer("adam+clip", model().parameters(), max_norm=-1.0)
