"""dstft_cli.plots: figures have the right axes, scales and render to non-trivial PNGs."""

from __future__ import annotations

import ast
from pathlib import Path

import numpy as np
import pytest
from matplotlib.image import imread

from dstft_cli import plots
from dstft_cli.io import atomic_savefig

M, N, FS, HOP = 65, 40, 8000.0, 50
TIMES = np.arange(N) * HOP / FS
FREQS = np.arange(M) * FS / (2 * (M - 1))


def chirp_magnitude() -> np.ndarray:
    """A rising ridge over a −120 dB floor."""
    mag = np.full((M, N), 1e-6)
    ridge = np.linspace(5, M - 5, N).astype(int)
    mag[ridge, np.arange(N)] = 1.0
    mag[ridge - 1, np.arange(N)] = 0.3
    return mag


def render(fig, path) -> np.ndarray:
    atomic_savefig(fig, path, dpi=60)
    assert path.exists() and path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    img = imread(path)
    assert img.ndim == 3 and img.shape[0] > 150 and img.shape[1] > 200
    # not one colour: many distinct colours and real contrast
    rgb = (img[..., :3] * 255).astype(np.uint8).reshape(-1, 3)
    assert len(np.unique(rgb, axis=0)) > 20
    assert rgb.std() > 20
    return img


def test_to_db():
    mag = np.array([[1.0, 0.1, 0.0], [1e-3, 1e-6, 10.0]])
    db = plots.to_db(mag)
    np.testing.assert_allclose(db[0, :2], [0, -20])
    assert db.max() == pytest.approx(20)
    assert db.min() == pytest.approx(20 - 100)              # floored at max − 100 dB
    assert db[0, 2] == pytest.approx(-80)
    np.testing.assert_array_equal(plots.to_db(np.zeros((2, 2))), -100)
    assert plots.to_db(mag, db_range=40).min() == pytest.approx(-20)


def test_spectrogram_figure(tmp_path):
    fig = plots.spectrogram_figure(chirp_magnitude(), TIMES, FREQS, "constant θ = 400.5")
    ax, cbar_ax = fig.axes
    assert ax.get_xlabel() == "time (s)" and ax.get_ylabel() == "frequency (Hz)"
    assert ax.get_title() == "constant θ = 400.5"
    assert "dB" in cbar_ax.get_ylabel()
    image = ax.images[0]
    assert image.get_clim() == (pytest.approx(-100), pytest.approx(0))
    left, right, bottom, top = image.get_extent()
    assert left < 0 < TIMES[-1] < right and bottom < 0 < FREQS[-1] < top
    img = render(fig, tmp_path / "spectrogram.png")
    assert img.shape[1] > img.shape[0]


def test_spectrogram_non_uniform_unsorted_times(tmp_path):
    rng = np.random.default_rng(0)
    times = np.sort(rng.uniform(0, 0.25, N))
    perm = rng.permutation(N)
    mag = chirp_magnitude()
    fig = plots.spectrogram_figure(mag[:, perm], times[perm], FREQS, "hop mode")
    ax = fig.axes[0]
    assert not ax.images and len(ax.collections) == 1        # pcolormesh on frame edges
    mesh = ax.collections[0]
    np.testing.assert_allclose(mesh.get_array().reshape(M, N), plots.to_db(mag))
    render(fig, tmp_path / "hop.png")


def test_spectrogram_bad_shape():
    with pytest.raises(ValueError, match="does not match"):
        plots.spectrogram_figure(np.ones((M, N)), TIMES[:-1], FREQS)
    with pytest.raises(ValueError, match="2-D"):
        plots.spectrogram_figure(np.ones(M), TIMES, FREQS)


def test_loss_figure(tmp_path):
    history = list(3 + np.exp(-np.arange(80) / 15)) + [float("nan")]
    fig = plots.loss_figure(history, "constant: Shannon entropy")
    ax = fig.axes[0]
    line = ax.lines[0]
    assert len(line.get_xdata()) == 80                       # the NaN is left out
    assert ax.lines[1].get_ydata()[0] == pytest.approx(min(history[:-1]))  # best marked
    assert ax.get_xlabel() == "iteration"
    render(fig, tmp_path / "loss.png")
    two = plots.loss_figure({"train": [3, 2, 1], "val": [3.5, 2.5, 2.0]}, "training")
    assert [t.get_text() for t in two.axes[0].get_legend().get_texts()] == ["train", "val"]
    empty = plots.loss_figure([], "nothing")
    assert "no finite" in empty.axes[0].texts[0].get_text()


@pytest.mark.parametrize("shape,xlabel,kind", [
    ((), "time (s)", "line"), ((N,), "time (s)", "line"), ((1, N), "time (s)", "line"),
    ((M, 1), "frequency (Hz)", "line"), ((M, N), "time (s)", "map"),
])
def test_window_lengths_figure(tmp_path, shape, xlabel, kind):
    rng = np.random.default_rng(1)
    theta = 100 + 900 * rng.random(shape) if shape else 400.0
    fig = plots.window_lengths_figure(theta, TIMES, FREQS, "θ")
    ax = fig.axes[0]
    assert ax.get_xlabel() == xlabel
    if kind == "map":
        assert len(fig.axes) == 2 and "window length" in fig.axes[1].get_ylabel()
        assert ax.images[0].get_clim() == (pytest.approx(np.min(theta)),
                                           pytest.approx(np.max(theta)))
    else:
        y = ax.lines[0].get_ydata()
        np.testing.assert_allclose(np.sort(y), np.sort(np.broadcast_to(np.ravel(theta), y.shape)))
        assert "window length (samples)" == ax.get_ylabel()
    if kind == "map" or shape == (N,):
        render(fig, tmp_path / "wl.png")


def test_window_lengths_in_ms_and_mismatch():
    fig = plots.window_lengths_figure(np.full(N, 800.0), TIMES, FREQS, sample_rate=FS)
    np.testing.assert_allclose(fig.axes[0].lines[0].get_ydata(), 100.0)
    assert fig.axes[0].get_ylabel() == "window length (ms)"
    with pytest.raises(ValueError, match="does not match"):
        plots.window_lengths_figure(np.ones(N + 3), TIMES, FREQS)


def test_frames_figure(tmp_path):
    pos = np.sort(np.random.default_rng(2).uniform(0, 1, 12))
    lengths = np.random.default_rng(3).uniform(0.01, 0.12, 12)
    fig = plots.frames_figure(pos, lengths, 1.0, "hop mode")
    ax = fig.axes[0]
    bars = ax.patches[1:]                                    # [0] is the signal span
    assert len(bars) == 12
    np.testing.assert_allclose([b.get_x() for b in bars], pos - lengths / 2)
    np.testing.assert_allclose([b.get_width() for b in bars], lengths)
    lo, hi = ax.get_xlim()
    assert lo <= min(0, (pos - lengths / 2).min()) and hi >= max(1, (pos + lengths / 2).max())
    render(fig, tmp_path / "frames.png")
    with_signal = plots.frames_figure(pos, 0.05, 1.0, signal=np.sin(np.arange(8000) / 10))
    assert len(with_signal.axes) == 2
    assert len(with_signal.axes[1].patches) == 13


def test_scan_figure(tmp_path):
    lengths = np.arange(100, 1001, 25.0)
    losses = (lengths - 425) ** 2 / 1e4 + 5
    fig = plots.scan_figure(lengths, losses)
    ax = fig.axes[0]
    assert ax.lines[1].get_xdata()[0] == pytest.approx(425)   # minimum marked
    assert "425" in ax.get_legend().get_texts()[0].get_text()
    render(fig, tmp_path / "scan.png")
    explicit = plots.scan_figure(lengths, losses, best=430.5)
    assert explicit.axes[0].lines[1].get_xdata()[0] == pytest.approx(430.5)
    with pytest.raises(ValueError, match="lengths"):
        plots.scan_figure(lengths, losses[:-1])


def test_tracking_figure(tmp_path):
    mag = chirp_magnitude()
    ridge = np.linspace(5, M - 5, N).astype(int)
    est = FREQS[ridge] + 3.0
    truth_t = np.linspace(0, TIMES[-1], 500)
    truth_f = np.interp(truth_t, TIMES, FREQS[ridge])
    fig = plots.tracking_figure(mag, TIMES, FREQS, TIMES, est, (truth_t, truth_f), "ridge")
    assert "MSE 9" in fig.axes[0].get_title()               # 3 Hz off everywhere → 9 Hz²
    assert len(fig.axes) == 3                                # map, colour bar, error panel
    render(fig, tmp_path / "tracking.png")
    mapping = {"time_s": truth_t, "f_hz": truth_f}
    fig2 = plots.tracking_figure(mag, TIMES, FREQS, TIMES, est, mapping)
    assert "MSE 9" in fig2.axes[0].get_title()
    plain = plots.tracking_figure(mag, TIMES, FREQS, TIMES, est)
    assert len(plain.axes) == 2
    with pytest.raises(ValueError):
        plots.tracking_figure(mag, TIMES, FREQS, TIMES, est[:-1])


def _imported_modules(module) -> set[str]:
    tree = ast.parse(Path(module.__file__).read_text())
    names = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            names.update(a.name for a in node.names)
        elif isinstance(node, ast.ImportFrom) and node.level == 0:
            names.add(node.module)
    return names


def test_module_boundaries():
    """plots: no pyplot (no global figure state), io: no click/matplotlib, synth: numpy only;
    none of them pulls in torch."""
    from dstft_cli import io, synth

    def roots(module):
        return {name.split(".")[0] for name in _imported_modules(module)}

    assert "matplotlib.pyplot" not in _imported_modules(plots)
    assert not roots(plots) & {"torch", "click"}
    assert not roots(io) & {"torch", "click", "matplotlib"}
    assert roots(synth) <= {"__future__", "collections", "typing", "numpy"}


# --------------------------------------------------------------------------------------------
# figure options


@pytest.mark.parametrize("kwargs,option", [
    ({"fmin": 2000, "fmax": 1000}, "fmax"), ({"tmin": 0.5, "tmax": 0.5}, "tmax"),
    ({"fmin": -1}, "fmin"), ({"cmap": "no-such-map"}, "cmap"), ({"formats": ("png", "gif")}, "formats"),
    ({"formats": ()}, "formats"), ({"ref": 0}, "ref"), ({"ref": "loudest"}, "ref"),
    ({"db_range": float("nan")}, "db_range"), ({"dpi": -3}, "dpi"), ({"figsize": (4,)}, "figsize"),
    ({"freq_scale": "mel"}, "freq_scale"), ({"theta_unit": "s"}, "theta_unit"),
])
def test_figure_options_reject(kwargs, option):
    with pytest.raises(plots.FigureOptionError) as info:
        plots.FigureOptions(**kwargs)
    assert info.value.option == option
    assert str(info.value).startswith(f"{option}: ") and "\n" not in str(info.value)


def test_figure_options_normalise():
    o = plots.FigureOptions(ref="PEAK", formats=["SVG", "png", "svg"], figsize=[4, "3"], fmin=0)
    assert o.ref == "peak" and o.db_label == "dB re peak"
    assert o.formats == ("svg", "png") and o.figsize == (4.0, 3.0)
    assert plots.FigureOptions(ref="0.5").db_label == "dB re 0.5"
    assert plots.FigureOptions.from_mapping({"fmax": 4000, "formats": ["pdf"]}).fmax == 4000.0
    with pytest.raises(plots.FigureOptionError, match="^colour: unknown figure setting"):
        plots.FigureOptions.from_mapping({"colour": "red"})
    assert plots.FigureOptions().dpi == plots.DPI


def test_spectrogram_limits_reference_and_scale():
    mag = chirp_magnitude() * 0.5
    o = plots.FigureOptions(fmin=500, fmax=3000, tmin=0.05, tmax=0.2, db_range=40, ref=0.25,
                            figsize=(5, 3), dpi=72)
    fig = plots.spectrogram_figure(mag, TIMES, FREQS, "t", options=o)
    ax, cbar_ax = fig.axes
    assert ax.get_xlim() == (pytest.approx(0.05), pytest.approx(0.2))
    assert ax.get_ylim() == (pytest.approx(500), pytest.approx(3000))
    assert cbar_ax.get_ylabel() == "magnitude (dB re 0.25)"
    top = 20 * np.log10(0.5 / 0.25)                        # the visible peak, re 0.25
    assert ax.images[0].get_clim() == (pytest.approx(top - 40), pytest.approx(top))
    assert tuple(fig.get_size_inches()) == (5, 3) and fig.dpi == 72
    # only the cells that overlap the limits are drawn
    left, right, bottom, top_edge = ax.images[0].get_extent()
    assert left <= 0.05 < right and right - 0.2 < HOP / FS
    assert bottom <= 500 and top_edge >= 3000 and top_edge - 3000 < FS / (M - 1)
    peak = plots.spectrogram_figure(mag, TIMES, FREQS, options=plots.FigureOptions(db_range=30))
    assert peak.axes[1].get_ylabel() == "magnitude (dB re peak)"
    assert peak.axes[0].images[0].get_clim() == (pytest.approx(-30), pytest.approx(0))
    log = plots.spectrogram_figure(mag, TIMES, FREQS, options=plots.FigureOptions(freq_scale="log"))
    assert log.axes[0].get_yscale() == "log" and log.axes[0].get_ylim()[0] > 0
    assert log.axes[0].collections[0].get_array().size == (M - 1) * N     # the 0 Hz row left out
    titled = plots.spectrogram_figure(mag, TIMES, FREQS, "auto", options=plots.FigureOptions(title="Mine"))
    assert titled.axes[0].get_title() == "Mine"
    with pytest.raises(ValueError, match="no data"):
        plots.spectrogram_figure(mag, TIMES, FREQS, options=plots.FigureOptions(fmin=FS))


def test_padding_frames_marked():
    duration = N * HOP / FS
    half = np.full(N, 2.5 * HOP / FS)                       # frames within 2.5 hops of an end
    hit = plots.padding_frames(TIMES, half, duration)
    # t = 0, 1, 2 hops reach below 0; 38 and 39 hops reach past the end at 40 hops
    assert hit.tolist() == [True] * 3 + [False] * (N - 5) + [True] * 2
    fig = plots.spectrogram_figure(chirp_magnitude(), TIMES, FREQS, half_window_s=half,
                                   duration_s=duration)
    spans = fig.axes[0].patches
    assert len(spans) == 2
    xs = sorted((p.get_x(), p.get_x() + p.get_width()) for p in spans)
    assert xs[0] == (pytest.approx(-0.5 * HOP / FS), pytest.approx(2.5 * HOP / FS))
    assert xs[1] == (pytest.approx(37.5 * HOP / FS), pytest.approx(39.5 * HOP / FS))
    assert "past the signal" in fig.legends[0].get_texts()[0].get_text()
    none = plots.spectrogram_figure(chirp_magnitude(), TIMES, FREQS, half_window_s=0.0,
                                    duration_s=duration + 1)
    assert not none.axes[0].patches and not none.legends


def test_loss_figure_integer_ticks_and_stages():
    fig = plots.loss_figure([5.0, 4.0], "one iteration")
    ax = fig.axes[0]
    ticks = [t for t in ax.get_xticks() if ax.get_xlim()[0] <= t <= ax.get_xlim()[1]]
    assert ticks and all(float(t).is_integer() for t in ticks)
    history = [7.0] + list(np.linspace(6, 5, 10)) + list(np.linspace(5, 4, 20))
    staged = plots.loss_figure(history, stages=[("constant", 1), ("tf", 11)])
    ax = staged.axes[0]
    bounds = [line.get_xdata()[0] for line in ax.lines[2:]]
    assert bounds == [pytest.approx(0.5), pytest.approx(10.5)]
    top = ax.child_axes[0]                                   # stage names on the top axis
    assert [t.get_text() for t in top.get_xticklabels()] == ["constant", "tf"]
    np.testing.assert_allclose(top.get_xticks(), [5.5, 20.5])   # over the middle of each stage
    assert all(float(t).is_integer() for t in ax.get_xticks())


def _all_ylabels(fig) -> list[str]:
    """y labels of every axes and their secondary axes."""
    return [a.get_ylabel() for ax in fig.axes for a in (ax, *ax.child_axes)]


def test_theta_map_units_and_colour_range():
    rng = np.random.default_rng(4)
    nearly = 512 + 0.3 * rng.random((M, N))                 # θ that barely varies
    fig = plots.window_lengths_figure(nearly, TIMES, FREQS, sample_rate=FS,
                                      options=plots.FigureOptions(theta_unit="samples"))
    lo, hi = fig.axes[0].images[0].get_clim()
    assert hi - lo >= 0.02 * 512 - 1e-9 and lo <= nearly.min() and hi >= nearly.max()
    labels = _all_ylabels(fig)
    assert "window length (samples)" in labels and "ms" in labels   # both units shown
    spread = 16 + 1000 * rng.random((M, N))
    wide = plots.window_lengths_figure(spread, TIMES, FREQS, sample_rate=FS)
    lo, hi = wide.axes[0].images[0].get_clim()
    assert (lo, hi) == (pytest.approx(spread.min() * 1000 / FS), pytest.approx(spread.max() * 1000 / FS))
    assert {"window length (ms)", "samples"} <= set(_all_ylabels(wide))
    curve = plots.window_lengths_figure(np.linspace(100, 300, N), TIMES, FREQS, sample_rate=FS)
    assert curve.axes[0].get_ylabel() == "window length (ms)"
    assert "samples" in [a.get_ylabel() for a in curve.axes[0].child_axes]


def test_comparison_figure():
    fixed = chirp_magnitude() * 2.0
    theta = 100 + 800 * np.random.default_rng(5).random((M, N))
    fig = plots.comparison_figure(fixed, chirp_magnitude(), TIMES, FREQS, fixed_label="fixed θ",
                                  optimised_label="tf", window_length=theta, sample_rate=FS,
                                  title="x.wav", options=plots.FigureOptions(db_range=50))
    panels = [a for a in fig.axes if a.get_title()]
    assert [a.get_title() for a in panels] == ["fixed θ", "tf", "window length θ"]
    clims = [a.images[0].get_clim() for a in panels[:2]]
    # one scale for both spectrograms, 0 dB at the larger peak (the optimised one's is −6 dB)
    assert clims[0] == clims[1] == (pytest.approx(-50), pytest.approx(0))
    optimised_db = panels[1].images[0].get_array()
    assert optimised_db.max() == pytest.approx(20 * np.log10(0.5))
    assert any(a.get_ylabel() == "magnitude (dB re peak)" for a in fig.axes)
    assert any(a.get_ylabel() == "window length (ms)" for a in fig.axes)
    assert fig.get_suptitle() == "x.wav"
    two = plots.comparison_figure(fixed, fixed, TIMES, FREQS, fixed_label="a", optimised_label="b",
                                  window_length=400.0)
    assert len([a for a in two.axes if a.get_title()]) == 2
