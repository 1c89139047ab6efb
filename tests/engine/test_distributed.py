"""Two gloo processes under torchrun take identical steps (DDP averages, then ZNorm)."""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap

import torch

from medseg.engine import load_checkpoint
from medseg.runs import RunFolder

SCRIPT = textwrap.dedent('''
    import sys
    from pathlib import Path

    import torch

    from medseg.config import load_config
    from medseg.engine import TrainCallback, train

    class DumpWeights(TrainCallback):
        def on_epoch_end(self, info):
            weights = {name: p.detach().clone() for name, p in info.model.named_parameters()}
            torch.save(weights, Path(sys.argv[2]) / f"rank{info.rank}.pt")

    train(load_config(sys.argv[1]), callbacks=[DumpWeights()])
''')


def test_two_cpu_ranks_end_with_identical_weights(tiny_lgg, tmp_path, lgg_settings, write_config):
    run_dir = tmp_path / "run"
    settings = lgg_settings(tiny_lgg, run_dir, epochs=1, batch_size=2, max_steps_per_epoch=2)
    config = write_config(settings, tmp_path / "ddp.yaml")
    script = tmp_path / "ddp_train.py"
    script.write_text(SCRIPT)
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONUNBUFFERED": "1"}
    done = subprocess.run(
        [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", "2",
         str(script), str(config), str(tmp_path)],
        env=env, capture_output=True, text=True, timeout=300,
    )
    assert done.returncode == 0, done.stderr[-3000:]

    rank0 = torch.load(tmp_path / "rank0.pt", weights_only=True)
    rank1 = torch.load(tmp_path / "rank1.pt", weights_only=True)
    assert rank0.keys() == rank1.keys()
    for name in rank0:
        assert torch.equal(rank0[name], rank1[name]), name
    saved = load_checkpoint(run_dir / "last.pt")
    assert saved["global_step"] == 2 and saved["world_size"] == 2 and len(saved["rng"]) == 2
    for name, tensor in rank0.items():
        assert torch.equal(saved["model"][name], tensor), name
    # rank 0 alone writes: one TensorBoard file, one epoch line
    assert len(RunFolder(run_dir).tensorboard_events()) == 1
    assert done.stderr.count("epoch 1/1  train_loss") == 1
    # rank 0 alone held the run folder's lock (rank 1 would have been refused) and removed it
    assert not (run_dir / ".medseg.lock").exists()
