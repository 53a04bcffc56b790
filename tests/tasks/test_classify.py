"""train (Sec. VII-B): data discovery, split, one epoch end to end, checkpoint reload."""

import shutil
from pathlib import Path

import numpy as np
import pytest
import torch
from conftest import run_alone_and_under_torchrun

from dstft_cli.tasks.classify import (
    DatasetError,
    DigitClassifier,
    TrainConfig,
    checkpoint_payload,
    discover_dataset,
    evaluate,
    load_checkpoint,
    load_clips,
    split_indices,
    train_run,
)

ROOT = Path(__file__).resolve().parents[2]


SMALL = dict(n_fft=32, hop_length=16, clip_length=2000, epochs=1, batch_size=4, init_length=16.0)


def test_discover_from_names_and_subfolders(tmp_path, fsdd_dir):
    d = fsdd_dir
    ds = discover_dataset(d)
    assert ds.labelling == "file names"
    assert ds.classes == sorted(ds.classes, key=int)
    assert all(ds.classes[lab] == p.name.split("_")[0] for p, lab in zip(ds.paths, ds.labels, strict=False))
    by_folder = tmp_path / "folders"
    for p in ds.paths:
        (by_folder / f"digit{p.name[0]}").mkdir(parents=True, exist_ok=True)
        shutil.copy(p, by_folder / f"digit{p.name[0]}" / p.name)
    ds2 = discover_dataset(by_folder)
    assert ds2.labelling == "sub-folders" and ds2.classes[0].startswith("digit")
    assert len(ds2.paths) == len(ds.paths)


def test_discover_rejects(tmp_path):
    with pytest.raises(DatasetError, match="not a directory"):
        discover_dataset(tmp_path / "missing")
    with pytest.raises(DatasetError, match="no audio files"):
        discover_dataset(tmp_path)
    (tmp_path / "hello.wav").write_bytes(b"RIFF")
    with pytest.raises(DatasetError, match="cannot read a label"):
        discover_dataset(tmp_path)


def test_split_is_seeded_disjoint_and_complete():
    a = split_indices(100, seed=3)
    b = split_indices(100, seed=3)
    assert all(np.array_equal(x, y) for x, y in zip(a, b, strict=False))
    assert [len(x) for x in a] == [80, 10, 10]
    assert sorted(np.concatenate(a).tolist()) == list(range(100))
    assert not np.array_equal(a[2], split_indices(100, seed=4)[2])
    assert [len(x) for x in split_indices(5, 0)] == [3, 1, 1]


def test_load_clips_pads_crops_and_caches(tmp_path, fsdd_dir):
    d = fsdd_dir
    paths = sorted(d.glob("*.wav"))[:3]
    clips, sr, cached = load_clips(paths, 1500, cache_dir=tmp_path / "cache")
    assert clips.shape == (3, 1500) and clips.dtype == np.float32 and sr == 8000 and not cached
    again, _, cached = load_clips(paths, 1500, cache_dir=tmp_path / "cache")
    assert cached and np.array_equal(again, clips)
    long, _, _ = load_clips(paths[:1], 30000)
    assert np.all(long[0, 20000:] == 0)  # zero-padded at the end


def _small_set(fsdd_dir):
    """The sample clips as tensors, their data set, the seed-0 split and the small config."""
    ds = discover_dataset(fsdd_dir)
    clips, _, _ = load_clips(ds.paths, SMALL["clip_length"])
    x, y = torch.from_numpy(clips), torch.from_numpy(ds.labels)
    return ds, x, y, split_indices(len(y), seed=0), TrainConfig(**SMALL)


def test_one_epoch_learns_theta_and_checkpoint_reloads(tmp_path, fsdd_dir):
    ds, x, y, split, cfg = _small_set(fsdd_dir)
    r = train_run(x, y, split, cfg, len(ds.classes))
    assert r.name == "learnable" and r.best_epoch == 1
    assert len(r.theta_trajectory) == 1 + int(np.ceil(len(split[0]) / cfg.batch_size))
    assert r.theta_trajectory[-1][2] != 16.0  # θ moved
    assert cfg.min_length <= r.window_length <= cfg.n_fft
    for part in ("train", "val", "test"):
        assert 0 <= r.metrics[part]["accuracy"] <= 1 and np.isfinite(r.metrics[part]["loss"])
    path = tmp_path / "learnable.pt"
    torch.save(checkpoint_payload(r, cfg, ds.classes), path)
    model, payload = load_checkpoint(path)
    assert payload["classes"] == ds.classes
    assert float(model.frontend.window_length.detach()) == pytest.approx(r.window_length)
    fresh = DigitClassifier(cfg, len(ds.classes))
    fresh.load_state_dict(torch.load(path, weights_only=True)["state_dict"])
    _, acc1, p1 = evaluate(model, x, y)
    _, acc2, p2 = evaluate(fresh, x, y)
    assert torch.equal(p1, p2) and acc1 == acc2
    assert acc1 == pytest.approx(np.mean([r.metrics[s]["accuracy"] * len(i) for s, i in
                                          zip(("train", "val", "test"), split, strict=False)]) * 3 / len(y))


def test_fixed_run_keeps_theta_and_same_seed_same_result(tmp_path, fsdd_dir):
    ds, x, y, split, cfg = _small_set(fsdd_dir)
    r1 = train_run(x, y, split, cfg, len(ds.classes), fixed_length=8.0)
    r2 = train_run(x, y, split, cfg, len(ds.classes), fixed_length=8.0)
    assert r1.window_length == 8.0 and r1.name == "fixed-8"
    assert "frontend.stft.theta" in r1.state_dict
    assert r1.metrics == r2.metrics


def test_train_config_rejects():
    with pytest.raises(ValueError, match="init_length"):
        TrainConfig(n_fft=32, init_length=64.0)
    with pytest.raises(ValueError, match="clip_length"):
        TrainConfig(clip_length=10)


def test_shipped_train_config_is_valid():
    from dstft_cli.cli.train import read_train_settings

    settings = read_train_settings(str(ROOT / "configs" / "train.toml"))
    assert settings.pop("fixed_window") == [10, 20, 30, 40, 50]
    assert TrainConfig(**settings) == TrainConfig()
    # the protocol's file: the same set-up, pooled into bands, with a grid from 10 up to n_fft
    protocol = read_train_settings(str(ROOT / "configs" / "protocol.toml"))
    grid = protocol.pop("fixed_window")
    assert TrainConfig(**protocol) == TrainConfig(pooling="bands")
    assert grid[0] == 10 and grid[-1] == protocol["n_fft"] and {10, 20, 30, 40, 50} <= set(grid)


# --------------------------------------------------------------------------------------------
# the Tables II–III protocol (issue 17)


def test_fsdd_split_tests_on_recordings_0_to_4_of_every_speaker_and_digit():
    from dstft_cli.tasks.classify import fsdd_split_indices, split_for

    paths = [Path(f"{d}_{s}_{i}.wav") for d in range(10) for s in ("ann", "bob") for i in range(50)]
    tr, va, te = fsdd_split_indices(paths, seed=1)
    assert sorted(np.concatenate([tr, va, te]).tolist()) == list(range(len(paths)))
    assert {int(paths[i].stem.split("_")[2]) for i in te} == set(range(5))
    assert len(te) == 10 * 2 * 5 and len(va) == round(900 / 9)
    tr2, va2, te2 = split_for(paths, TrainConfig(split_scheme="fsdd", seed=2))
    assert np.array_equal(te, te2) and not np.array_equal(np.sort(va), np.sort(va2))
    with pytest.raises(DatasetError, match="FSDD split"):
        fsdd_split_indices([Path("a.wav"), Path("b.wav")], seed=0)
    with pytest.raises(ValueError, match="split_scheme"):
        TrainConfig(split_scheme="speaker")


def test_parse_seeds_and_default_grid():
    from dstft_cli.tasks.protocol import default_fixed_grid, parse_seeds

    assert parse_seeds("0-4") == (0, 1, 2, 3, 4)
    assert parse_seeds("7, 0-1") == (7, 0, 1)
    for bad in ("", "a", "3-1", "1,1", "-2"):
        with pytest.raises(ValueError):
            parse_seeds(bad)
    assert default_fixed_grid(TrainConfig(n_fft=128)) == (10.0, 20.0, 40.0, 80.0, 128.0)
    assert default_fixed_grid(TrainConfig(n_fft=32, init_length=16.0)) == (10.0, 20.0, 32.0)


def _run(seed, kind, theta, test_acc, val_acc, test_loss=0.5, val_loss=0.5, elapsed=10.0):
    from dstft_cli.tasks.protocol import ProtocolRun

    return ProtocolRun(seed=seed, kind=kind, window_length=theta, best_epoch=1, elapsed_s=elapsed,
                       metrics={"train": {"loss": 0.1, "accuracy": 1.0},
                                "val": {"loss": val_loss, "accuracy": val_acc},
                                "test": {"loss": test_loss, "accuracy": test_acc}})


def test_summary_picks_the_grid_window_by_validation_and_pairs_by_seed():
    from scipy import stats

    from dstft_cli.tasks.protocol import AT_LEARNED, LEARNABLE, protocol_table_markdown, summarise

    runs = []
    # fixed 20 has the best validation accuracy on every seed; fixed 40 the best test accuracy
    for seed, (a20, a40, learn) in enumerate([(0.80, 0.90, 0.84), (0.70, 0.95, 0.71),
                                             (0.75, 0.85, 0.80)]):
        runs += [_run(seed, "fixed", 20.0, a20, 0.9, elapsed=5.0),
                 _run(seed, "fixed", 40.0, a40, 0.8, elapsed=7.0),
                 _run(seed, LEARNABLE, 30.0 + seed, learn, 0.85, elapsed=20.0),
                 _run(seed, AT_LEARNED, 30.0 + seed, 0.5, 0.5)]
    s = summarise(runs)
    assert [w["window"] for w in s["windows"]] == ["fixed 20", "fixed 40", LEARNABLE, AT_LEARNED]
    w20 = s["windows"][0]
    assert w20["test_accuracy_mean"] == pytest.approx(0.75)
    assert w20["test_accuracy_sd"] == pytest.approx(np.std([0.8, 0.7, 0.75], ddof=1))
    assert [row["picked_fixed"] for row in s["per_seed"]] == [20.0, 20.0, 20.0]
    diffs = np.array([0.04, 0.01, 0.05])
    assert [row["diff_accuracy"] for row in s["per_seed"]] == pytest.approx(diffs.tolist())
    half = stats.t.ppf(0.975, 2) * diffs.std(ddof=1) / np.sqrt(3)
    paired = s["paired"]["diff_accuracy"]
    assert paired["mean"] == pytest.approx(diffs.mean())
    assert (paired["ci95_low"], paired["ci95_high"]) == pytest.approx((diffs.mean() - half,
                                                                       diffs.mean() + half))
    assert s["per_seed"][1]["grid_elapsed_s"] == 12.0 and s["per_seed"][1]["learnable_theta"] == 31.0
    md = protocol_table_markdown(s)
    assert "| fixed 20 | 3 | 75.0 ± 5.0 |" in md
    assert f"{100 * diffs.mean():+.1f} (95 % CI {100 * (diffs.mean() - half):+.1f}" in md


@pytest.mark.slow
def test_protocol_runs_every_window_per_seed_and_parallel_matches_serial(fsdd_dir):
    from dstft_cli.tasks.protocol import AT_LEARNED, LEARNABLE, run_protocol

    ds, x, y, _, cfg = _small_set(fsdd_dir)
    splits = {s: split_indices(len(y), seed=s) for s in (0, 1)}
    kwargs = dict(seeds=(0, 1), fixed_grid=(8.0, 32.0))
    serial = run_protocol(x.numpy(), y.numpy(), splits, cfg, len(ds.classes), **kwargs)
    assert sorted((r.seed, r.label) for r in serial) == sorted(
        (s, lab) for s in (0, 1) for lab in ("fixed 8", "fixed 32", LEARNABLE, AT_LEARNED))
    by = {(r.seed, r.kind): r for r in serial}
    for s in (0, 1):
        assert by[(s, AT_LEARNED)].window_length == by[(s, LEARNABLE)].window_length
    alone = train_run(x, y, splits[1], TrainConfig(**{**SMALL, "seed": 1}), len(ds.classes),
                      fixed_length=32.0)
    assert next(r for r in serial if r.seed == 1 and r.label == "fixed 32").metrics == alone.metrics
    parallel = run_protocol(x.numpy(), y.numpy(), splits, cfg, len(ds.classes), jobs=2, **kwargs)
    key = lambda r: (r.seed, r.label)  # noqa: E731
    for a, b in zip(sorted(serial, key=key), sorted(parallel, key=key), strict=True):
        assert key(a) == key(b)
        assert a.window_length == pytest.approx(b.window_length, rel=1e-4)
        assert a.metrics["test"]["accuracy"] == pytest.approx(b.metrics["test"]["accuracy"], abs=0.2)


def test_train_seeds_cli_writes_the_protocol_table(tmp_path, fsdd_dir):
    import csv
    import json

    from click.testing import CliRunner

    from dstft_cli.cli import main

    args = ["train", str(fsdd_dir), "--seeds", "0-1", "--fixed-window", "8,32", "--n-fft", "32",
            "--hop", "16", "--clip-length", "2000", "--epochs", "1", "--batch-size", "4",
            "--init-length", "16", "--limit", "10", "-o", str(tmp_path), "--name", "p", "--quiet"]
    res = CliRunner().invoke(main, args)
    assert res.exit_code == 0, res.output
    folder = tmp_path / "p"
    with open(folder / "runs.csv") as fh:
        rows = list(csv.DictReader(fh))
    assert [(r["seed"], r["run"]) for r in rows] == [
        (s, lab) for s in ("0", "1") for lab in ("fixed 8", "fixed 32", "fixed at learned θ",
                                                 "learnable")]
    learned = {r["seed"]: r["window_length"] for r in rows if r["run"] == "learnable"}
    assert {r["seed"]: r["window_length"] for r in rows if r["run"] == "fixed at learned θ"} == learned
    params = json.loads((folder / "params.json").read_text())
    assert params["seeds"] == [0, 1] and params["n_clips"] == 10
    assert params["fixed_windows"] == [8.0, 32.0]
    acc8 = [float(r["test_accuracy"]) for r in rows if r["run"] == "fixed 8"]
    w8 = next(w for w in params["summary"]["windows"] if w["window"] == "fixed 8")
    assert w8["test_accuracy_mean"] == pytest.approx(np.mean(acc8))
    md = (folder / "protocol.md").read_text()
    assert "over 2 seed(s)" in md and "| learnable | 2 |" in md and "Paired difference" in md
    assert f"{float(learned['1']):.2f}" in md
    bad = CliRunner().invoke(main, [*args[:3], "1-0", *args[4:]])
    assert bad.exit_code == 2 and "--seeds" in bad.output


def test_train_seeds_reuses_the_runs_of_an_earlier_protocol(tmp_path, fsdd_dir):
    import csv
    import json

    from click.testing import CliRunner

    from dstft_cli.cli import main

    base = ["train", str(fsdd_dir), "--seeds", "0", "--n-fft", "32", "--hop", "16",
            "--clip-length", "2000", "--epochs", "1", "--batch-size", "4", "--init-length", "16",
            "--limit", "10", "-o", str(tmp_path)]

    def rows(name):
        with open(tmp_path / name / "runs.csv") as fh:
            return {(r["seed"], r["run"]): r for r in csv.DictReader(fh)}

    first = CliRunner().invoke(main, [*base, "--fixed-window", "8", "--name", "first", "--quiet"])
    assert first.exit_code == 0, first.output
    # a mark that only a reused run can carry: training again would not reproduce it
    earlier = rows("first")
    earlier[("0", "fixed 8")]["test_accuracy"] = "0.123"
    with open(tmp_path / "first" / "runs.csv", "w", newline="") as fh:
        writer = csv.DictWriter(fh, fieldnames=list(next(iter(earlier.values()))))
        writer.writeheader()
        writer.writerows(earlier.values())

    second = CliRunner().invoke(main, [*base, "--fixed-window", "8,16", "--name", "second",
                                       "--reuse", str(tmp_path / "first")])
    assert second.exit_code == 0, second.output
    assert second.output.count("(reused)") == 3
    later = rows("second")
    assert set(later) == {("0", lab) for lab in
                          ("fixed 8", "fixed 16", "learnable", "fixed at learned θ")}
    for key, row in earlier.items():
        for field in ("window_length", "best_epoch", "test_accuracy", "val_loss", "elapsed_s"):
            assert float(later[key][field]) == float(row[field]), (key, field)
    assert float(later[("0", "fixed 8")]["test_accuracy"]) == 0.123
    params = json.loads((tmp_path / "second" / "params.json").read_text())
    assert params["reused_from"] == str(tmp_path / "first")
    assert sorted(map(tuple, params["reused_runs"])) == sorted(
        (0, lab) for lab in ("fixed 8", "learnable", "fixed at learned θ"))

    other = CliRunner().invoke(main, [*base, "--epochs", "2", "--fixed-window", "8", "--name",
                                      "third", "--reuse", str(tmp_path / "first")])
    assert other.exit_code == 1
    assert "params.json" in other.output and "epochs" in other.output
    assert "Traceback" not in other.output and not (tmp_path / "third").exists()
    alone = CliRunner().invoke(main, [*base[:2], "--reuse", str(tmp_path / "first")])
    assert alone.exit_code == 2 and "--reuse goes with --seeds" in alone.output


@pytest.mark.parametrize("pooling, inputs", [("grid", 16 * 8 * 16), ("bands", 16 * 8), ("global", 16)])
def test_pooling_sets_what_the_dense_layer_sees(pooling, inputs):
    cfg = TrainConfig(**{**SMALL, "pooling": pooling})
    model = DigitClassifier(cfg, 10)
    assert model.head[-1].in_features == inputs
    logits = model(torch.randn(3, cfg.clip_length))
    assert logits.shape == (3, 10) and bool(torch.isfinite(logits).all())
    with pytest.raises(ValueError, match="pooling"):
        TrainConfig(pooling="max")


_GRADIENT_SCRIPT = """
import sys
import numpy as np
import torch
from dstft_cli.tasks.classify import DigitClassifier, TrainConfig, _shard_loss, _TrainingStep
from dstft_cli.tasks.distributed import data_parallel, joined_process_group, sum_over_processes

with joined_process_group("cpu") as (world, rank, _):
    torch.manual_seed(0)
    model = DigitClassifier(TrainConfig(n_fft=32, hop_length=16, clip_length=400, init_length=16.0,
                                        dropout=0.5), 4)
    clips = torch.randn(6, 400, generator=torch.Generator().manual_seed(1))
    labels = torch.tensor([0, 1, 2, 3, 0, 1])
    step = data_parallel(_TrainingStep(model, precomputed=False))
    step.train()
    out = {}
    for batch in ([4, 0, 2], [5]):  # splits 2 + 1, then 1 + none
        model.zero_grad(set_to_none=True)
        torch.manual_seed(7)  # the dropout mask
        loss, stats = _shard_loss(step, clips, labels, torch.arange(6), np.array(batch), world, rank)
        loss.backward()
        out[len(batch)] = {"stats": sum_over_processes(stats),
                           **{n: p.grad.clone() for n, p in model.named_parameters()}}
    torch.save(out, f"{sys.argv[1]}/rank{rank}.pt")
"""


@pytest.mark.slow
def test_shard_gradients_average_to_the_whole_batch_gradient(tmp_path):
    """Under DDP (2 gloo processes) the averaged gradient of θ and of every weight equals the
    gradient of one process on the whole batch — with dropout on, a batch that splits 2 + 1 and a
    batch of one clip that leaves rank 1 without a clip — and is the same on both processes.
    Tolerance: float32 sums in another order."""
    import os
    import subprocess
    import sys

    script = tmp_path / "grads.py"
    script.write_text(_GRADIENT_SCRIPT)
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONWARNINGS": "ignore"}
    (tmp_path / "one").mkdir()
    one = subprocess.run([sys.executable, str(script), str(tmp_path / "one")], capture_output=True,
                         text=True, env=env, timeout=900)
    assert one.returncode == 0, one.stderr
    two = subprocess.run([sys.executable, "-m", "torch.distributed.run", "--standalone",
                          "--nproc_per_node", "2", str(script), str(tmp_path)],
                         capture_output=True, text=True, env=env, timeout=900)
    assert two.returncode == 0, two.stderr
    whole = torch.load(tmp_path / "one" / "rank0.pt", weights_only=True)
    rank0, rank1 = (torch.load(tmp_path / f"rank{r}.pt", weights_only=True) for r in (0, 1))
    for size in (3, 1):
        assert whole[size].keys() == rank0[size].keys()
        assert "frontend.stft.theta" in whole[size]
        for name, g in whole[size].items():
            assert torch.equal(rank0[size][name], rank1[size][name]), name
            torch.testing.assert_close(rank0[size][name].to(g.dtype), g, rtol=1e-5, atol=1e-7,
                                       msg=name)
        assert float(whole[size]["frontend.stft.theta"].abs()) > 0


@pytest.mark.slow
def test_train_under_torchrun_matches_one_process(tmp_path, fsdd_dir):
    """2 gloo processes in DistributedDataParallel (each a shard of every batch) follow the θ
    trajectory, the running losses and the final weights of one process.

    Dropout stays on (0.3, the default): each process keeps its rows of the whole batch's mask.
    12 clips split 10/1/1 and batches of 3 split 2 + 1 (uneven), the last batch of 1 leaves
    rank 1 without a clip: the loss factors must still give the whole batch's gradient.
    Tolerance: float32 gradients summed in another order (per shard, then across processes)."""
    import csv
    import json

    args = ["train", str(fsdd_dir), "--n-fft", "32", "--hop", "16", "--clip-length", "2000",
            "--epochs", "2", "--batch-size", "3", "--init-length", "16", "--fixed-window", "8",
            "--seed", "3", "--quiet"]
    one_dir, two_dir = run_alone_and_under_torchrun(args, tmp_path)

    def read(folder):
        with open(folder / "train" / "theta_trajectory.csv") as fh:
            rows = list(csv.DictReader(fh))
        with open(folder / "train" / "history.csv") as fh:
            history = [[float(r[k]) for k in ("window_length", "train_loss_running",
                                               "train_accuracy_running")] for r in csv.DictReader(fh)]
        return json.loads((folder / "train" / "params.json").read_text()), [
            float(r["window_length"]) for r in rows], history

    (p1, t1, h1), (p2, t2, h2) = read(one_dir), read(two_dir)
    assert p1["world_size"] == 1 and p2["world_size"] == 2
    assert p1["split_sizes"] == p2["split_sizes"] == {"train": 10, "val": 1, "test": 1}
    assert len(t1) == len(t2) == 1 + 2 * 4 and t1[-1] != t1[0]
    np.testing.assert_allclose(t2, t1, rtol=1e-5)
    np.testing.assert_allclose(h2, h1, rtol=1e-5)
    assert [r["window_length"] for r in p2["runs"]] == pytest.approx(
        [r["window_length"] for r in p1["runs"]], rel=1e-5)
    for label in ("learnable", "fixed-8"):
        w1 = torch.load(one_dir / "train" / "checkpoints" / f"{label}.pt", weights_only=True)
        w2 = torch.load(two_dir / "train" / "checkpoints" / f"{label}.pt", weights_only=True)
        assert w1["state_dict"].keys() == w2["state_dict"].keys()
        for k, v in w1["state_dict"].items():
            torch.testing.assert_close(w2["state_dict"][k], v, rtol=1e-4, atol=1e-6, msg=k)
    assert not list(two_dir.glob("train?*"))  # only rank 0 wrote a result folder
