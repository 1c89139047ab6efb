"""In-place gradient transforms on lists of tensors: ZNorm's z-score, Gradient Centralization and
block normalization.

Two implementations of ``znorm_`` and ``centralize_``, with the same statistics. On CUDA, the
packed one (:class:`_Packed`): the tensors of each device and dtype are copied into the rows of
one zero-padded matrix, every statistic (per tensor or per output channel) is a reduction along
the rows followed by one segmented float64 sum over each segment's rows, and the result is
copied back, so the number of dispatched compute ops does not depend on the number of tensors.
On the CPU, where a multi-tensor op is a loop over the tensors anyway, each tensor is
transformed on its own with its passes back to back, so it is read from memory once while it
sits in cache (about twice as fast, see docs/benchmarks.md); devices without the packed form's
kernels (``_PACKED_DEVICE_TYPES``: float64 and ``torch.segment_reduce``) take that path too.
The packed form allocates one copy of the group's gradients (in fp32 for fp16/bf16); the
per-tensor form allocates nothing of a tensor's size for fp32/fp64 tensors and standardizes
fp16/bf16 tensors through an fp32 copy. ``blocknorm_`` is multi-tensor (``torch._foreach_*``)
on every device.

Example:
    >>> grads = [p.grad for p in model.parameters() if p.grad is not None]
    >>> znorm_(grads)                        # every >= 2-D gradient now has mean 0, std 1
    >>> centralize_(grads, conv_only=True)   # Gradient Centralization of conv kernels
    >>> blocknorm_(grads)                    # every >= 2-D gradient now has norm ~1
"""

from __future__ import annotations

import functools
import math
from collections import defaultdict
from collections.abc import Iterable, Sequence

import torch
from torch import Tensor

from medseg.optim.settings import ZNORM_DEFAULTS, Granularity, check_znorm_settings

_LOW_PRECISION = (torch.float16, torch.bfloat16)
_NORM_CHUNK = 65536
# Devices on which tensors are transformed one at a time, each while it is in cache, rather
# than packed (one pass over all tensors per step); see docs/znorm.md.
_BLOCKED_DEVICE_TYPES: tuple[str, ...] = ("cpu",)
# Devices with the kernels the packed form needs (float64 and ``torch.segment_reduce``); the
# others transform one tensor at a time.
_PACKED_DEVICE_TYPES: tuple[str, ...] = ("cpu", "cuda")
# Row lengths of the packed matrix, longest first: the longest that pads the group by at most
# an eighth is taken (1 never pads).
_ROW_LENGTHS: tuple[int, ...] = tuple(2**k for k in range(12, -1, -1))


def znorm_(
    tensors: Tensor | Iterable[Tensor],
    *,
    granularity: Granularity = ZNORM_DEFAULTS.granularity,
    eps: float = ZNORM_DEFAULTS.eps,
    min_ndim: int = ZNORM_DEFAULTS.min_ndim,
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
        if _packs(group[0].device):
            packed = _Packed(group, per_channel=per_channel)
            _standardize_packed_(packed, eps)
            packed.unpack_()
            continue
        low_precision = group[0].dtype in _LOW_PRECISION
        for t in group:
            one = t.float() if low_precision else t
            _standardize_one_(one, _channel_dims(t) if per_channel and t.ndim > 1 else None, eps)
            if one is not t:
                t.copy_(one)


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
        if _packs(group[0].device):
            packed = _Packed(group, per_channel=True)
            sums = packed.segment_sums(packed.buffer.sum(dim=1))
            packed.buffer.sub_(packed.per_row((sums / packed.counts).to(packed.buffer.dtype)))
            packed.unpack_()
            continue
        # fp16/bf16 means in fp32 (the subtraction then rounds once); fp32/fp64 in their dtype
        dtype = torch.float32 if group[0].dtype in _LOW_PRECISION else group[0].dtype
        for t in group:
            t.sub_(t.mean(dim=_channel_dims(t), keepdim=True, dtype=dtype))


def blocknorm_(
    tensors: Tensor | Iterable[Tensor],
    *,
    eps: float = ZNORM_DEFAULTS.eps,
    min_ndim: int = ZNORM_DEFAULTS.min_ndim,
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


def _packs(device: torch.device) -> bool:
    """Whether the tensors of ``device`` are transformed packed (else one at a time)."""
    return device.type in _PACKED_DEVICE_TYPES and device.type not in _BLOCKED_DEVICE_TYPES


class _Packed:
    """The tensors of one device and dtype, copied into the rows of one zero-padded matrix.

    A tensor is one *segment* (``per_channel=False``, and 1-D tensors), or one segment per
    slice along dim 0. Every segment starts a row and fills ``ceil(length / row_length)`` rows,
    its last one padded with zeros; within a segment the elements are in the tensor's memory
    order, so a dense tensor packed whole has the same strides in the matrix as outside it
    (copies in and out are then plain ``torch._foreach_copy_``, one multi-tensor launch on
    CUDA). A per-segment statistic is a reduction along the rows (all rows at once) followed
    by one float64 ``torch.segment_reduce`` over each segment's rows; a per-segment value
    broadcasts back over the rows with one ``repeat_interleave``. The number of dispatched
    compute ops is the same for any number of tensors; only view ops (``as_strided``: one per
    tensor, and one per padded tensor for its padding; no kernel) grow with it. fp16/bf16
    tensors are packed in fp32 and rounded once when copied back.
    """

    def __init__(self, tensors: list[Tensor], *, per_channel: bool) -> None:
        self.tensors = tensors
        dtype = torch.float32 if tensors[0].dtype in _LOW_PRECISION else tensors[0].dtype
        device = tensors[0].device
        # per tensor: its number of segments, their length and the rows each fills
        self.segments = [t.shape[0] if per_channel and t.ndim > 1 else 1 for t in tensors]
        self.lengths = [t.numel() // s for t, s in zip(tensors, self.segments, strict=True)]
        row_length = _row_length(tuple(self.segments), tuple(self.lengths))
        self.rows = [-(-m // row_length) for m in self.lengths]
        total_rows = sum(s * k for s, k in zip(self.segments, self.rows, strict=True))
        self.buffer = torch.empty(total_rows, row_length, dtype=dtype, device=device)
        self.views: list[Tensor] = []  # each tensor's copy, in its shape
        self.offsets: list[int] = []  # where each tensor's copy starts in the matrix
        pads: list[Tensor] = []
        offset = 0
        for t, s, m, k in zip(tensors, self.segments, self.lengths, self.rows, strict=True):
            span = k * row_length  # a segment's elements and padding
            self.views.append(self.buffer.as_strided(t.shape, _packed_strides(t, s, span), offset))
            self.offsets.append(offset)
            if span > m:
                pads.append(self.buffer.as_strided((s, span - m), (span, 1), offset + m))
            offset += s * span
        # an empty view when nothing is padded keeps the op count independent of the layout
        self.pads = pads or [self.buffer.view(-1)[:0]]
        # per segment: its number of rows and of elements
        segments = torch.tensor(self.segments)
        rows = torch.tensor(self.rows).repeat_interleave(segments)
        counts = torch.tensor(self.lengths, dtype=torch.float64).repeat_interleave(segments)
        self.rows_per_segment = rows.to(device, non_blocking=True)
        self.counts = counts.to(device, non_blocking=True)
        self.zero_padding_()
        torch._foreach_copy_(self.views, tensors)

    def zero_padding_(self) -> None:
        torch._foreach_zero_(self.pads)

    def block(self, index: int) -> Tensor:
        """The packed copy of tensor ``index`` as a (segments, segment length) view."""
        span = self.rows[index] * self.buffer.shape[1]
        shape = (self.segments[index], self.lengths[index])
        return self.buffer.as_strided(shape, (span, 1), self.offsets[index])

    def segment_sums(self, row_values: Tensor) -> Tensor:
        """The float64 sum over each segment's rows of ``row_values`` (one value per row)."""
        return torch.segment_reduce(
            row_values.to(torch.float64), "sum", lengths=self.rows_per_segment, unsafe=True
        )

    def per_row(self, values: Tensor) -> Tensor:
        """One value per segment, repeated over the segment's rows, as a column."""
        rows = self.buffer.shape[0]
        return values.repeat_interleave(self.rows_per_segment, output_size=rows).unsqueeze(1)

    def unpack_(self) -> None:
        """Copy the packed values back into the tensors (rounding fp16/bf16 once)."""
        torch._foreach_copy_(self.tensors, self.views)


@functools.lru_cache(maxsize=64)
def _row_length(segments: tuple[int, ...], lengths: tuple[int, ...]) -> int:
    """The longest of ``_ROW_LENGTHS`` whose padding adds at most an eighth to the elements of
    segments of these lengths (``segments[i]`` segments of ``lengths[i]`` elements)."""
    total = sum(s * m for s, m in zip(segments, lengths, strict=True))
    for row_length in _ROW_LENGTHS:
        padded = sum(s * -(-m // row_length) for s, m in zip(segments, lengths, strict=True))
        if 8 * padded * row_length <= 9 * total:
            return row_length
    return 1


def _packed_strides(t: Tensor, segments: int, span: int) -> tuple[int, ...]:
    """The strides of ``t``'s copy in the packed matrix: ``t``'s own if its elements fill a
    dense block of memory (with dim 0 outermost when it is split into segments), else
    contiguous ones; with ``span`` between segments."""
    strides = tuple(t.stride())
    dense = is_dense_layout(t.shape, strides)
    if segments == 1:
        return strides if dense else _contiguous_strides(t.shape)
    if dense and strides[0] == t.numel() // segments:  # dim 0 outermost in memory
        return (span, *strides[1:])
    return (span, *_contiguous_strides(t.shape[1:]))


def is_dense_layout(shape: Sequence[int], strides: Sequence[int]) -> bool:
    """Whether the elements of a tensor of this shape and these strides fill a dense block of
    memory (in some order of the dims): no gaps, no overlaps."""
    expected = 1
    for size, stride in sorted(zip(shape, strides, strict=True), key=lambda pair: pair[1]):
        if size == 1:
            continue
        if stride != expected:
            return False
        expected *= size
    return True


def _contiguous_strides(shape: Sequence[int]) -> tuple[int, ...]:
    strides: list[int] = []
    step = 1
    for size in reversed(shape):
        strides.append(step)
        step *= max(size, 1)
    return tuple(reversed(strides))


def _standardize_packed_(packed: _Packed, eps: float) -> None:
    """Z-score every segment of ``packed`` in place, with the statistics of
    :func:`_standardize_one_`: sums, centring, norms, division (four passes over the matrix).

    Row sums and row norms are taken in the working dtype over at most 4096 elements each, and
    summed per segment in float64, so the statistics are as accurate as the per-tensor ones.
    A segment whose sum or norm overflows the working dtype, or whose std cannot be resolved
    next to ``eps``, is rescued as on the CPU: its tensor is rescaled by powers of two (see
    :func:`_rescaled_denominator_`), which reads one flag back to the host per call.
    """
    buffer = packed.buffer
    dtype = buffer.dtype
    sums = packed.segment_sums(buffer.sum(dim=1))
    # A sum that overflows the working dtype is not subtracted: its tensor is rescued below.
    centred = torch.isfinite(sums.to(dtype))
    buffer.sub_(packed.per_row(torch.where(centred, sums / packed.counts, 0).to(dtype)))
    packed.zero_padding_()  # the padding became -mean: back to zeros before the norms
    row_norms = torch.linalg.vector_norm(buffer, dim=1).to(torch.float64)
    norms64 = packed.segment_sums(row_norms.square_()).sqrt_()  # fp64: no square overflows
    norms = norms64.to(dtype)  # inf where the norm overflows the working dtype: rescued
    denominators = (norms64 / packed.counts.sqrt() + eps).to(dtype)
    rescue = _needs_rescue(centred, norms, denominators)
    if rescue.any():
        flags = rescue.tolist()
        first = 0
        for index, segments in enumerate(packed.segments):
            if any(flags[first : first + segments]):
                rescued = _rescaled_denominator_(packed.block(index), (1,), eps)
                denominators[first : first + segments] = rescued.view(-1)
            first += segments
    buffer.div_(packed.per_row(denominators.clamp_min_(torch.finfo(dtype).tiny)))


def _standardize_one_(t: Tensor, dims: tuple[int, ...] | None, eps: float) -> None:
    """Z-score one fp32/fp64 tensor in place (per channel along ``dims``, or whole if
    ``None``), with the statistics of :func:`_standardize_packed_`. Its passes run back to
    back, so a tensor that fits in the CPU's cache is read from memory once. Meant for CPU
    tensors: the whole-tensor statistics are read back as Python numbers (no cost on a CPU),
    which keeps the number of small ops per tensor low."""
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
