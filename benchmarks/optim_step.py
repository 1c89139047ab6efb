"""Time one optimizer step on the parameters of smp ``Unet("resnet50")`` (32.5M) with random
gradients: foreach Adam, Adam + ZNorm, Adam + Gradient Centralization, and ``znorm_`` /
``centralize_`` alone against the naive allocate-per-tensor loops (on CUDA also fused Adam).

Every case is timed with ``torch.utils.benchmark.Timer.blocked_autorange``; rounds are
interleaved (every case once per round) and the figure is the median over rounds of each
round's median, so drift in the machine's speed affects all cases alike. Prints the ratios and
whether each target is met.

Usage:
    .venv/bin/python benchmarks/optim_step.py                 # full run, CPU (about 1 min)
    .venv/bin/python benchmarks/optim_step.py --device cuda
    .venv/bin/python benchmarks/optim_step.py --quick         # smoke run on a small Unet
"""

from __future__ import annotations

import argparse
import statistics
from collections.abc import Callable

import segmentation_models_pytorch as smp
import torch
from torch.utils.benchmark import Timer

from medseg.optim import GradCentralization, ZNorm, centralize_, functional, znorm_

EPS = 1e-8
# (case, reference, bound, kind): "ratio" targets need case / reference <= bound,
# "speedup" targets need reference / case >= bound.
TARGETS = [
    ("adam + znorm (tensor)", "adam (foreach)", 1.15, "ratio"),
    ("adam + gc", "adam (foreach)", 1.15, "ratio"),
    ("znorm_ (tensor)", "naive znorm loop", 2.0, "speedup"),
    ("centralize_", "naive gc loop", 2.0, "speedup"),
]


def naive_znorm(params: list[torch.nn.Parameter]) -> None:
    """The allocate-per-tensor loop a first implementation would write."""
    for p in params:
        g = p.grad
        if g is not None and g.ndim >= 2:
            p.grad = (g - g.mean()) / (g.std(unbiased=False) + EPS)


def naive_centralize(params: list[torch.nn.Parameter]) -> None:
    """Gradient Centralization as the paper's code writes it (a new tensor per gradient)."""
    for p in params:
        g = p.grad
        if g is not None and g.ndim > 1:
            p.grad = g - g.mean(dim=tuple(range(1, g.ndim)), keepdim=True)


def multi_tensor_znorm(grads: list[torch.Tensor]) -> None:
    """``znorm_`` through its multi-tensor implementation (the one used off the CPU)."""
    blocked = functional._BLOCKED_DEVICE_TYPES
    functional._BLOCKED_DEVICE_TYPES = ()
    try:
        znorm_(grads)
    finally:
        functional._BLOCKED_DEVICE_TYPES = blocked


def make_params(encoder: str, device: torch.device) -> list[torch.nn.Parameter]:
    model = smp.Unet(encoder, encoder_weights=None).to(device)
    params = list(model.parameters())
    generator = torch.Generator(device).manual_seed(0)
    for p in params:
        p.grad = torch.randn(p.shape, device=device, generator=generator)
    return params


def time_ms(
    cases: dict[str, Callable[[], None]], device: torch.device, rounds: int, min_run_time: float
) -> dict[str, float]:
    """Median over ``rounds`` interleaved rounds of each case's blocked_autorange median, ms.
    One untimed warmup round first."""

    def run_all(record: dict[str, list[float]] | None) -> None:
        for name, fn in cases.items():
            stmt = "fn(); torch.cuda.synchronize()" if device.type == "cuda" else "fn()"
            timer = Timer(stmt, globals={"fn": fn, "torch": torch},
                          num_threads=torch.get_num_threads())
            measurement = timer.blocked_autorange(min_run_time=min_run_time)
            if record is not None:
                record[name].append(measurement.median * 1e3)

    run_all(None)
    times: dict[str, list[float]] = {name: [] for name in cases}
    for _ in range(rounds):
        run_all(times)
    return {name: statistics.median(samples) for name, samples in times.items()}


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--device", choices=("cpu", "cuda"), default="cpu")
    parser.add_argument("--quick", action="store_true", help="small Unet, 2 short rounds")
    parser.add_argument("--rounds", type=int, default=7)
    parser.add_argument("--min-run-time", type=float, default=0.3,
                        help="seconds per case per round (blocked_autorange)")
    args = parser.parse_args(argv)
    device = torch.device(args.device)
    encoder, rounds, min_run_time = (
        ("resnet18", 2, 0.05) if args.quick else ("resnet50", args.rounds, args.min_run_time)
    )

    params = make_params(encoder, device)
    grads = [p.grad for p in params]

    def restore(fn: Callable[[], None]) -> Callable[[], None]:
        """``fn``, after which the naive loops' new ``.grad`` tensors are swapped back."""

        def run() -> None:
            fn()
            for p, g in zip(params, grads, strict=True):
                p.grad = g

        return run

    def adam(**kwargs: bool) -> torch.optim.Adam:
        return torch.optim.Adam(params, lr=1e-5, **kwargs)

    cases: dict[str, Callable[[], None]] = {
        "adam (foreach)": adam(foreach=True).step,
        "adam + znorm (tensor)": ZNorm(adam(foreach=True)).step,
        "adam + znorm (channel)": ZNorm(adam(foreach=True), granularity="channel").step,
        "adam + gc": GradCentralization(adam(foreach=True)).step,
        "znorm_ (tensor)": lambda: znorm_(grads),
        "znorm_ (channel)": lambda: znorm_(grads, granularity="channel"),
        "znorm_ (multi-tensor impl.)": lambda: multi_tensor_znorm(grads),
        "naive znorm loop": restore(lambda: naive_znorm(params)),
        "centralize_": lambda: centralize_(grads),
        "naive gc loop": restore(lambda: naive_centralize(params)),
    }
    if device.type == "cuda":
        cases["adam (fused)"] = adam(fused=True).step
        cases["adam (fused) + znorm (tensor)"] = ZNorm(adam(fused=True)).step

    print(
        f"{encoder} Unet: {sum(p.numel() for p in params) / 1e6:.1f}M params in {len(params)} "
        f"tensors; torch {torch.__version__}, {device.type}, {torch.get_num_threads()} threads; "
        f"median of {rounds} interleaved rounds of blocked_autorange "
        f"(min_run_time {min_run_time} s)"
    )
    results = time_ms(cases, device, rounds, min_run_time)
    reference = results["adam (foreach)"]
    print(f"| {'step':<30} | {'ms':>9} | {'x adam':>7} |")
    print(f"|{'-' * 32}|{'-' * 11}|{'-' * 9}|")
    for name, ms in results.items():
        print(f"| {name:<30} | {ms:9.2f} | {ms / reference:7.2f} |")
    for case, ref, bound, kind in TARGETS:
        if kind == "ratio":
            value = results[case] / results[ref]
            met = value <= bound
            text = f"{case} / {ref} = {value:.2f}x (target <= {bound}x)"
        else:
            value = results[ref] / results[case]
            met = value >= bound
            text = f"{case} is {value:.1f}x faster than {ref} (target >= {bound}x)"
        print(f"{text}: {'met' if met else 'MISSED'}")


if __name__ == "__main__":
    main()
