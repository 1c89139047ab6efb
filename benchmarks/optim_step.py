"""Time one optimizer step on the parameters of smp ``Unet("resnet50")`` (32.5M) with random
gradients: Adam alone, Adam + ZNorm, ``znorm_`` alone, a naive per-tensor ZNorm loop and
Adam + Gradient Centralization (on CUDA also fused Adam). Prints medians after warmup.

Usage:
    .venv/bin/python benchmarks/optim_step.py                 # full run, CPU (< 2 min, 2 cores)
    .venv/bin/python benchmarks/optim_step.py --device cuda
    .venv/bin/python benchmarks/optim_step.py --quick         # smoke run on a small Unet
"""

from __future__ import annotations

import argparse
import statistics
import time
from collections.abc import Callable

import segmentation_models_pytorch as smp
import torch

from medseg.optim import GradCentralization, ZNorm, centralize_, znorm_

EPS = 1e-8


def naive_znorm(params: list[torch.nn.Parameter]) -> None:
    """The allocate-per-tensor loop a first implementation would write."""
    for p in params:
        g = p.grad
        if g is not None and g.ndim >= 2:
            p.grad = (g - g.mean()) / (g.std(unbiased=False) + EPS)


def make_params(encoder: str, device: torch.device) -> list[torch.nn.Parameter]:
    model = smp.Unet(encoder, encoder_weights=None).to(device)
    params = list(model.parameters())
    generator = torch.Generator(device).manual_seed(0)
    for p in params:
        p.grad = torch.randn(p.shape, device=device, generator=generator)
    return params


def time_ms(
    cases: dict[str, Callable[[], None]],
    reset: Callable[[], None],
    device: torch.device,
    warmup: int,
    repeats: int,
) -> dict[str, list[float]]:
    """Wall times in ms of every case, each run after ``reset`` (untimed) restores the
    gradients. Rounds are interleaved (every case once per round) so that drift in the
    machine's speed affects all cases alike."""
    times: dict[str, list[float]] = {name: [] for name in cases}
    for i in range(warmup + repeats):
        for name, run in cases.items():
            reset()
            if device.type == "cuda":
                torch.cuda.synchronize(device)
            start = time.perf_counter()
            run()
            if device.type == "cuda":
                torch.cuda.synchronize(device)
            if i >= warmup:
                times[name].append((time.perf_counter() - start) * 1e3)
    return times


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--device", choices=("cpu", "cuda"), default="cpu")
    parser.add_argument("--quick", action="store_true", help="small Unet, 1 warmup, 2 repeats")
    parser.add_argument("--repeats", type=int, default=15)
    parser.add_argument("--warmup", type=int, default=3)
    args = parser.parse_args(argv)
    device = torch.device(args.device)
    encoder, warmup, repeats = (
        ("resnet18", 1, 2) if args.quick else ("resnet50", args.warmup, args.repeats)
    )

    params = make_params(encoder, device)
    saved = [p.grad.clone() for p in params]
    grads = [p.grad for p in params]

    def reset() -> None:
        for p, g in zip(params, grads, strict=True):
            p.grad = g  # the naive loop rebinds .grad
        torch._foreach_copy_(grads, saved)

    def adam(**kwargs: bool) -> torch.optim.Adam:
        return torch.optim.Adam(params, lr=1e-5, **kwargs)

    cases: dict[str, Callable[[], None]] = {
        "adam (foreach)": adam(foreach=True).step,
        "adam + znorm (tensor)": ZNorm(adam(foreach=True)).step,
        "adam + znorm (channel)": ZNorm(adam(foreach=True), granularity="channel").step,
        "znorm_ alone (tensor)": lambda: znorm_(grads),
        "znorm_ alone (channel)": lambda: znorm_(grads, granularity="channel"),
        "naive znorm loop": lambda: naive_znorm(params),
        "adam + gc": GradCentralization(adam(foreach=True)).step,
        "centralize_ alone": lambda: centralize_(grads),
    }
    if device.type == "cuda":
        cases["adam (fused)"] = adam(fused=True).step
        cases["adam (fused) + znorm (tensor)"] = ZNorm(adam(fused=True)).step

    print(
        f"{encoder} Unet: {sum(p.numel() for p in params) / 1e6:.1f}M params in {len(params)} "
        f"tensors; torch {torch.__version__}, {device.type}, {torch.get_num_threads()} threads; "
        f"median of {repeats} interleaved rounds after {warmup} warmup"
    )
    times = time_ms(cases, reset, device, warmup, repeats)
    results = {name: statistics.median(samples) for name, samples in times.items()}
    reference = results["adam (foreach)"]
    print(f"| {'step':<30} | {'ms':>9} | {'x adam':>7} |")
    print(f"|{'-' * 32}|{'-' * 11}|{'-' * 9}|")
    for name, ms in results.items():
        print(f"| {name:<30} | {ms:9.2f} | {ms / reference:7.2f} |")
    naive = results["naive znorm loop"]
    print(
        f"znorm_ (tensor) is {naive / results['znorm_ alone (tensor)']:.1f}x faster than the naive loop"
    )


if __name__ == "__main__":
    main()
