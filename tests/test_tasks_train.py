"""train (Sec. VII-B): data discovery, split, one epoch end to end, checkpoint reload."""

import shutil
from pathlib import Path

import numpy as np
import pytest
import torch

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

ROOT = Path(__file__).resolve().parents[1]


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
    assert "frontend.window_length" in r1.state_dict
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
