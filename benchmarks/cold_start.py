"""Cold starts of the ``medseg`` command (issue #16, item 2), each in a fresh interpreter.

Times, over interleaved rounds (median wall seconds):

- ``medseg --help`` (target: instant; it imports neither torch nor MONAI);
- ``import medseg.engine`` (the package: its names load on first use);
- ``from medseg.engine import train`` (what ``medseg train`` imports before it reads data);
- ``medseg predict CHECKPOINT IMAGE`` of one slice end to end on the CPU (target <= 5 s on
  2 cores): start-up, imports, model load, prediction, the two PNGs written.

Then runs the predict command once more under ``python -X importtime`` and prints the 10
slowest imports (self time) and the 10 packages that cost the most (self times summed per
top-level package), and which of the heavy optional packages are on that path.

The checkpoint is a trained segmentation ``best.pt`` (default ``models/demo_lgg/best.pt``:
``medseg demo-data lgg demo_data/lgg && medseg train configs/demo_lgg.yaml`` writes it); the
image is an RGB slice (default: the first slice of ``demo_data/lgg``).

Usage:
    python benchmarks/cold_start.py
    python benchmarks/cold_start.py --rounds 3 --checkpoint runs/x/best.pt --image slice.tif
"""

from __future__ import annotations

import argparse
import os
import re
import statistics
import subprocess
import sys
import tempfile
import time
from collections import defaultdict
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
DEFAULT_CHECKPOINT = REPO / "models" / "demo_lgg" / "best.pt"
DEFAULT_DATA = REPO / "demo_data" / "lgg"
#: optional packages worth knowing about on the predict path
WATCHED = ("monai", "monai.apps", "matplotlib", "tensorboard", "highdicom", "pydicom", "skimage",
           "pandas", "h5py", "torchvision", "timm", "scipy", "segmentation_models_pytorch")
_LINE = re.compile(r"import time:\s+(\d+) \|\s+(\d+) \|( *)(\S.*)$")


def first_slice(root: Path) -> Path | None:
    """The first RGB slice (not a mask) under ``root``, in sorted order."""
    slices = sorted(p for p in root.rglob("*.tif") if not p.stem.endswith("_mask"))
    return slices[0] if slices else None


def commands(checkpoint: Path, image: Path) -> dict[str, list[str]]:
    """Label -> argv (``{out}`` is replaced by a fresh output folder per run)."""
    python = sys.executable
    return {
        "medseg --help": [python, "-m", "medseg", "--help"],
        "import medseg.engine": [python, "-c", "import medseg.engine"],
        "from medseg.engine import train": [python, "-c", "from medseg.engine import train"],
        "medseg predict (1 slice, cpu)": [python, "-m", "medseg", "predict", str(checkpoint),
                                          str(image), "--out", "{out}", "--device", "cpu"],
    }


def run_once(argv: list[str], out: Path, env: dict[str, str]) -> float:
    """Wall seconds of one run of ``argv``; raises SystemExit with its output if it fails."""
    argv = [str(out) if arg == "{out}" else arg for arg in argv]
    start = time.perf_counter()
    done = subprocess.run(argv, cwd=REPO, env=env, capture_output=True, text=True, check=False)
    seconds = time.perf_counter() - start
    if done.returncode != 0:
        raise SystemExit(f"cold_start: {' '.join(argv)} failed (exit {done.returncode}):\n"
                         f"{done.stdout}{done.stderr}")
    return seconds


def import_times(argv: list[str], out: Path, env: dict[str, str]) -> list[tuple[str, int, int, int]]:
    """(module, self us, cumulative us, depth) of every import of one run under -X importtime."""
    argv = [str(out) if arg == "{out}" else arg for arg in argv]
    argv = [argv[0], "-X", "importtime", *argv[1:]]
    done = subprocess.run(argv, cwd=REPO, env=env, capture_output=True, text=True, check=False)
    if done.returncode != 0:
        raise SystemExit(f"cold_start: {' '.join(argv)} failed:\n{done.stderr[-3000:]}")
    rows = []
    for line in done.stderr.splitlines():
        match = _LINE.match(line)
        if match:
            rows.append((match.group(4).strip(), int(match.group(1)), int(match.group(2)),
                         len(match.group(3)) // 2))
    return rows


def report_imports(rows: list[tuple[str, int, int, int]], top: int) -> None:
    total = sum(row[1] for row in rows)
    print(f"\n## -X importtime of medseg predict: {len(rows)} modules, {total / 1e6:.2f} s of imports "
          "(self times summed; -X importtime slows imports down)\n")
    print(f"| {top} slowest imports (self) | self s | cumulative s |\n|---|---|---|")
    for name, self_us, cumulative_us, _ in sorted(rows, key=lambda row: -row[1])[:top]:
        print(f"| {name} | {self_us / 1e6:.3f} | {cumulative_us / 1e6:.3f} |")
    per_package: dict[str, int] = defaultdict(int)
    for name, self_us, _, _ in rows:
        per_package[name.split(".")[0]] += self_us
    print(f"\n| {top} costliest packages (self times summed) | s | share |\n|---|---|---|")
    for package, us in sorted(per_package.items(), key=lambda item: -item[1])[:top]:
        print(f"| {package} | {us / 1e6:.3f} | {us / total:.0%} |")
    loaded = {name for name, *_ in rows}

    def on_path(package: str) -> bool:  # a package's own line can be missing (import cycles)
        return any(name == package or name.startswith(package + ".") for name in loaded)

    present = [w for w in WATCHED if on_path(w)]
    absent = [w for w in WATCHED if not on_path(w)]
    print(f"\non the predict path: {', '.join(present) or 'none of them'}")
    print(f"not on it: {', '.join(absent) or 'none of them'}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--checkpoint", type=Path, default=DEFAULT_CHECKPOINT,
                        help=f"segmentation best.pt (default {DEFAULT_CHECKPOINT.relative_to(REPO)})")
    parser.add_argument("--image", type=Path, default=None,
                        help=f"an RGB slice (default: the first under {DEFAULT_DATA.relative_to(REPO)})")
    parser.add_argument("--rounds", type=int, default=5, help="interleaved rounds (default 5)")
    parser.add_argument("--top", type=int, default=10, help="imports listed (default 10)")
    parser.add_argument("--quick", action="store_true", help="2 rounds")
    args = parser.parse_args()
    checkpoint = args.checkpoint.resolve()
    if not checkpoint.is_file():
        parser.exit(2, f"cold_start: checkpoint {checkpoint} not found: pass --checkpoint, or train the "
                       "demo model (medseg demo-data lgg demo_data/lgg && medseg train "
                       "configs/demo_lgg.yaml)\n")
    image = args.image.resolve() if args.image else first_slice(DEFAULT_DATA)
    if image is None or not image.is_file():
        parser.exit(2, f"cold_start: image {image or DEFAULT_DATA} not found: pass --image, or write "
                       "the demo data (medseg demo-data lgg demo_data/lgg)\n")
    rounds = 2 if args.quick else args.rounds
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    env.pop("PYTHONPROFILEIMPORTTIME", None)
    argvs = commands(checkpoint, image)

    times: dict[str, list[float]] = {label: [] for label in argvs}
    with tempfile.TemporaryDirectory(prefix="medseg_cold_") as tmp:
        outs = (Path(tmp) / f"out{k}" for k in range(10**6))
        for _ in range(rounds):
            for label, argv in argvs.items():
                times[label].append(run_once(argv, next(outs), env))
        rows = import_times(argvs["medseg predict (1 slice, cpu)"], next(outs), env)

    load = os.getloadavg()[0] if hasattr(os, "getloadavg") else float("nan")
    print(f"# cold starts: {rounds} interleaved rounds, {os.cpu_count()} CPUs, load average "
          f"{load:.2f} at the end; python {sys.version.split()[0]}\n")
    print(f"checkpoint {checkpoint}\nimage {image}\n")
    print("| command | median s | min s | max s |\n|---|---|---|---|")
    for label, values in times.items():
        print(f"| {label} | {statistics.median(values):.2f} | {min(values):.2f} | {max(values):.2f} |")
    report_imports(rows, args.top)


if __name__ == "__main__":
    main()
