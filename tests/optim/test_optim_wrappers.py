"""Contract tests for the gradient-transform wrappers (in the manner of timm's test_optim.py):
the step equals transform-then-inner-step, state_dict round trip, LR schedulers, GradScaler,
param groups, parameters without gradients."""

from __future__ import annotations

import copy
import pickle
import warnings
from collections.abc import Callable

import pytest
import torch
from timm.utils.agc import adaptive_clip_grad
from torch import nn
from torch.optim import SGD, Adam, AdamW, Optimizer
from torch.optim.lr_scheduler import CosineAnnealingLR, LambdaLR, SequentialLR

from medseg.optim import (
    AdaptiveGradClip,
    BlockNorm,
    ClipGradNorm,
    GradCentralization,
    ZNorm,
    centralize_,
    znorm_,
)
from medseg.optim.wrappers import GradientTransform


def make_model(seed: int = 0) -> nn.Module:
    """Conv (4-D), linear (2-D) and bias/norm (1-D) parameters."""
    torch.manual_seed(seed)
    return nn.Sequential(
        nn.Conv2d(2, 4, 3),
        nn.GroupNorm(2, 4),
        nn.ReLU(),
        nn.Flatten(),
        nn.Linear(4 * 4 * 4, 3),
    )


def batch(seed: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
    gen = torch.Generator().manual_seed(seed)
    return torch.randn(5, 2, 6, 6, generator=gen), torch.randn(5, 3, generator=gen)


def backward(model: nn.Module, seed: int = 0) -> torch.Tensor:
    images, targets = batch(seed)
    loss = nn.functional.mse_loss(model(images), targets)
    loss.backward()
    return loss


def clip_reference(params: list[nn.Parameter]) -> None:
    grads = [p.grad for p in params if p.grad is not None]
    total = torch.linalg.vector_norm(torch.stack([torch.linalg.vector_norm(g) for g in grads]))
    for g in grads:
        g.mul_(torch.clamp(0.05 / (total + 1e-6), max=1.0))


def grads_of(params: list[nn.Parameter]) -> list[torch.Tensor]:
    return [p.grad for p in params if p.grad is not None]


def blocknorm_reference(params: list[nn.Parameter]) -> None:
    """Each >= 2-D gradient divided by its norm + 1e-8, one tensor at a time."""
    for g in grads_of(params):
        if g.ndim >= 2:
            g.div_(torch.linalg.vector_norm(g) + 1e-8)


WRAPPERS: dict[str, tuple[Callable[[Optimizer], GradientTransform], Callable[[list], None]]] = {
    "znorm-tensor": (ZNorm, lambda params: znorm_(grads_of(params))),
    "znorm-channel": (
        lambda opt: ZNorm(opt, granularity="channel", eps=1e-6, min_ndim=1),
        lambda params: znorm_(grads_of(params), granularity="channel", eps=1e-6, min_ndim=1),
    ),
    "gc": (GradCentralization, lambda params: centralize_(grads_of(params))),
    "gc-conv": (
        lambda opt: GradCentralization(opt, conv_only=True),
        lambda params: centralize_(grads_of(params), conv_only=True),
    ),
    "clip": (lambda opt: ClipGradNorm(opt, max_norm=0.05), clip_reference),
    "agc": (AdaptiveGradClip, lambda params: adaptive_clip_grad(params, clip_factor=0.01, eps=1e-3)),
    "agc-loose": (
        lambda opt: AdaptiveGradClip(opt, clip_factor=0.5, eps=0.1),
        lambda params: adaptive_clip_grad(params, clip_factor=0.5, eps=0.1),
    ),
    "blocknorm": (BlockNorm, blocknorm_reference),
}
INNERS: dict[str, Callable[[list], Optimizer]] = {
    "adam": lambda params: Adam(params, lr=1e-2, foreach=True),
    "adamw": lambda params: AdamW(params, lr=1e-2, weight_decay=0.1),
    "sgd": lambda params: SGD(params, lr=1e-2, momentum=0.9),
}


@pytest.mark.parametrize("inner", INNERS)
@pytest.mark.parametrize("wrapper", WRAPPERS)
def test_step_equals_transform_then_inner_step(wrapper, inner):
    wrap, transform = WRAPPERS[wrapper]
    wrapped_model, plain_model = make_model(), make_model()
    wrapped = wrap(INNERS[inner](list(wrapped_model.parameters())))
    plain = INNERS[inner](list(plain_model.parameters()))
    for step in range(3):
        backward(wrapped_model, seed=step)
        backward(plain_model, seed=step)
        wrapped.step()
        transform(list(plain_model.parameters()))
        plain.step()
        wrapped.zero_grad()
        plain.zero_grad()
    for a, b in zip(wrapped_model.parameters(), plain_model.parameters(), strict=True):
        assert torch.equal(a, b)


def test_the_inner_optimizer_sees_the_transformed_gradients():
    model = make_model()
    opt = ZNorm(Adam(model.parameters(), lr=1e-3))
    backward(model)
    opt.step()
    weight = model[0].weight.grad
    assert weight.mean().abs() < 1e-6
    assert weight.std(unbiased=False).item() == pytest.approx(1.0, abs=1e-5)


def test_wrappers_are_torch_optimizers_sharing_the_inner_state():
    model = make_model()
    inner = Adam(model.parameters(), lr=1e-3)
    opt = ZNorm(inner)
    assert isinstance(opt, Optimizer)
    assert opt.param_groups is inner.param_groups
    assert opt.defaults is inner.defaults
    backward(model)
    opt.step()
    assert opt.state is inner.state
    assert len(opt.state) == len(list(model.parameters()))


def test_closure_is_evaluated_with_grad_enabled_before_the_transform():
    model = make_model()
    opt = ZNorm(SGD(model.parameters(), lr=0.0))

    def closure() -> torch.Tensor:
        opt.zero_grad()
        return backward(model)

    with torch.no_grad():
        loss = opt.step(closure)
    assert loss.item() > 0
    assert model[4].weight.grad.std(unbiased=False).item() == pytest.approx(1.0, abs=1e-5)


def test_parameters_without_gradient_are_skipped():
    model = make_model()
    frozen = model[4].weight
    opt = ZNorm(Adam(model.parameters(), lr=1e-2))
    backward(model)
    frozen.grad = None
    before = frozen.detach().clone()
    opt.step()
    assert torch.equal(frozen, before)
    assert frozen not in opt.state
    assert model[0].weight in opt.state


def test_no_gradients_at_all_is_a_no_op():
    model = make_model()
    before = copy.deepcopy(model.state_dict())
    for wrap, _ in WRAPPERS.values():
        wrap(Adam(model.parameters(), lr=1e-2)).step()
    for name, tensor in model.state_dict().items():
        assert torch.equal(tensor, before[name])


def test_multiple_param_groups_keep_their_own_learning_rates():
    model, reference = make_model(), make_model()

    def groups(m: nn.Module) -> list[dict]:
        return [
            {"params": list(m[0].parameters()), "lr": 0.1},
            {"params": list(m[4].parameters()), "lr": 0.001},
        ]

    opt = ZNorm(SGD(groups(model), lr=0.5))
    plain = SGD(groups(reference), lr=0.5)
    backward(model)
    backward(reference)
    opt.step()
    znorm_(grads_of(list(reference.parameters())))
    plain.step()
    for a, b in zip(model.parameters(), reference.parameters(), strict=True):
        assert torch.equal(a, b)
    # the conv weight moved by 0.1 * its z-scored gradient
    conv_step = (make_model()[0].weight - model[0].weight) / model[0].weight.grad
    torch.testing.assert_close(conv_step, torch.full_like(conv_step, 0.1))


def test_add_param_group_goes_to_the_inner_optimizer():
    model = make_model()
    inner = SGD(model[0].parameters(), lr=0.1)
    opt = ZNorm(inner)
    opt.add_param_group({"params": list(model[4].parameters()), "lr": 0.2})
    assert len(inner.param_groups) == 2
    backward(model)
    opt.step()
    assert model[4].weight.grad.std(unbiased=False).item() == pytest.approx(1.0, abs=1e-5)


def test_zero_grad():
    model = make_model()
    opt = ZNorm(Adam(model.parameters()))
    backward(model)
    opt.zero_grad(set_to_none=False)
    assert torch.equal(model[0].weight.grad, torch.zeros_like(model[0].weight))
    opt.zero_grad()
    assert all(p.grad is None for p in model.parameters())


@pytest.mark.parametrize("wrapper", WRAPPERS)
def test_state_dict_round_trip(wrapper):
    wrap, _ = WRAPPERS[wrapper]
    model = make_model()
    opt = wrap(Adam(model.parameters(), lr=1e-2))
    for step in range(3):
        backward(model, seed=step)
        opt.step()
        opt.zero_grad()
    saved = copy.deepcopy(opt.state_dict())
    resumed_model = copy.deepcopy(model)
    resumed = wrap(Adam(resumed_model.parameters(), lr=0.5))
    resumed.load_state_dict(saved)
    assert resumed.param_groups[0]["lr"] == 1e-2
    for step in range(3, 5):
        for m, o in ((model, opt), (resumed_model, resumed)):
            backward(m, seed=step)
            o.step()
            o.zero_grad()
    for a, b in zip(model.parameters(), resumed_model.parameters(), strict=True):
        assert torch.equal(a, b)


def test_state_dict_is_the_inner_optimizers():
    model = make_model()
    inner = Adam(model.parameters(), lr=1e-2)
    opt = ZNorm(inner)
    backward(model)
    opt.step()
    saved = opt.state_dict()
    plain = Adam(make_model().parameters())
    plain.load_state_dict(saved)  # a ZNorm checkpoint loads into plain Adam and back
    assert plain.state_dict()["param_groups"] == saved["param_groups"]


def test_pickle_round_trip_keeps_settings_and_state():
    model = make_model()
    opt = ZNorm(Adam(model.parameters(), lr=1e-2), granularity="channel", eps=1e-6)
    backward(model)
    opt.step()
    restored = pickle.loads(pickle.dumps(opt))
    assert restored.settings == {"granularity": "channel", "eps": 1e-6, "min_ndim": 2}
    assert len(restored.state) == len(opt.state)
    assert restored.param_groups[0]["lr"] == 1e-2


def lr_after(opt: Optimizer, make_scheduler: Callable[[Optimizer], object], steps: int):
    scheduler = make_scheduler(opt)
    model_params = opt.param_groups[0]["params"]
    lrs = []
    for _ in range(steps):
        for p in model_params:
            p.grad = torch.ones_like(p)
        opt.step()
        scheduler.step()
        lrs.append(opt.param_groups[0]["lr"])
    return lrs


@pytest.mark.parametrize(
    "make_scheduler",
    [
        lambda opt: CosineAnnealingLR(opt, T_max=4),
        lambda opt: LambdaLR(opt, lambda step: 0.5**step),
        lambda opt: SequentialLR(
            opt,
            [LambdaLR(opt, lambda step: (step + 1) / 2), CosineAnnealingLR(opt, T_max=3)],
            milestones=[2],
        ),
    ],
    ids=["cosine", "lambda", "sequential"],
)
@pytest.mark.parametrize("wrapper", WRAPPERS)
def test_lr_schedulers_drive_the_shared_learning_rate(make_scheduler, wrapper):
    wrapped = WRAPPERS[wrapper][0](SGD(make_model().parameters(), lr=0.1))
    plain = SGD(make_model().parameters(), lr=0.1)
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # e.g. "optimizer.step() has been overridden"
        wrapped_lrs = lr_after(wrapped, make_scheduler, 5)
    assert wrapped_lrs == lr_after(plain, make_scheduler, 5)
    assert wrapped.optimizer.param_groups[0]["lr"] == wrapped_lrs[-1]
    assert len(set(wrapped_lrs)) > 1


def test_scheduled_learning_rate_is_the_one_used_by_the_step():
    model = make_model()
    opt = ZNorm(SGD(model.parameters(), lr=1.0))
    scheduler = LambdaLR(opt, lambda step: 0.25)
    assert opt.param_groups[0]["lr"] == 0.25
    before = model[0].weight.detach().clone()
    backward(model)
    opt.step()
    scheduler.step()
    torch.testing.assert_close(before - model[0].weight, 0.25 * model[0].weight.grad)


class RecordingTransform(GradientTransform):
    """Records (copies of) the gradients it is given."""

    def __init__(self, optimizer: Optimizer) -> None:
        super().__init__(optimizer)
        self.seen: list[list[torch.Tensor]] = []

    def transform_gradients_(self, params: list[torch.Tensor]) -> None:
        self.seen.append([p.grad.clone() for p in params])


def test_grad_scaler_unscales_before_the_transform_sees_the_gradients():
    model, reference = make_model(), make_model()
    opt = RecordingTransform(Adam(model.parameters(), lr=1e-2))
    scaler = torch.amp.GradScaler("cpu", init_scale=2.0**10)
    images, targets = batch()
    scaler.scale(nn.functional.mse_loss(model(images), targets)).backward()
    scaler.step(opt)
    scaler.update()
    backward(reference)
    assert len(opt.seen) == 1
    for seen, p in zip(opt.seen[0], reference.parameters(), strict=True):
        torch.testing.assert_close(seen, p.grad)


@pytest.mark.parametrize("wrapper", WRAPPERS)
def test_grad_scaler_gives_the_unscaled_reference_step(wrapper):
    wrap, transform = WRAPPERS[wrapper]
    model, reference = make_model(), make_model()
    opt = wrap(Adam(model.parameters(), lr=1e-2))
    plain = Adam(reference.parameters(), lr=1e-2)
    scaler = torch.amp.GradScaler("cpu", init_scale=2.0**10)
    images, targets = batch()
    scaler.scale(nn.functional.mse_loss(model(images), targets)).backward()
    scaler.step(opt)
    scaler.update()
    backward(reference)
    transform(list(reference.parameters()))
    plain.step()
    for a, b in zip(model.parameters(), reference.parameters(), strict=True):
        torch.testing.assert_close(a, b)


def test_grad_scaler_skips_a_step_with_inf_gradients():
    model = make_model()
    opt = ZNorm(Adam(model.parameters(), lr=1e-2))
    scaler = torch.amp.GradScaler("cpu", init_scale=2.0**10)
    before = copy.deepcopy(model.state_dict())
    images, targets = batch()
    scaler.scale(nn.functional.mse_loss(model(images), targets)).backward()
    model[0].weight.grad[0, 0, 0, 0] = float("inf")
    scaler.step(opt)
    scaler.update()
    for name, tensor in model.state_dict().items():
        assert torch.equal(tensor, before[name]), name
    assert not opt.state  # Adam never stepped
    assert scaler.get_scale() == 2.0**9
    assert torch.isinf(model[0].weight.grad).any()  # the transform never ran either


def test_step_hooks_fire():
    model = make_model()
    opt = ZNorm(Adam(model.parameters()))
    calls = []
    opt.register_step_pre_hook(lambda o, args, kwargs: calls.append(("pre", o)))
    opt.register_step_post_hook(lambda o, args, kwargs: calls.append(("post", o)))
    backward(model)
    opt.step()
    assert calls == [("pre", opt), ("post", opt)]


def test_wrappers_nest_and_the_outer_transform_runs_first():
    model = make_model()
    opt = ZNorm(ClipGradNorm(SGD(model.parameters(), lr=0.1), max_norm=1.0), min_ndim=1)
    backward(model)
    opt.step()
    total = torch.linalg.vector_norm(torch.stack([p.grad.norm() for p in model.parameters()]))
    assert total.item() == pytest.approx(1.0, abs=1e-4)


def test_repr_shows_the_settings_and_the_inner_optimizer():
    model = make_model()
    text = repr(ZNorm(Adam(model.parameters(), lr=0.003), granularity="channel"))
    assert text.startswith("ZNorm(granularity='channel', eps=1e-08, min_ndim=2) over\n  Adam (")
    assert "lr: 0.003" in text
    assert repr(GradCentralization(SGD(model.parameters()), conv_only=True)).startswith(
        "GradCentralization(conv_only=True) over"
    )
    assert repr(ClipGradNorm(SGD(model.parameters()), max_norm=2.0)).startswith(
        "ClipGradNorm(max_norm=2.0) over"
    )
    assert repr(AdaptiveGradClip(SGD(model.parameters()))).startswith(
        "AdaptiveGradClip(clip_factor=0.01, eps=0.001) over"
    )
    assert repr(BlockNorm(SGD(model.parameters()))).startswith(
        "BlockNorm(eps=1e-08, min_ndim=2) over"
    )


@pytest.mark.parametrize(
    "wrapper", [ZNorm, GradCentralization, ClipGradNorm, AdaptiveGradClip, BlockNorm]
)
def test_wrapping_something_else_raises_type_error(wrapper):
    with pytest.raises(TypeError, match=r"wraps a torch\.optim\.Optimizer, got list"):
        wrapper([nn.Parameter(torch.ones(2))])


@pytest.mark.parametrize(
    ("make", "message"),
    [
        (lambda opt: ZNorm(opt, eps=0), "eps must be a positive finite number"),
        (lambda opt: ZNorm(opt, granularity="row"), "granularity must be one of"),
        (lambda opt: ZNorm(opt, min_ndim=0), "min_ndim must be an integer >= 1"),
        (lambda opt: ClipGradNorm(opt, max_norm=0), "max_norm must be a positive finite number"),
        (lambda opt: ClipGradNorm(opt, max_norm="1"), "max_norm must be a positive finite number"),
        (lambda opt: AdaptiveGradClip(opt, clip_factor=0), "clip_factor must be a positive finite"),
        (lambda opt: AdaptiveGradClip(opt, eps=float("inf")), "eps must be a positive finite"),
        (lambda opt: BlockNorm(opt, eps=-1e-8), "eps must be a positive finite number"),
        (lambda opt: BlockNorm(opt, min_ndim=0), "min_ndim must be an integer >= 1"),
    ],
)
def test_invalid_settings_raise_value_error(make, message):
    with pytest.raises(ValueError, match=message):
        make(SGD(make_model().parameters()))
