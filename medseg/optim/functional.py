"""In-place gradient transforms on lists of tensors: ZNorm's z-score, Gradient Centralization and
block normalization.

Two implementations, with the same statistics. Off the CPU (``_BLOCKED_DEVICE_TYPES``), the
multi-tensor one: tensors are grouped by device and dtype, one reduction per tensor takes its
signed sum (no multi-tensor op does), and every other op, full-size updates included, is one
op per group (``torch._foreach_*``), whatever the number of tensors. On the CPU, where a
multi-tensor op is a loop over the tensors anyway, each tensor is transformed on its own with
its passes back to back, so it is read from memory once while it sits in cache (about twice as
fast, see docs/benchmarks.md). Nothing of a tensor's size is allocated for fp32/fp64 tensors;
fp16/bf16 tensors are standardized through an fp32 copy.

Example:
    >>> grads = [p.grad for p in model.parameters() if p.grad is not None]
    >>> znorm_(grads)                        # every >= 2-D gradient now has mean 0, std 1
    >>> centralize_(grads, conv_only=True)   # Gradient Centralization of conv kernels
    >>> blocknorm_(grads)                    # every >= 2-D gradient now has norm ~1
"""

from __future__ import annotations

import math
from collections import defaultdict
from collections.abc import Iterable
from typing import Literal

import torch
from torch import Tensor

Granularity = Literal["tensor", "channel"]
GRANULARITIES: tuple[str, ...] = ("tensor", "channel")

_LOW_PRECISION = (torch.float16, torch.bfloat16)
_NORM_CHUNK = 65536
# Devices on which tensors are transformed one at a time, each while it is in cache, rather
# than by multi-tensor ops (one pass over all tensors per step); see docs/znorm.md.
_BLOCKED_DEVICE_TYPES: tuple[str, ...] = ("cpu",)


def check_znorm_settings(granularity: str, eps: float, min_ndim: int) -> None:
    """Raise ``ValueError`` naming the first invalid ZNorm setting."""
    if granularity not in GRANULARITIES:
        raise ValueError(
            f"znorm granularity must be one of {', '.join(GRANULARITIES)}, got {granularity!r}"
        )
    if isinstance(eps, bool) or not isinstance(eps, (int, float)) or not 0 < eps < math.inf:
        raise ValueError(f"znorm eps must be a positive finite number, got {eps!r}")
    if isinstance(min_ndim, bool) or not isinstance(min_ndim, int) or min_ndim < 1:
        raise ValueError(f"znorm min_ndim must be an integer >= 1, got {min_ndim!r}")


def znorm_(
    tensors: Tensor | Iterable[Tensor],
    *,
    granularity: Granularity = "tensor",
    eps: float = 1e-8,
    min_ndim: int = 2,
) -> None:
    """Replace each tensor ``g`` by its z-score ``(g - mean(g)) / (std(g) + eps)``, in place.

    ``std`` is the population standard deviation. A constant (or zero) tensor becomes zeros.
    Statistics of fp16/bf16 tensors are computed in fp32 and the result is rounded once to the
    tensor's dtype. Magnitudes across the dtype's range are handled (1e-30 to 3e38 in fp32):
    a tensor whose statistics would overflow or underflow is rescaled by a power of two
    (exactly) and standardized again. Non-finite inputs give non-finite outputs.

    Args:
        tensors: a tensor or an iterable of tensors (typically gradients).
        granularity: ``"tensor"`` takes one mean and std per tensor; ``"channel"`` takes them
            per slice along dim 0 (per output channel of a conv/linear weight). A 1-D tensor
            (only selected when ``min_ndim=1``) has no channels and is standardized whole.
        eps: added to the std; must be positive.
        min_ndim: tensors with fewer dimensions (biases, norm-layer weights with the default
            2) are left untouched.

    Raises:
        ValueError: an invalid setting, or a sparse tensor.
        TypeError: a tensor that is not floating point.

    Example:
        >>> g = torch.tensor([[1.0, 2.0], [3.0, 4.0]])
        >>> znorm_(g)
        >>> g
        tensor([[-1.3416, -0.4472],
                [ 0.4472,  1.3416]])
    """
    check_znorm_settings(granularity, eps, min_ndim)
    selected = _select(tensors, min_ndim)
    per_channel = granularity == "channel"
    for group in _group_by_device_and_dtype(selected):
        low_precision = group[0].dtype in _LOW_PRECISION
        if group[0].device.type in _BLOCKED_DEVICE_TYPES:
            for t in group:
                one = t.float() if low_precision else t
                _standardize_one_(one, _channel_dims(t) if per_channel and t.ndim > 1 else None, eps)
                if one is not t:
                    t.copy_(one)
            continue
        work = [t.float() for t in group] if low_precision else group
        _standardize_(work, eps, per_channel=per_channel)
        if work is not group:
            torch._foreach_copy_(group, work)


def centralize_(tensors: Tensor | Iterable[Tensor], *, conv_only: bool = False) -> None:
    """Gradient Centralization (Yong et al. 2020): subtract from each tensor with ``ndim > 1``
    the mean over all dims but dim 0 (one mean per output channel), in place.

    Args:
        tensors: a tensor or an iterable of tensors (typically gradients).
        conv_only: only centralize tensors with ``ndim > 3`` (conv kernels), the paper's
            "GCC" variant.

    Raises:
        ValueError: a sparse tensor.
        TypeError: a tensor that is not floating point.

    Example:
        >>> g = torch.tensor([[1.0, 2.0, 3.0], [4.0, 6.0, 8.0]])
        >>> centralize_(g)
        >>> g
        tensor([[-1.,  0.,  1.],
                [-2.,  0.,  2.]])
    """
    selected = _select(tensors, min_ndim=4 if conv_only else 2)
    for group in _group_by_device_and_dtype(selected):
        if group[0].device.type in _BLOCKED_DEVICE_TYPES:
            for t in group:
                t.sub_(t.mean(dim=_channel_dims(t), keepdim=True, dtype=torch.float32))
            continue
        means = [t.mean(dim=_channel_dims(t), keepdim=True, dtype=torch.float32) for t in group]
        torch._foreach_sub_(group, means)


def blocknorm_(
    tensors: Tensor | Iterable[Tensor], *, eps: float = 1e-8, min_ndim: int = 2
) -> None:
    """Divide each tensor ``g`` by ``||g|| + eps`` (its L2 norm), in place.

    Block-normalized gradients: every selected tensor gets (almost) unit norm and keeps its
    direction; no centring. Norms of fp16/bf16 tensors are taken in fp32; a tensor whose
    squares overflow (|g| above about 1e19 in fp32) is rescaled by a power of two (exactly)
    before its norm is taken. Non-finite inputs give non-finite outputs.

    Args:
        tensors: a tensor or an iterable of tensors (typically gradients).
        eps: added to the norm; must be positive.
        min_ndim: tensors with fewer dimensions (biases, norm-layer weights with the default
            2) are left untouched.

    Raises:
        ValueError: an invalid setting, or a sparse tensor.
        TypeError: a tensor that is not floating point.

    Example:
        >>> g = torch.tensor([[3.0, 4.0]])
        >>> blocknorm_(g)
        >>> g
        tensor([[0.6000, 0.8000]])
    """
    check_znorm_settings("tensor", eps, min_ndim)
    for group in _group_by_device_and_dtype(_select(tensors, min_ndim)):
        work = [t.float() for t in group] if group[0].dtype in _LOW_PRECISION else group
        norms = _tensor_norms(work)
        overflow = ~torch.isfinite(norms)
        if overflow.any():
            for index in overflow.nonzero().flatten().tolist():
                norms[index] = _overflow_safe_norm(work[index])
        torch._foreach_div_(work, (norms + eps).unbind())  # 0-d views broadcast
        if work is not group:
            torch._foreach_copy_(group, work)


def _overflow_safe_norm(t: Tensor) -> Tensor:
    """``||t||`` from ``t`` scaled by a power of two that brings its max-abs below 1."""
    max_abs = torch.linalg.vector_norm(t, math.inf)
    _, exponent = torch.frexp(max_abs)
    return torch.linalg.vector_norm(torch.ldexp(t, -exponent)) * torch.ldexp(
        torch.ones_like(max_abs), exponent
    )


def _select(tensors: Tensor | Iterable[Tensor], min_ndim: int) -> list[Tensor]:
    """The non-empty tensors with at least ``min_ndim`` dims, after checking their type."""
    tensors = [tensors] if isinstance(tensors, Tensor) else list(tensors)
    for t in tensors:
        if not isinstance(t, Tensor):
            raise TypeError(f"expected tensors, got {type(t).__name__}")
        if t.is_sparse:
            raise ValueError("sparse gradients are not supported")
        if not t.is_floating_point():
            raise TypeError(f"expected floating-point tensors, got {t.dtype}")
    return [t for t in tensors if t.ndim >= min_ndim and t.numel() > 0]


def _group_by_device_and_dtype(tensors: list[Tensor]) -> list[list[Tensor]]:
    groups: dict[tuple[torch.device, torch.dtype], list[Tensor]] = defaultdict(list)
    for t in tensors:
        groups[(t.device, t.dtype)].append(t)
    return list(groups.values())


def _channel_dims(t: Tensor) -> tuple[int, ...]:
    return tuple(range(1, t.ndim))


def _standardize_(tensors: list[Tensor], eps: float, *, per_channel: bool) -> None:
    """Z-score fp32/fp64 tensors of one device and dtype in place (per channel; one mean and
    std per tensor goes to :func:`_standardize_tensors_`).

    Four passes over the data: sums, centring, norms, division. The statistics of all
    tensors live in flat vectors (one entry per tensor, or per channel) so the arithmetic on
    them is a handful of small vectorized ops.
    """
    if not per_channel:
        _standardize_tensors_(tensors, eps)
        return
    per_channel_dims = [_channel_dims(t) if t.ndim > 1 else None for t in tensors]
    stat_shapes = [
        (t.shape[0],) + (1,) * (t.ndim - 1) if dims else (1,) * t.ndim
        for t, dims in zip(tensors, per_channel_dims, strict=True)
    ]
    stat_sizes = [shape[0] for shape in stat_shapes]
    dtype, device = tensors[0].dtype, tensors[0].device
    counts = (
        torch.tensor([t.numel() // size for t, size in zip(tensors, stat_sizes, strict=True)])
        .repeat_interleave(torch.tensor(stat_sizes))
        .to(device=device, dtype=dtype, non_blocking=True)
    )

    def per_tensor(flat: Tensor) -> list[Tensor]:
        """Views of a flat statistics vector, shaped to broadcast against each tensor."""
        return [
            chunk.view(shape)
            for chunk, shape in zip(flat.split(stat_sizes), stat_shapes, strict=True)
        ]

    sums = torch.cat(
        [
            torch.sum(t, dim=dims).reshape(-1)
            for t, dims in zip(tensors, per_channel_dims, strict=True)
        ]
    )
    means = sums / counts
    # A sum that overflowed must not be subtracted: its tensor is left as is and rescued below.
    centred = torch.isfinite(means)
    torch._foreach_sub_(tensors, per_tensor(torch.where(centred, means, 0)))
    norms = torch.cat(
        [
            torch.linalg.vector_norm(t, dim=dims).reshape(-1)
            for t, dims in zip(tensors, per_channel_dims, strict=True)
        ]
    )
    denominators = norms / counts.sqrt() + eps
    rescue = _needs_rescue(centred, norms, denominators)
    if rescue.any():
        flags = rescue.split(stat_sizes)
        views = per_tensor(denominators)
        for t, dims, flag, view in zip(tensors, per_channel_dims, flags, views, strict=True):
            if flag.any():
                view.copy_(_rescaled_denominator_(t, dims, eps))
    torch._foreach_div_(tensors, per_tensor(denominators.clamp_min_(torch.finfo(dtype).tiny)))


def _standardize_tensors_(tensors: list[Tensor], eps: float) -> None:
    """Z-score fp32/fp64 tensors of one device and dtype in place, one mean and std each.

    The full-size work is three multi-tensor ops (centring, norms, division) and one
    reduction per tensor (its sum: no multi-tensor op takes a signed sum). The per-tensor
    statistics broadcast as 0-d views of one vector (a single ``unbind``).
    """
    dtype, device = tensors[0].dtype, tensors[0].device
    counts = torch.tensor([t.numel() for t in tensors], dtype=dtype).to(device, non_blocking=True)
    means = torch.stack([torch.sum(t) for t in tensors]) / counts
    # A sum that overflowed must not be subtracted: its tensor is left as is and rescued below.
    centred = torch.isfinite(means)
    torch._foreach_sub_(tensors, torch.where(centred, means, 0).unbind())
    norms = _tensor_norms(tensors)
    denominators = norms / counts.sqrt() + eps
    rescue = _needs_rescue(centred, norms, denominators)
    if rescue.any():
        for index in rescue.nonzero().flatten().tolist():
            denominators[index] = _rescaled_denominator_(tensors[index], None, eps).reshape(())
    torch._foreach_div_(tensors, denominators.clamp_min_(torch.finfo(dtype).tiny).unbind())


def _standardize_one_(t: Tensor, dims: tuple[int, ...] | None, eps: float) -> None:
    """Z-score one fp32/fp64 tensor in place (per channel along ``dims``, or whole if
    ``None``), with the statistics of :func:`_standardize_`. Its passes run back to back, so
    a tensor that fits in the CPU's cache is read from memory once. Meant for CPU tensors:
    the whole-tensor statistics are read back as Python numbers (no cost on a CPU), which
    keeps the number of small ops per tensor low."""
    if dims:
        _standardize_channels_(t, dims, eps)
        return
    count = t.numel()
    mean = torch.sum(t).item() / count
    # A sum that overflowed must not be subtracted: the tensor is rescued below.
    centred = math.isfinite(mean)
    if centred:
        t.sub_(mean)
    norm = _norm_one(t).item()
    denominator = norm / math.sqrt(count) + eps
    finfo = torch.finfo(t.dtype)
    if not centred or not math.isfinite(norm) or denominator < math.sqrt(finfo.tiny) / finfo.eps:
        t.div_(_rescaled_denominator_(t, None, eps).clamp_min_(finfo.tiny))
    else:
        t.div_(max(denominator, finfo.tiny))


def _standardize_channels_(t: Tensor, dims: tuple[int, ...], eps: float) -> None:
    """:func:`_standardize_one_` with one mean and std per slice along dim 0."""
    count = t.numel() // t.shape[0]
    means = torch.sum(t, dim=dims, keepdim=True) / count
    centred = torch.isfinite(means)
    t.sub_(torch.where(centred, means, 0))
    norms = torch.linalg.vector_norm(t, dim=dims, keepdim=True)
    denominators = norms / math.sqrt(count) + eps
    if _needs_rescue(centred, norms, denominators).any():
        denominators = _rescaled_denominator_(t, dims, eps)
    t.div_(denominators.clamp_min_(torch.finfo(t.dtype).tiny))


def _norm_one(t: Tensor) -> Tensor:
    """The L2 norm of ``t`` (0-d), accurate as :func:`_tensor_norms`: every partial norm runs
    over at most ``_NORM_CHUNK`` elements."""
    if t.numel() <= _NORM_CHUNK:
        return torch.linalg.vector_norm(t)
    if t.ndim > 1 and t.numel() // t.shape[0] <= _NORM_CHUNK:
        # the norm of the channels' norms; the channels are spread over the threads
        return torch.linalg.vector_norm(torch.linalg.vector_norm(t, dim=_channel_dims(t)))
    return _tensor_norms([t]).reshape(())


def _needs_rescue(centred: Tensor, norms: Tensor, denominators: Tensor) -> Tensor:
    """Which statistics must be recomputed from a rescaled tensor: an overflowed sum or
    norm, or a denominator too small to be resolved. Squares below ``tiny`` lose precision,
    which moves the std by at most sqrt(tiny) - negligible unless the denominator is that
    small."""
    finfo = torch.finfo(denominators.dtype)
    imprecise = math.sqrt(finfo.tiny) / finfo.eps
    return ~centred | ~torch.isfinite(norms) | (denominators < imprecise)


def _tensor_norms(tensors: list[Tensor]) -> Tensor:
    """The L2 norm of each tensor from one multi-tensor norm. On the CPU a tensor of more
    than ``_NORM_CHUNK`` elements goes in as chunks of at most that many: a CPU norm
    accumulates sequentially in fp32, with a relative error growing with the length (1e-4 at
    4M elements, 5e-7 at 64K). Other tensors go in whole (no view ops): GPU norms reduce in
    a tree."""
    chunks: list[Tensor] = []
    owners: list[int] = []
    for index, t in enumerate(tensors):
        chunked = t.numel() > _NORM_CHUNK and t.device.type == "cpu"
        flat = _dense_flat_view(t) if chunked else None
        parts = flat.split(_NORM_CHUNK) if flat is not None else (t,)
        chunks.extend(parts)
        owners.extend([index] * len(parts))
    norms = torch.stack(torch._foreach_norm(chunks))
    if len(chunks) == len(tensors):
        return norms
    owner_index = torch.tensor(owners).to(norms.device, non_blocking=True)
    squares = norms.square()
    return squares.new_zeros(len(tensors)).index_add_(0, owner_index, squares).sqrt()


def _dense_flat_view(t: Tensor) -> Tensor | None:
    """A 1-D view of all of ``t``'s elements (in memory order), if its memory is dense."""
    order = sorted(range(t.ndim), key=lambda dim: t.stride(dim), reverse=True)
    permuted = t.permute(order)
    return permuted.view(-1) if permuted.is_contiguous() else None


def _rescaled_denominator_(t: Tensor, dims: tuple[int, ...] | None, eps: float) -> Tensor:
    """Scale ``t`` in place by a power of two so its max-abs lies in [0.5, 1), re-centre it
    and return ``s * (std + eps)`` (``s`` the scale), so ``t / result`` is the z-score."""
    max_abs = torch.linalg.vector_norm(t, math.inf, dim=dims, keepdim=True)
    _, exponent = torch.frexp(max_abs)
    max_exponent = math.floor(math.log2(torch.finfo(t.dtype).max))  # a finite scale for subnormals
    scale = torch.ldexp(torch.ones_like(max_abs), (-exponent).clamp_max(max_exponent))
    t.mul_(scale)
    count = t.numel() // scale.numel()
    t.sub_(torch.sum(t, dim=dims, keepdim=True) / count)
    std = torch.linalg.vector_norm(t, dim=dims, keepdim=True) / math.sqrt(count)
    return std + eps * scale
