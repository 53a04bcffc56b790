"""A DSTFT layer trained jointly with a small CNN for spoken-digit classification (Sec. VII-B).

The whole system is one network (Eq. 36): ŷ = F_w(|S_θ(x)|). The first layer is the DSTFT with a
learnable window length θ (or a fixed one, for the baselines of Tables II–III), followed by the
paper's small CNN: two depthwise-separable convolution layers with 16 filters, ReLU, dropout and a
dense layer over the classes. θ and the weights w are trained together with Adam on the
cross-entropy (Eq. 35).

Clip length: every clip is **zero-padded at the end, or cropped at the end**, to ``clip_length``
samples (default 8,000 = 1 s at 8 kHz). FSDD clips are trimmed at the speech onset, so aligning the
starts keeps the digit onsets aligned for the CNN; 1 s holds ≈ 98.5 % of the clips entirely (the
longest 1.5 % lose only their tail, mostly silence and breath), and a fixed length lets every
spectrogram be batched.

This module reads audio with soundfile and numpy (dataset discovery, one ``.npy`` cache of the
decoded clips) but knows nothing of click, plotting or result folders.
"""

from __future__ import annotations

import hashlib
import math
import re
import time
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np
import torch
from torch import nn

from ..core import DSTFT
from .distributed import data_parallel, process_group, sum_over_processes

__all__ = [
    "TrainConfig", "Dataset", "RunResult", "DatasetError",
    "discover_dataset", "load_clips", "split_indices", "fsdd_split_indices", "split_for",
    "DigitClassifier", "SpectrogramFrontEnd", "BatchDropout",
    "train_run", "process_group", "evaluate", "load_checkpoint", "results_table_markdown",
]

AUDIO_EXTENSIONS = (".wav", ".flac", ".ogg")
_FSDD_NAME = re.compile(r"^(?P<label>[^_]+)_(?P<speaker>[^_]+)_(?P<index>[^_]+)$")


SPLIT_SCHEMES = ("random", "fsdd")
POOLINGS = ("grid", "bands", "global")
_POOLED_CELLS = {"grid": (8, 16), "bands": (8, 1), "global": (1, 1)}


class DatasetError(ValueError):
    """The data directory cannot be turned into a labelled data set (names the path and why)."""


@dataclass(frozen=True)
class TrainConfig:
    """Every setting of one training run; saved with each checkpoint."""

    n_fft: int = 128
    hop_length: int = 16
    clip_length: int = 8000
    window: str = "hann"
    init_length: float = 32.0  # θ at the start of the learnable run
    min_length: float = 4.0  # θ is projected onto [min_length, n_fft] after every step
    epochs: int = 20
    batch_size: int = 32
    lr: float = 3e-3  # Adam, network weights
    theta_lr: float = 0.25  # Adam, θ (in samples per step at most, roughly)
    dropout: float = 0.3
    filters: int = 16
    seed: int = 0
    split: tuple[float, float, float] = (0.8, 0.1, 0.1)
    # "random": the fractions of ``split``; "fsdd": the standard FSDD test set (recordings 0–4
    # of every speaker and digit) and a random validation share split[1] / (split[0] + split[1])
    # of the rest
    split_scheme: str = "random"
    # how the CNN's feature map reaches the dense layer: "grid" average-pools it to 8 × 16 cells
    # (frequency × time), "bands" to 8 frequency bands averaged over time, "global" to one value
    # per filter (2048, 128 or 16 inputs to the dense layer with 16 filters)
    pooling: str = "grid"

    def __post_init__(self):
        if self.n_fft < 2 or self.n_fft % 2:
            raise ValueError(f"n_fft must be an even integer ≥ 2, got {self.n_fft}")
        if self.hop_length < 1:
            raise ValueError(f"hop_length must be ≥ 1, got {self.hop_length}")
        if self.clip_length < self.n_fft:
            raise ValueError(f"clip_length={self.clip_length} is shorter than n_fft={self.n_fft}")
        if not 0 < self.min_length <= self.init_length <= self.n_fft:
            raise ValueError(
                f"need 0 < min_length ≤ init_length ≤ n_fft, got min_length={self.min_length}, "
                f"init_length={self.init_length}, n_fft={self.n_fft}"
            )
        if self.epochs < 1 or self.batch_size < 1:
            raise ValueError(f"epochs and batch_size must be ≥ 1, got {self.epochs}, {self.batch_size}")
        if len(self.split) != 3 or any(f < 0 for f in self.split) or self.split[0] <= 0:
            raise ValueError(f"split must be three non-negative fractions, got {self.split}")
        if self.split_scheme not in SPLIT_SCHEMES:
            raise ValueError(f"split_scheme must be one of {SPLIT_SCHEMES}, got {self.split_scheme!r}")
        if self.pooling not in POOLINGS:
            raise ValueError(f"pooling must be one of {POOLINGS}, got {self.pooling!r}")
        if not 0 <= self.dropout < 1:
            raise ValueError(f"dropout must lie in [0, 1), got {self.dropout}")


# --------------------------------------------------------------------------------------------
# data


@dataclass
class Dataset:
    paths: list[Path]
    labels: np.ndarray  # (J,) int64 class indices
    classes: list[str]
    labelling: str  # "file names" or "sub-folders"


def _audio_files(directory: Path, recursive: bool) -> list[Path]:
    it = directory.rglob("*") if recursive else directory.iterdir()
    return sorted(p for p in it if p.is_file() and p.suffix.lower() in AUDIO_EXTENSIONS)


def _class_sort_key(name: str):
    return (0, int(name), name) if name.isdigit() else (1, 0, name)


def discover_dataset(data_dir: str | Path) -> Dataset:
    """Labelled audio files of ``data_dir``.

    Audio files directly in ``data_dir`` are labelled from FSDD-style names
    ``{label}_{speaker}_{index}.wav``; otherwise every sub-folder holding audio is a class and
    its files (searched recursively) carry its name.
    """
    root = Path(data_dir)
    if not root.is_dir():
        raise DatasetError(f"{root}: not a directory")
    top = _audio_files(root, recursive=False)
    if top:
        names = []
        for p in top:
            m = _FSDD_NAME.match(p.stem)
            if m is None:
                raise DatasetError(
                    f"{p}: cannot read a label from the file name; expected "
                    "'{label}_{speaker}_{index}' (or put the files in one sub-folder per class)"
                )
            names.append(m["label"])
        labelling, paths = "file names", top
    else:
        subdirs = sorted(d for d in root.iterdir() if d.is_dir() and not d.name.startswith("."))
        paths, names = [], []
        for d in subdirs:
            files = _audio_files(d, recursive=True)
            paths += files
            names += [d.name] * len(files)
        labelling = "sub-folders"
    if not paths:
        raise DatasetError(f"{root}: no audio files ({', '.join(AUDIO_EXTENSIONS)}) found")
    classes = sorted(set(names), key=_class_sort_key)
    if len(classes) < 2:
        raise DatasetError(f"{root}: found a single class {classes[0]!r}; need at least two")
    index = {c: i for i, c in enumerate(classes)}
    labels = np.array([index[n] for n in names], dtype=np.int64)
    return Dataset(paths=list(paths), labels=labels, classes=classes, labelling=labelling)


def _fix_length(x: np.ndarray, length: int) -> np.ndarray:
    if x.shape[0] >= length:
        return x[:length]
    return np.pad(x, (0, length - x.shape[0]))


def _cache_key(paths: Sequence[Path], clip_length: int) -> str:
    h = hashlib.sha256(f"v1 {clip_length}".encode())
    for p in paths:
        st = p.stat()
        h.update(f"{p.resolve()}|{st.st_size}|{st.st_mtime_ns}\n".encode())
    return h.hexdigest()[:16]


def load_clips(
    paths: Sequence[Path],
    clip_length: int,
    *,
    cache_dir: str | Path | None = None,
    progress: Callable[[int], None] | None = None,
) -> tuple[np.ndarray, int, bool]:
    """Decode, mix to mono and pad/crop every clip: ``(J, clip_length)`` float32.

    With ``cache_dir`` the array is kept in ``cache_dir/clips_<key>.npy`` (with the sample rate
    in ``.sr``), the key hashing the paths, sizes, modification times and clip length, so a
    second run skips decoding. Returns ``(clips, sample_rate, from_cache)``.
    """
    import soundfile as sf

    cache = None
    if cache_dir is not None:
        key = _cache_key(paths, clip_length)
        cache = Path(cache_dir) / f"clips_{key}.npy"
        sr_file = cache.with_suffix(".sr")
        if cache.is_file() and sr_file.is_file():
            clips = np.load(cache, allow_pickle=False)
            if clips.shape == (len(paths), clip_length):
                return clips, int(sr_file.read_text()), True
    out = np.zeros((len(paths), clip_length), dtype=np.float32)
    rates = set()
    for i, p in enumerate(paths):
        try:
            data, sr = sf.read(str(p), dtype="float32", always_2d=True)
        except Exception as exc:  # soundfile raises several types (RuntimeError, LibsndfileError)
            raise DatasetError(f"{p}: cannot read audio ({exc})") from None
        if data.shape[0] == 0:
            raise DatasetError(f"{p}: empty audio file")
        mono = data.mean(axis=1)
        if not np.all(np.isfinite(mono)):
            raise DatasetError(f"{p}: contains non-finite samples")
        rates.add(int(sr))
        out[i] = _fix_length(mono, clip_length)
        if progress is not None:
            progress(1)
    if len(rates) > 1:
        raise DatasetError(f"clips have different sample rates {sorted(rates)}; resample them first")
    sr = rates.pop()
    if cache is not None:
        cache.parent.mkdir(parents=True, exist_ok=True)
        tmp = cache.with_name(cache.name + ".tmp.npy")
        np.save(tmp, out)
        tmp.replace(cache)
        cache.with_suffix(".sr").write_text(str(sr))
    return out, sr, False


def split_indices(
    n: int, seed: int, fractions: Sequence[float] = (0.8, 0.1, 0.1)
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Random train/val/test index split (a permutation drawn from ``seed``).

    Sizes are rounded from the fractions; with n ≥ 3 and non-zero fractions, validation and test
    get at least one clip each.
    """
    if n < 1:
        raise ValueError("cannot split an empty data set")
    total = float(sum(fractions))
    f = [x / total for x in fractions]
    n_val = int(round(f[1] * n))
    n_test = int(round(f[2] * n))
    if n >= 3:
        n_val = max(n_val, 1 if f[1] > 0 else 0)
        n_test = max(n_test, 1 if f[2] > 0 else 0)
    n_train = n - n_val - n_test
    if n_train < 1:
        raise ValueError(f"{n} clips are too few for a split with a non-empty training set")
    perm = np.random.default_rng(seed).permutation(n)
    return perm[:n_train], perm[n_train : n_train + n_val], perm[n_train + n_val :]


def fsdd_split_indices(
    paths: Sequence[Path], seed: int, val_fraction: float = 1 / 9, test_recordings: int = 5
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """The standard FSDD split: recordings 0 … test_recordings−1 of every speaker and digit are
    the test set; a random ``val_fraction`` of the others (drawn from ``seed``) validates."""
    index = []
    for p in paths:
        m = _FSDD_NAME.match(Path(p).stem)
        if m is None or not m["index"].isdigit():
            raise DatasetError(f"{p}: the FSDD split needs names '{{digit}}_{{speaker}}_{{index}}'")
        index.append(int(m["index"]))
    index = np.asarray(index)
    test = np.flatnonzero(index < test_recordings)
    rest = np.flatnonzero(index >= test_recordings)
    if test.size == 0 or rest.size < 2:
        raise DatasetError(f"the FSDD split leaves {test.size} test and {rest.size} other clips")
    rest = rest[np.random.default_rng(seed).permutation(rest.size)]
    n_val = max(1, int(round(val_fraction * rest.size))) if val_fraction > 0 else 0
    return rest[n_val:], rest[:n_val], test


def split_for(paths: Sequence[Path], config: TrainConfig) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(train, val, test) indices of ``paths`` for ``config.split_scheme`` and ``config.seed``."""
    if config.split_scheme == "fsdd":
        share = config.split[1] / (config.split[0] + config.split[1])
        return fsdd_split_indices(paths, config.seed, val_fraction=share)
    return split_indices(len(paths), config.seed, config.split)


# --------------------------------------------------------------------------------------------
# model


class SpectrogramFrontEnd(nn.Module):
    """x → log|S_θ(x)|, standardised per clip: the DSTFT layer of Eq. (36).

    The transform is a one-θ :class:`~dstft_cli.core.DSTFT` (``stft``); θ is learned, or frozen
    (``requires_grad=False``) for the fixed baselines, and saved in the ``state_dict`` as
    ``stft.theta`` either way.
    """

    def __init__(
        self, *, n_fft: int, hop_length: int, window: str, init_length: float,
        learnable: bool, min_length: float,
    ):
        super().__init__()
        self.stft = DSTFT(n_fft=n_fft, hop_length=hop_length, window=window,
                          init_length=float(init_length), min_length=float(min_length))
        self.stft.theta.requires_grad_(learnable)
        self.learnable = learnable

    @property
    def window_length(self) -> torch.Tensor:
        return self.stft.theta

    def magnitude(self, x: torch.Tensor) -> torch.Tensor:
        """|S| for a batch ``(B, Ls)`` → ``(B, M, N)``."""
        return self.stft.spectrogram(x)

    @staticmethod
    def normalise(mag: torch.Tensor) -> torch.Tensor:
        # log compresses the dynamic range; the per-clip standardisation removes loudness and the
        # overall level change that θ brings, so θ is learned for its time-frequency trade-off.
        z = torch.log(mag + 1e-4)
        mean = z.mean(dim=(-2, -1), keepdim=True)
        std = z.std(dim=(-2, -1), keepdim=True)
        return (z - mean) / (std + 1e-5)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.normalise(self.magnitude(x))

    def project_(self) -> None:
        self.stft.project_()

    def _load_from_state_dict(self, state_dict, prefix, *args, **kwargs):
        # checkpoints written before the front end held a DSTFT stored θ as ``window_length``
        legacy = prefix + "window_length"
        if legacy in state_dict:
            state_dict[prefix + "stft.theta"] = state_dict.pop(legacy)
        super()._load_from_state_dict(state_dict, prefix, *args, **kwargs)


class _SeparableConv(nn.Module):
    def __init__(self, c_in: int, c_out: int, stride: int = 1):
        super().__init__()
        self.depthwise = nn.Conv2d(c_in, c_in, kernel_size=3, stride=stride, padding=1, groups=c_in)
        self.pointwise = nn.Conv2d(c_in, c_out, kernel_size=1)

    def forward(self, x):
        return self.pointwise(self.depthwise(x))


class BatchDropout(nn.Dropout):
    """Dropout that, given this process's rows of a batch, drops them as the whole batch would be.

    ``forward(x, rows, batch_size)`` draws the Bernoulli(1 − p) mask of the whole batch
    ``(batch_size, …)`` and keeps its ``rows``. Every process of a torch.distributed run draws
    from the same generator state (same seed, same draws so far), so each clip gets the mask it
    gets in one process training on the whole batch. Without ``rows`` the mask is drawn for
    ``x`` itself. On CPU the mask and its 1/(1 − p) scaling are those of ``nn.Dropout``
    bit for bit, so one process trains as it did with ``nn.Dropout``.
    """

    def forward(self, x: torch.Tensor, rows: torch.Tensor | None = None,
                batch_size: int | None = None) -> torch.Tensor:
        if not self.training or self.p == 0:
            return x
        keep = 1.0 - self.p
        shape = x.shape if rows is None else (batch_size, *x.shape[1:])
        mask = x.new_empty(shape).bernoulli_(keep)
        if rows is not None:
            mask = mask[rows]
        return x * mask.div_(keep)


class DigitClassifier(nn.Module):
    """DSTFT layer → 2 × (depthwise-separable conv, 16 filters, ReLU, max-pool) → dropout → dense.

    The first depthwise convolution has stride 2: the 16 pointwise filters then run on a quarter
    of the time-frequency grid, which makes the network ≈ 6× faster on CPU (the whole Table II/III
    must train in minutes) at the same number of weights.
    The feature map is average-pooled to a fixed 8 × 16 grid (``pooling="grid"``), to 8 frequency
    bands (``"bands"``) or to one value per filter (``"global"``) before the dense layer, so the
    same network takes any n_fft / hop / clip length.
    """

    def __init__(self, config: TrainConfig, n_classes: int, *, fixed_length: float | None = None):
        super().__init__()
        learnable = fixed_length is None
        self.frontend = SpectrogramFrontEnd(
            n_fft=config.n_fft, hop_length=config.hop_length, window=config.window,
            init_length=config.init_length if learnable else fixed_length,
            learnable=learnable, min_length=config.min_length,
        )
        f = config.filters
        cells = _POOLED_CELLS[config.pooling]
        self.features = nn.Sequential(
            _SeparableConv(1, f, stride=2), nn.ReLU(), nn.MaxPool2d(2),
            _SeparableConv(f, f), nn.ReLU(), nn.MaxPool2d(2),
            nn.AdaptiveAvgPool2d(cells),
        )
        self.head = nn.Sequential(nn.Flatten(), BatchDropout(config.dropout),
                                  nn.Linear(f * cells[0] * cells[1], n_classes))

    def classify(self, spec: torch.Tensor, rows: torch.Tensor | None = None,
                 batch_size: int | None = None) -> torch.Tensor:
        """Logits from a normalised spectrogram batch ``(B, M, N)``; ``rows``/``batch_size``: the
        positions of these clips in the whole batch, for the dropout mask (:class:`BatchDropout`)."""
        flatten, dropout, dense = self.head
        return dense(dropout(flatten(self.features(spec.unsqueeze(1))), rows, batch_size))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.classify(self.frontend(x))


# --------------------------------------------------------------------------------------------
# training


@dataclass
class RunResult:
    name: str  # "fixed-10", …, "learnable"
    fixed_length: float | None
    window_length: float  # θ of the selected (best-validation) epoch
    best_epoch: int
    metrics: dict[str, dict[str, float]]  # split → {"loss", "accuracy"} at best_epoch
    history: list[dict] = field(default_factory=list)  # per epoch
    theta_trajectory: list[tuple[int, int, float]] = field(default_factory=list)  # (step, epoch, θ)
    state_dict: dict = field(default_factory=dict)
    elapsed_s: float = 0.0


def _batches(n: int, batch_size: int, rng: np.random.Generator | None):
    order = rng.permutation(n) if rng is not None else np.arange(n)
    for i in range(0, n, batch_size):
        yield order[i : i + batch_size]


@torch.no_grad()
def evaluate(
    model: DigitClassifier, inputs: torch.Tensor, labels: torch.Tensor, batch_size: int = 256,
    *, precomputed: bool = False,
) -> tuple[float, float, torch.Tensor]:
    """Mean cross-entropy, accuracy and predicted classes of ``model`` on clips (or spectrograms)."""
    model.eval()
    if len(labels) == 0:
        return float("nan"), float("nan"), torch.empty(0, dtype=torch.long)
    total, correct, preds = 0.0, 0, []
    for idx in _batches(len(labels), batch_size, None):
        xb, yb = inputs[idx], labels[idx]
        logits = model.classify(xb) if precomputed else model(xb)
        total += nn.functional.cross_entropy(logits, yb, reduction="sum").item()
        p = logits.argmax(1)
        correct += (p == yb).sum().item()
        preds.append(p)
    return total / len(labels), correct / len(labels), torch.cat(preds)


@torch.no_grad()
def _precompute(
    frontend: SpectrogramFrontEnd, clips: torch.Tensor, batch_size: int = 256
) -> torch.Tensor:
    return torch.cat([frontend(clips[i : i + batch_size]) for i in range(0, len(clips), batch_size)])


class _TrainingStep(nn.Module):
    """What DistributedDataParallel wraps: the classifier from clips (learnable θ: the DSTFT layer
    and the CNN in one module) or from precomputed spectrograms (fixed θ: the CNN only)."""

    def __init__(self, model: DigitClassifier, precomputed: bool):
        super().__init__()
        self.model = model
        self.precomputed = precomputed

    def forward(self, xb: torch.Tensor, rows: torch.Tensor | None, batch_size: int) -> torch.Tensor:
        spec = xb if self.precomputed else self.model.frontend(xb)
        return self.model.classify(spec, rows, batch_size)


def _shard_of(batch: np.ndarray, world: int, rank: int) -> tuple[np.ndarray, np.ndarray, int]:
    """This process's clips of ``batch`` (every world-th, from ``rank``), their positions in it,
    and the factor of their summed loss: the loss to differentiate is factor · Σ / len(batch).

    DistributedDataParallel averages the processes' gradients, so the factor is the world size:
    the average of world · Σ_shard / len(batch) is the gradient of the whole batch's mean loss,
    however unevenly the batch splits (one process: Σ / len(batch), the batch's mean). A process
    left without a clip (a batch smaller than the world) runs the first clip with factor 0,
    because every process must run the forward and backward pass for DDP's all-reduce.
    """
    rows = np.arange(rank, len(batch), world)
    if rows.size == 0:
        return batch[:1], np.zeros(1, dtype=np.int64), 0
    return batch[rows], rows, world


def _shard_loss(
    step_module: nn.Module, inputs: torch.Tensor, labels: torch.Tensor, train: torch.Tensor,
    batch: np.ndarray, world: int, rank: int,
) -> tuple[torch.Tensor, torch.Tensor]:
    """This process's part of one training step on ``train[batch]``: the loss to differentiate
    (see :func:`_shard_of`) and its [Σ cross-entropy, correct] (zeros for a process without a
    clip, so that the sums over the processes count every clip once)."""
    mine, rows, factor = _shard_of(batch, world, rank)
    idx = train[torch.as_tensor(mine, device=train.device)]
    positions = None if world == 1 else torch.as_tensor(rows, device=train.device)
    logits = step_module(inputs[idx], positions, len(batch))
    loss_sum = nn.functional.cross_entropy(logits, labels[idx], reduction="sum")
    correct = (logits.argmax(1) == labels[idx]).sum()
    stats = torch.stack([loss_sum.detach(), correct.to(loss_sum.dtype)]) * (factor > 0)
    return loss_sum * factor / len(batch), stats


def train_run(
    clips: torch.Tensor,
    labels: torch.Tensor,
    split: tuple[np.ndarray, np.ndarray, np.ndarray],
    config: TrainConfig,
    n_classes: int,
    *,
    fixed_length: float | None = None,
    progress: Callable[[dict], None] | None = None,
) -> RunResult:
    """Train one model (learnable θ when ``fixed_length`` is None) and keep its best-validation epoch.

    Every run seeds torch and numpy with ``config.seed``: the network starts from the same weights
    and sees the same batches whatever θ is. Inside a torch.distributed process group (``dstft
    train`` under torchrun) the model is trained in DistributedDataParallel: every process draws
    the same batches, runs its shard of each (every world-th clip, with the dropout mask those
    clips get in the whole batch) and DDP averages the gradients, which with the loss factors of
    :func:`_shard_of` are the whole batch's; θ and the weights then take the steps of one process
    up to floating-point summation order. With a fixed θ the spectrograms are computed once
    (they do not change) and only the CNN is trained. The returned metrics are those of the
    epoch with the best validation accuracy (ties: lower validation loss; no validation clips:
    the last epoch).
    """
    t0 = time.perf_counter()
    world, rank = process_group()
    torch.manual_seed(config.seed)
    rng = np.random.default_rng(config.seed)
    model = DigitClassifier(config, n_classes, fixed_length=fixed_length).to(clips.device)
    learnable = fixed_length is None
    name = "learnable" if learnable else f"fixed-{fixed_length:g}"
    weights = [p for n, p in model.named_parameters() if not n.startswith("frontend.")]
    groups = [{"params": weights, "lr": config.lr}]
    if learnable:
        groups.append({"params": [model.frontend.window_length], "lr": config.theta_lr})
    opt = torch.optim.Adam(groups)

    tr, va, te = (torch.as_tensor(s, dtype=torch.long, device=clips.device) for s in split)
    inputs = clips if learnable else _precompute(model.frontend, clips)
    precomputed = not learnable

    step_module = data_parallel(_TrainingStep(model, precomputed))
    history, trajectory = [], [(0, 0, float(model.frontend.window_length.detach()))]
    best = None
    step = 0
    for epoch in range(1, config.epochs + 1):
        step_module.train()
        run_loss, run_correct, seen = 0.0, 0, 0
        for b in _batches(len(tr), config.batch_size, rng):
            loss, stats = _shard_loss(step_module, inputs, labels, tr, b, world, rank)
            opt.zero_grad(set_to_none=True)
            loss.backward()  # DistributedDataParallel averages the gradients here
            loss_sum, correct = sum_over_processes(stats)
            if learnable:
                g = model.frontend.window_length.grad
                if g is not None and not torch.isfinite(g):
                    model.frontend.window_length.grad = torch.zeros_like(g)
            opt.step()
            if learnable:
                model.frontend.project_()
            step += 1
            run_loss += float(loss_sum)
            run_correct += int(correct)
            seen += len(b)
            if learnable:
                trajectory.append((step, epoch, float(model.frontend.window_length.detach())))
        val_loss, val_acc, _ = evaluate(model, inputs[va], labels[va], precomputed=precomputed)
        row = {
            "epoch": epoch, "window_length": float(model.frontend.window_length.detach()),
            "train_loss_running": run_loss / seen, "train_acc_running": run_correct / seen,
            "val_loss": val_loss, "val_accuracy": val_acc,
        }
        history.append(row)
        if progress is not None:
            progress(row)
        has_val = len(va) > 0
        key = (val_acc, -val_loss) if has_val else (epoch, 0.0)
        if best is None or key > best[0]:
            sd = {k: v.detach().clone() for k, v in model.state_dict().items()}
            best = (key, epoch, sd)
    _, best_epoch, best_sd = best
    model.load_state_dict(best_sd)
    metrics = {}
    for split_name, idx in (("train", tr), ("val", va), ("test", te)):
        loss, acc, _ = evaluate(model, inputs[idx], labels[idx], precomputed=precomputed)
        metrics[split_name] = {"loss": loss, "accuracy": acc}
    return RunResult(
        name=name, fixed_length=fixed_length, window_length=float(model.frontend.window_length.detach()),
        best_epoch=best_epoch, metrics=metrics, history=history, theta_trajectory=trajectory,
        state_dict=best_sd, elapsed_s=time.perf_counter() - t0,
    )


def checkpoint_payload(result: RunResult, config: TrainConfig, classes: list[str]) -> dict:
    """What goes into a checkpoint: tensors, numbers, strings and lists only (weights_only loads it)."""
    cfg = asdict(config)
    cfg["split"] = list(cfg["split"])
    return {
        "state_dict": result.state_dict,
        "config": cfg,
        "classes": list(classes),
        "fixed_length": result.fixed_length,
        "window_length": result.window_length,
        "best_epoch": result.best_epoch,
    }


def load_checkpoint(
    path: str | Path, map_location: str | torch.device = "cpu"
) -> tuple[DigitClassifier, dict]:
    """Rebuild the model of a checkpoint written by ``dstft train`` (loaded with weights_only=True)."""
    payload = torch.load(path, map_location=map_location, weights_only=True)
    cfg = dict(payload["config"])
    cfg["split"] = tuple(cfg["split"])
    config = TrainConfig(**cfg)
    model = DigitClassifier(config, len(payload["classes"]), fixed_length=payload["fixed_length"])
    model.load_state_dict(payload["state_dict"])
    model.eval()
    return model, payload


def _fmt(value: float, scale: float, spec: str) -> str:
    return "–" if math.isnan(value) else format(scale * value, spec)


def results_table_markdown(results: Sequence[RunResult]) -> str:
    """Markdown: Table II (test loss) and Table III (test accuracy, %) with one column per window
    as in the paper, then every split's loss and accuracy with one row per run."""
    heads = [f"{r.fixed_length:g}" if r.fixed_length is not None else
             f"DSTFT (θ → {r.window_length:.1f})" for r in results]
    sep = "| --- |" + " ---: |" * len(results)
    test_loss = [_fmt(r.metrics["test"]["loss"], 1, ".3f") for r in results]
    test_acc = [_fmt(r.metrics["test"]["accuracy"], 100, ".1f") for r in results]

    def one_row_table(title: str, row_name: str, cells: list[str]) -> list[str]:
        return [title, "", "| window length | " + " | ".join(heads) + " |", sep,
                f"| {row_name} | " + " | ".join(cells) + " |", ""]

    lines = [
        *one_row_table("Table II — test loss (cross-entropy) per window length", "test loss",
                       test_loss),
        *one_row_table("Table III — test accuracy (%) per window length", "test accuracy (%)",
                       test_acc),
        "All splits (model of the best validation epoch)",
        "",
        "| window length θ | best epoch | train loss | val loss | test loss "
        "| train acc. (%) | val acc. (%) | test acc. (%) |",
        "| --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: |",
    ]
    for r in results:
        label = f"{r.fixed_length:g} (fixed)" if r.fixed_length is not None else (
            f"learnable → {r.window_length:.2f}")
        lo = [_fmt(r.metrics[s]["loss"], 1, ".3f") for s in ("train", "val", "test")]
        acc = [_fmt(r.metrics[s]["accuracy"], 100, ".1f") for s in ("train", "val", "test")]
        lines.append(f"| {label} | {r.best_epoch} | " + " | ".join(lo + acc) + " |")
    return "\n".join(lines) + "\n"
