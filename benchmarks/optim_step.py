"""Time one optimizer step on the parameters of smp ``Unet("resnet50")`` (32.5M) with random
gradients: Adam, Adam + ZNorm, Adam + Gradient Centralization, and ``znorm_`` /
``centralize_`` alone against the naive allocate-per-tensor loops.

The wrapped steps use the Adam that ``medseg.optim.build_optimizer`` builds, fused Adam (on
the CPU and on CUDA); foreach Adam is timed too. The issue's targets compare Adam + ZNorm
with foreach Adam on the CPU and with fused Adam on CUDA; the ratio to fused Adam (ZNorm's
own cost) is printed on both. On CUDA ``znorm_`` and ``centralize_`` run their packed form
(a constant number of dispatched ops per step); on the CPU their per-tensor form, and the
packed form is timed as an extra case.

Every case is timed with ``torch.utils.benchmark.Timer.blocked_autorange``; rounds are
interleaved (every case once per round) and the figure is the median over rounds of each
round's median, so drift in the machine's speed affects all cases alike. Prints the ratios to
fused and foreach Adam and whether each target is met.

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
REFERENCE = "adam (fused)"
# (case, reference, bound, kind) per device: "ratio" targets need case / reference <= bound,
# "speedup" targets need reference / case >= bound.
TARGETS = {
    "cpu": [
        ("adam (fused) + znorm (tensor)", "adam (foreach)", 1.15, "ratio"),
        ("adam (fused) + gc", "adam (foreach)", 1.15, "ratio"),
        ("znorm_ (tensor)", "naive znorm loop", 2.0, "speedup"),
        ("centralize_", "naive gc loop", 2.0, "speedup"),
    ],
    "cuda": [
        ("adam (fused) + znorm (tensor)", "adam (fused)", 1.1, "ratio"),
        ("adam (fused) + gc", "adam (fused)", 1.1, "ratio"),
        ("znorm_ (tensor)", "naive znorm loop", 2.0, "speedup"),
        ("centralize_", "naive gc loop", 2.0, "speedup"),
    ],
}


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


def packed(transform: Callable[[], None]) -> Callable[[], None]:
    """``transform`` with ``znorm_``/``centralize_`` in their packed form (the one used on
    CUDA) on the CPU too."""

    def run() -> None:
        blocked = functional._BLOCKED_DEVICE_TYPES
        functional._BLOCKED_DEVICE_TYPES = ()
        try:
            transform()
        finally:
            functional._BLOCKED_DEVICE_TYPES = blocked

    return run


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

    def adam(fused: bool = True) -> torch.optim.Adam:
        options = {"fused": True} if fused else {"foreach": True}
        return torch.optim.Adam(params, lr=1e-5, **options)

    cases: dict[str, Callable[[], None]] = {
        REFERENCE: adam().step,
        "adam (foreach)": adam(fused=False).step,
        f"{REFERENCE} + znorm (tensor)": ZNorm(adam()).step,
        f"{REFERENCE} + znorm (channel)": ZNorm(adam(), granularity="channel").step,
        f"{REFERENCE} + gc": GradCentralization(adam()).step,
        "znorm_ (tensor)": lambda: znorm_(grads),
        "znorm_ (channel)": lambda: znorm_(grads, granularity="channel"),
        "naive znorm loop": restore(lambda: naive_znorm(params)),
        "centralize_": lambda: centralize_(grads),
        "naive gc loop": restore(lambda: naive_centralize(params)),
    }
    if device.type == "cpu":
        cases["znorm_ (tensor), packed form"] = packed(lambda: znorm_(grads))
        cases["znorm_ (channel), packed form"] = packed(
            lambda: znorm_(grads, granularity="channel")
        )
        cases["centralize_, packed form"] = packed(lambda: centralize_(grads))

    print(
        f"{encoder} Unet: {sum(p.numel() for p in params) / 1e6:.1f}M params in {len(params)} "
        f"tensors; torch {torch.__version__}, {device.type}, {torch.get_num_threads()} threads; "
        f"median of {rounds} interleaved rounds of blocked_autorange "
        f"(min_run_time {min_run_time} s); ratios to {REFERENCE}"
    )
    results = time_ms(cases, device, rounds, min_run_time)
    print(f"| {'step':<34} | {'ms':>9} | {'x adam (fused)':>14} | {'x adam (foreach)':>16} |")
    print(f"|{'-' * 36}|{'-' * 11}|{'-' * 16}|{'-' * 18}|")
    for name, ms in results.items():
        print(f"| {name:<34} | {ms:9.2f} | {ms / results[REFERENCE]:14.2f} "
              f"| {ms / results['adam (foreach)']:16.2f} |")
    for case, ref, bound, kind in TARGETS[device.type]:
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
