"""Progress: a bar on a terminal, plain lines in logs, silence on ranks other than 0."""

from __future__ import annotations

import io

from medseg.engine.progress import Progress


class Terminal(io.StringIO):
    def isatty(self) -> bool:
        return True


def _run_epoch(progress: Progress) -> None:
    progress.start_epoch(1, 3, steps=5)
    for step in range(1, 6):
        progress.step(step, 5, loss=0.5, lr=1e-3, images_per_s=10.0)
    progress.end_epoch("epoch 1/3 done")


def test_plain_lines_every_log_every_steps_and_at_the_end():
    stream = io.StringIO()
    _run_epoch(Progress(enabled=True, log_every=2, stream=stream))
    assert stream.getvalue().splitlines() == [
        "epoch 1/3 step 2/5  loss 0.5000  lr 1.00e-03  10.0 img/s",
        "epoch 1/3 step 4/5  loss 0.5000  lr 1.00e-03  10.0 img/s",
        "epoch 1/3 step 5/5  loss 0.5000  lr 1.00e-03  10.0 img/s",
        "epoch 1/3 done",
    ]


def test_a_terminal_gets_a_progress_bar():
    stream = Terminal()
    _run_epoch(Progress(enabled=True, log_every=2, stream=stream))
    text = stream.getvalue()
    assert "\repoch 1/3:" in text and "/5 [" in text  # tqdm redraws in place
    assert "step 2/5" not in text  # the bar replaces the log lines
    assert text.rstrip().endswith("epoch 1/3 done")


def test_other_ranks_stay_silent():
    stream = Terminal()
    _run_epoch(Progress(enabled=False, log_every=1, stream=stream))
    assert stream.getvalue() == ""
