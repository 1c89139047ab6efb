"""Training progress on stderr: a tqdm bar per epoch on a terminal, plain lines otherwise.

Only rank 0 reports; other ranks get a silent reporter.
"""

from __future__ import annotations

import sys
from typing import TextIO

from tqdm import tqdm


class Progress:
    """Reports steps and epochs of a run.

    Args:
        enabled: False makes every method a no-op (ranks other than 0).
        log_every: without a terminal, print a step line every ``log_every`` steps.
        stream: where to write (default: stderr).
    """

    def __init__(self, *, enabled: bool, log_every: int, stream: TextIO | None = None) -> None:
        self.enabled = enabled
        self.log_every = log_every
        self.stream = stream or sys.stderr
        self.interactive = enabled and self.stream.isatty()
        self._bar: tqdm | None = None
        self._label = ""

    def start_epoch(self, epoch: int, epochs: int, steps: int) -> None:
        self._label = f"epoch {epoch}/{epochs}"
        if self.interactive:
            self._bar = tqdm(total=steps, desc=self._label, unit="step", leave=False, file=self.stream)

    def step(self, step_in_epoch: int, steps: int, loss: float, lr: float, images_per_s: float) -> None:
        if not self.enabled:
            return
        if self._bar is not None:
            self._bar.set_postfix(loss=f"{loss:.4f}", img_s=f"{images_per_s:.1f}", refresh=False)
            self._bar.update(1)
        elif step_in_epoch % self.log_every == 0 or step_in_epoch == steps:
            self.message(
                f"{self._label} step {step_in_epoch}/{steps}  loss {loss:.4f}  lr {lr:.2e}  "
                f"{images_per_s:.1f} img/s"
            )

    def end_epoch(self, summary: str) -> None:
        if self._bar is not None:
            self._bar.close()
            self._bar = None
        self.message(summary)

    def message(self, text: str) -> None:
        if not self.enabled:
            return
        if self._bar is not None:
            self._bar.write(text, file=self.stream)
        else:
            print(text, file=self.stream, flush=True)
