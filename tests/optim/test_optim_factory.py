"""build_optimizer: names, aliases, hyper-parameter routing and errors."""

from __future__ import annotations

import pytest
import torch
from timm.optim import Lamb
from torch import nn

from medseg.optim import (
    OPTIMIZER_NAMES,
    AdaptiveGradClip,
    BlockNorm,
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
    "adam+agc": (AdaptiveGradClip, torch.optim.Adam),
    "adam+blocknorm": (BlockNorm, torch.optim.Adam),
    "lamb": (None, Lamb),
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
    "clip_factor": 0.02,
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
    assert group["weight_decay"] == (0.01 if name == "lamb" else 1e-4)  # lamb: timm's default
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
    agc = build_optimizer("adam+agc", model().parameters(), **SHARED)
    assert agc.settings == {"clip_factor": 0.02, "eps": 1e-3}  # AGC's eps is not ZNorm's
    blocknorm = build_optimizer("adam+blocknorm", model().parameters(), **SHARED)
    assert blocknorm.settings == {"eps": 1e-6, "min_ndim": 1}
    lamb = build_optimizer("lamb", model().parameters(), **SHARED)
    assert {key: lamb.defaults[key] for key in ("lr", "betas", "eps", "max_grad_norm")} == {
        "lr": 0.01, "betas": (0.9, 0.999), "eps": 1e-6, "max_grad_norm": 1.0}


def test_torch_defaults_fill_the_keys_not_given():
    adamw = build_optimizer("adamw", model().parameters())
    assert adamw.param_groups[0]["lr"] == 1e-3
    assert adamw.param_groups[0]["weight_decay"] == 1e-2
    znorm = build_optimizer("znorm", model().parameters())
    assert znorm.settings == {"granularity": "tensor", "eps": 1e-8, "min_ndim": 2}


def test_betas_from_yaml_lists_become_tuples():
    opt = build_optimizer("adam", model().parameters(), betas=[0.8, 0.99])
    assert opt.param_groups[0]["betas"] == (0.8, 0.99)


@pytest.mark.parametrize("name", ["adam", "adamw", "adam+znorm", "adam+gc"])
def test_adam_on_cpu_parameters_is_fused(name):
    opt = build_optimizer(name, model().parameters())
    assert opt.defaults["fused"] is True
    assert not opt.defaults.get("foreach")


def test_sgd_and_non_float_parameters_use_the_multi_tensor_implementation():
    assert build_optimizer("sgd", model().parameters()).defaults["foreach"] is True
    # a complex parameter: torch's fused Adam refuses it, so Adam falls back to foreach
    opt = build_optimizer("adam", [torch.zeros(2, 2), torch.zeros(3, dtype=torch.complex64)])
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
    with pytest.raises(ValueError, match=r"unknown optimizer 'lion'; choose from adam, adamw, sgd"):
        build_optimizer("lion", model().parameters())


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


def _decay_of(opt) -> dict[int, float]:
    """id(parameter) -> the weight decay of its group."""
    return {id(p): group["weight_decay"] for group in opt.param_groups for p in group["params"]}


@pytest.mark.parametrize("name", OPTIMIZER_NAMES)
def test_weight_decay_applies_to_weights_and_never_to_biases(name):
    net = model()
    opt = build_optimizer(name, net.parameters(), weight_decay=0.05)
    decay = _decay_of(opt)
    assert len(decay) == len(list(net.parameters()))
    for param_name, p in net.named_parameters():
        expected = 0.0 if param_name.endswith("bias") else (0.01 if name == "lamb" else 0.05)
        assert decay[id(p)] == expected, param_name


@pytest.mark.parametrize("name", ["adamw", "sgd"])
def test_a_zero_gradient_step_decays_weights_by_lr_times_wd_and_leaves_biases(name):
    net = model()
    before = {key: p.detach().clone() for key, p in net.named_parameters()}
    opt = build_optimizer(name, net.parameters(), lr=0.1, weight_decay=0.5)
    for p in net.parameters():
        p.grad = torch.zeros_like(p)
    opt.step()
    for key, p in net.named_parameters():
        expected = before[key] if key.endswith("bias") else before[key] * (1 - 0.1 * 0.5)
        torch.testing.assert_close(p.detach(), expected, rtol=1e-6, atol=0)
        if key.endswith("bias"):
            assert torch.equal(p.detach(), before[key])


def test_groups_without_weight_decay_are_not_split():
    assert len(build_optimizer("adam", model().parameters()).param_groups) == 1
    assert len(build_optimizer("adamw", model().parameters(), weight_decay=0.0).param_groups) == 1
    split = build_optimizer("adamw", model().parameters())  # torch's default decay 1e-2
    assert [g["weight_decay"] for g in split.param_groups] == [1e-2, 0.0]


def test_given_param_groups_keep_their_settings_when_split():
    net = model()
    opt = build_optimizer(
        "adamw",
        [{"params": net[0].parameters(), "lr": 0.1, "weight_decay": 0.3},
         {"params": net[2].parameters(), "weight_decay": 0.0}],
        lr=0.01,
    )
    assert [(g["lr"], g["weight_decay"], len(g["params"])) for g in opt.param_groups] == [
        (0.1, 0.3, 1), (0.1, 0.0, 1), (0.01, 0.0, 2)]
    assert opt.param_groups[0]["params"][0] is net[0].weight
    assert opt.param_groups[1]["params"][0] is net[0].bias


def test_lamb_is_timms_lamb_on_the_weights_only_groups():
    net, reference = model(), model()
    opt = build_optimizer("lamb", net.parameters(), lr=0.01, weight_decay=0.5, betas=(0.5, 0.6))
    timm_lamb = Lamb(
        [{"params": [p for p in reference.parameters() if p.ndim >= 2]},
         {"params": [p for p in reference.parameters() if p.ndim <= 1], "weight_decay": 0.0}],
        lr=0.01,
    )
    gen = torch.Generator().manual_seed(3)
    for _ in range(4):
        images = torch.randn(3, 1, 4, 4, generator=gen)
        for network, optimizer in ((net, opt), (reference, timm_lamb)):
            optimizer.zero_grad()
            network(images).square().sum().backward()
            optimizer.step()
    for a, b in zip(net.parameters(), reference.parameters(), strict=True):
        assert torch.equal(a, b)
    assert not torch.equal(net[0].weight, model()[0].weight)
