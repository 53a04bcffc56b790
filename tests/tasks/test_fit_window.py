"""fit-window (Sec. VII-A): Eq. (34) frequency estimate and the learned θ against a grid search."""

import numpy as np
import pytest
import torch
from conftest import run_alone_and_under_torchrun

from dstft_cli.synth import variable_period_sines
from dstft_cli.tasks.fit_window import (
    DatasetLoss,
    FitConfig,
    FrequencyExample,
    fit_window_length,
    frequency_estimate,
    loss_curve,
)

SR = 2000.0


def _examples(n=4, snr=20, seed=1):
    data = variable_period_sines(n_signals=n, duration=0.5, sample_rate=SR, seed=seed, snr_db=snr)
    t = np.arange(data[0][0].shape[0]) / SR
    return [FrequencyExample(s, SR, t, f, f"s{j}") for j, (s, f) in enumerate(data)]


def test_frequency_estimate_is_the_weighted_mean_bin():
    mag = torch.zeros(5, 2, dtype=torch.float64)
    mag[1, 0], mag[3, 0] = 1.0, 3.0  # mean bin (1 + 9) / 4 = 2.5
    est = frequency_estimate(mag, sample_rate=800.0, n_fft=8)  # Δf = 100 Hz
    torch.testing.assert_close(est, torch.tensor([250.0, 0.0], dtype=torch.float64))


def test_fit_lands_at_the_grid_optimum_of_its_own_loss():
    """Tolerance: the loss is continuous and unimodal near its minimum (checked on the grid), so
    the exact minimiser lies within one grid step h of the best grid point; Adam must land there
    and reach a loss no higher than the best grid value. On a fine grid (step h/40) around that
    point the fit must be within 2 fine steps of the fine optimum (the Adam step ends at 1 % of
    n_fft/32 = 0.04 samples, far below that)."""
    ex = _examples()
    cfg = FitConfig(n_fft=128, hop_length=16, grid_points=25, iters=80)
    r = fit_window_length(ex, cfg)
    h = r.grid_lengths[1] - r.grid_lengths[0]
    k = int(np.argmin(r.grid_losses))
    assert 0 < k < len(r.grid_losses) - 1, "the test data must have an interior optimum"
    assert abs(r.window_length - r.grid_optimum) <= h
    assert r.loss <= r.grid_losses.min() * (1 + 1e-9)
    loss = DatasetLoss(ex, cfg)
    fine = np.linspace(r.grid_optimum - h, r.grid_optimum + h, 81)
    fine_losses = loss_curve(loss, fine)
    assert abs(r.window_length - fine[np.argmin(fine_losses)]) <= 2 * (fine[1] - fine[0])
    assert r.loss < r.loss_initial
    assert len(r.loss_history) == len(r.theta_history) == r.iterations + 1


def test_dataset_loss_batches_mixed_lengths_like_one_by_one():
    ex = _examples(n=2)
    short = FrequencyExample(ex[1].signal[:600], SR, ex[1].truth_times, ex[1].truth_freq)
    cfg = FitConfig(n_fft=64, hop_length=16)
    both = float(DatasetLoss([ex[0], short], cfg)(20.0))
    one = float(DatasetLoss([ex[0]], cfg)(20.0))
    two = float(DatasetLoss([short], cfg)(20.0))
    assert both == pytest.approx((one + two) / 2, rel=1e-12)


@pytest.mark.parametrize("kwargs, match", [({"n_fft": 5}, "n_fft"), ({"init_length": 1e4}, "init_length"),
                                           ({"min_length": 0}, "min_length")])
def test_fit_config_rejects(kwargs, match):
    with pytest.raises(ValueError, match=match):
        FitConfig(**kwargs)


def test_dataset_loss_rejects_short_signals():
    with pytest.raises(ValueError, match="shorter than n_fft"):
        DatasetLoss([FrequencyExample(np.ones(10), SR, np.arange(2.0), np.ones(2))], FitConfig(n_fft=64))


@pytest.mark.slow
@pytest.mark.parametrize("count", [5, 1])
def test_fit_window_under_torchrun_matches_one_process(tmp_path, count):
    """2 gloo processes, each with its shard of the signals (5: 3 + 2; 1: rank 1 has none), follow
    one process's θ and loss at every iteration and its loss curve; rank 0 alone writes.
    Tolerance: float64 sums of the shares instead of one sum over the signals."""
    import csv
    import json

    args = ["fit-window", "--generate", str(count), "--duration", "0.5", "--sample-rate", "2000",
            "--n-fft", "128", "--hop", "16", "--iters", "30", "--grid-points", "9", "--seed", "1",
            "--no-plots", "-q"]
    one_dir, two_dir = run_alone_and_under_torchrun(args, tmp_path)

    def read(folder):
        def table(name):
            with open(folder / "fit_window" / name) as fh:
                return [[float(v) for v in row.values()] for row in csv.DictReader(fh)]
        files = sorted(str(p.relative_to(folder)) for p in folder.rglob("*"))
        return (json.loads((folder / "fit_window" / "params.json").read_text()),
                table("loss_history.csv"), table("loss_curve.csv"), files)

    (p1, h1, c1, f1), (p2, h2, c2, f2) = read(one_dir), read(two_dir)
    assert p1["world_size"] == 1 and p2["world_size"] == 2
    assert p1["n_signals"] == p2["n_signals"] == count
    assert f2 == f1  # rank 1 wrote nothing: no second result, part or temporary folder
    assert len(h1) == len(h2) > 5 and h1[-1][1] != h1[0][1]  # θ moved
    np.testing.assert_allclose(h2, h1, rtol=1e-9)
    np.testing.assert_allclose(c2, c1, rtol=1e-9)
    assert p2["window_length"] == pytest.approx(p1["window_length"], rel=1e-9)
    assert p2["iterations"] == p1["iterations"] and p2["converged"] == p1["converged"]


_GRADIENT_SCRIPT = """
import sys
import numpy as np
import torch
from dstft_cli.synth import variable_period_sines
from dstft_cli.tasks.distributed import data_parallel, joined_process_group
from dstft_cli.tasks.fit_window import FitConfig, FrequencyExample, _LossShare

with joined_process_group("cpu") as (world, rank, _):
    data = variable_period_sines(n_signals=3, duration=0.5, sample_rate=2000.0, seed=1, snr_db=20)
    t = np.arange(data[0][0].shape[0]) / 2000.0
    examples = [FrequencyExample(s, 2000.0, t, f) for s, f in data]
    out = {}
    for count in (3, 1):  # shards of 2 + 1, then 1 + none
        share = _LossShare(examples[:count][rank::world], count, FitConfig(n_fft=128, hop_length=16),
                           world, "cpu")
        wrapped = data_parallel(share)  # alive until backward: its hooks all-reduce the gradient
        scaled, _ = wrapped()
        scaled.backward()
        out[count] = share.theta.grad.clone()
    torch.save(out, f"{sys.argv[1]}/rank{rank}.pt")
"""


@pytest.mark.slow
def test_shard_gradients_average_to_the_data_set_gradient(tmp_path):
    """Under DDP (2 gloo processes) θ's averaged gradient is dL/dθ of the whole data set (Eq. 33
    through DatasetLoss in this process), also when a process has no signal, and the same on
    both processes. Tolerance: float64 sums in another order."""
    import os
    import subprocess
    import sys

    script = tmp_path / "grads.py"
    script.write_text(_GRADIENT_SCRIPT)
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONWARNINGS": "ignore"}
    run = subprocess.run([sys.executable, "-m", "torch.distributed.run", "--standalone",
                          "--nproc_per_node", "2", str(script), str(tmp_path)],
                         capture_output=True, text=True, env=env, timeout=900)
    assert run.returncode == 0, run.stderr
    rank0, rank1 = (torch.load(tmp_path / f"rank{r}.pt", weights_only=True) for r in (0, 1))
    examples = _examples(n=3, snr=20, seed=1)
    for count in (3, 1):
        theta = torch.tensor(FitConfig(n_fft=128).start_length, dtype=torch.float64,
                             requires_grad=True)
        DatasetLoss(examples[:count], FitConfig(n_fft=128, hop_length=16))(theta).backward()
        assert torch.equal(rank0[count], rank1[count])
        assert float(theta.grad) != 0
        torch.testing.assert_close(rank0[count], theta.grad, rtol=1e-10, atol=0)
