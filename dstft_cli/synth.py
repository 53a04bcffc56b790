"""The paper's test signals (numpy only, deterministic for a given ``seed``).

Each generator returns ``(signal, sample_rate, truth)``: ``signal`` float64 of shape ``(frames,)``,
``sample_rate`` in Hz, ``truth`` a dict whose 1-D arrays of length ``frames`` are per-sample ground
truth (``time_s`` always, plus instantaneous frequencies) and whose other entries are plain Python
values (see :func:`truth_columns` and :func:`truth_metadata` to write them out).

- :func:`three_components` — Sec. VI-A: a sinusoidally frequency-modulated component, a stationary
  tone that the FM component comes close to around its frequency peak, and a short transient.
- :func:`shocks` — Sec. VI-B: damped oscillations of varying frequencies and durations at irregular
  times in white Gaussian noise at 20 dB SNR.
- :func:`harmonics` — Sec. VI-C style: a multi-harmonic signal whose fundamental varies smoothly
  with a few rapid excursions, in white noise.
- :func:`variable_period_sines` — Sec. VII-A: a data set of noisy sines with a varying period.

Noise is scaled so that the realised SNR (signal power over noise power, whole signal) is exactly
``snr_db``; the noise draws come from a separate random stream, so ``snr_db=None`` gives the clean
signal with the same components.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import numpy as np

__all__ = [
    "three_components", "shocks", "harmonics", "variable_period_sines", "add_noise", "snr_db",
    "truth_columns", "truth_metadata", "SIGNALS",
]

SynthResult = tuple[np.ndarray, float, dict[str, Any]]


def _rngs(seed: int) -> tuple[np.random.Generator, np.random.Generator]:
    """Independent streams for the signal's parameters and for its noise."""
    params, noise = np.random.SeedSequence(seed).spawn(2)
    return np.random.default_rng(params), np.random.default_rng(noise)


def _frames(duration: float, sample_rate: float) -> int:
    if not duration > 0 or not sample_rate > 0:
        raise ValueError(f"duration and sample_rate must be positive, got {duration=}, "
                         f"{sample_rate=}")
    n = int(round(duration * sample_rate))
    if n < 2:
        raise ValueError(f"{duration=} s at {sample_rate=} Hz gives fewer than 2 samples")
    return n


def snr_db(clean: np.ndarray, noisy: np.ndarray) -> float:
    """Measured SNR in dB of ``noisy`` against its ``clean`` part."""
    noise = np.asarray(noisy) - np.asarray(clean)
    return float(10 * np.log10(np.mean(np.square(clean)) / np.mean(np.square(noise))))


def add_noise(clean: np.ndarray, snr: float | None, rng: np.random.Generator) -> np.ndarray:
    """Add white Gaussian noise scaled so that the realised SNR is exactly ``snr`` dB."""
    if snr is None or np.isinf(snr):
        return clean.copy()
    noise = rng.standard_normal(clean.shape)
    noise -= noise.mean()
    target = np.sqrt(np.mean(np.square(clean)) / 10 ** (snr / 10))
    return clean + noise * (target / np.sqrt(np.mean(np.square(noise))))


def _phase(freq_hz: np.ndarray, sample_rate: float) -> np.ndarray:
    """Phase (rad) of a component with instantaneous frequency ``freq_hz`` (per sample)."""
    return 2 * np.pi * np.concatenate(([0.0], np.cumsum(freq_hz[:-1]))) / sample_rate


def three_components(duration: float = 1.0, sample_rate: float = 8000, seed: int = 0,
                     snr_db: float | None = None) -> SynthResult:
    """Sec. VI-A test signal: non-stationary + close stationary + transient components.

    With ``fs`` the sample rate and ``T`` the duration:

    - ``fm``: sinusoidal FM, f(t) = 0.1875 fs + 0.05 fs · sin(2π t / T) (1500 ± 400 Hz at 8 kHz),
      amplitude 1; its frequency peaks at 0.2375 fs at t = T/4.
    - ``tone``: stationary tone at 0.25 fs (2000 Hz at 8 kHz), amplitude 0.7 — within 0.0125 fs
      (100 Hz) of the FM component around t = T/4, far from it elsewhere.
    - ``transient``: a Hann-windowed burst of 5 ms at 0.375 fs (3000 Hz at 8 kHz), amplitude 1,
      starting at 0.6 T (± 0.05 T, drawn from ``seed``).

    A long window separates ``fm`` and ``tone`` near T/4 but smears the transient and the fast
    FM; a short one does the opposite — no single window length suits all three.
    """
    n = _frames(duration, sample_rate)
    rng, noise_rng = _rngs(seed)
    fs = float(sample_rate)
    t = np.arange(n) / fs
    phases = rng.uniform(0, 2 * np.pi, size=3)

    fm_hz = 0.1875 * fs + 0.05 * fs * np.sin(2 * np.pi * t / duration)
    fm = np.cos(_phase(fm_hz, fs) + phases[0])
    tone_hz = np.full(n, 0.25 * fs)
    tone = 0.7 * np.cos(2 * np.pi * tone_hz[0] * t + phases[1])

    burst_len = max(4, int(round(0.005 * fs)))
    onset = int(round((0.6 + rng.uniform(-0.05, 0.05)) * n))
    onset = min(max(onset, 0), max(n - burst_len, 0))
    burst_len = min(burst_len, n - onset)
    burst_hz = 0.375 * fs
    transient = np.zeros(n)
    k = np.arange(burst_len)
    transient[onset:onset + burst_len] = (np.hanning(burst_len + 2)[1:-1]
                                          * np.cos(2 * np.pi * burst_hz * k / fs + phases[2]))

    clean = fm + tone + transient
    signal = add_noise(clean, snr_db, noise_rng)
    transient_hz = np.full(n, np.nan)
    transient_hz[onset:onset + burst_len] = burst_hz
    truth = {
        "time_s": t,
        "fm_hz": fm_hz,
        "tone_hz": tone_hz,
        "transient_hz": transient_hz,
        "components": [
            {"name": "fm", "kind": "non-stationary (sinusoidal FM)", "amplitude": 1.0,
             "center_hz": 0.1875 * fs, "deviation_hz": 0.05 * fs, "modulation_hz": 1 / duration},
            {"name": "tone", "kind": "stationary", "amplitude": 0.7, "freq_hz": 0.25 * fs},
            {"name": "transient", "kind": "Hann-windowed burst", "amplitude": 1.0,
             "freq_hz": burst_hz, "onset_s": onset / fs, "duration_s": burst_len / fs},
        ],
        "snr_db": snr_db,
        "seed": seed,
    }
    return signal, fs, truth


def shocks(duration: float = 1.0, sample_rate: float = 8000, snr_db: float | None = 20,
           seed: int = 0, n_shocks: int = 6) -> SynthResult:
    """Sec. VI-B test signal: damped oscillations ("shocks") at irregular times, in white noise.

    Shock k is ``a_k · exp(-(t - t_k)/τ_k) · sin(2π f_k (t - t_k))`` for t ≥ t_k, with frequencies
    f_k spread over [0.06, 0.44] fs (shuffled), decay times τ_k in [2, 25] ms, amplitudes in
    [0.6, 1] and onsets t_k at irregular gaps over [0.05 T, 0.85 T]. White Gaussian noise makes the
    SNR exactly ``snr_db`` (default 20 dB; None for the clean signal).

    truth: ``onsets_s``, ``freqs_hz``, ``decays_s``, ``durations_s`` (time to decay to 1 %),
    ``amplitudes`` (lists, one entry per shock, in time order) and per sample ``time_s`` and
    ``freq_hz`` (the frequency of the shock that dominates each sample, NaN where none is active).
    """
    n = _frames(duration, sample_rate)
    if n_shocks < 1:
        raise ValueError(f"{n_shocks=} must be >= 1")
    rng, noise_rng = _rngs(seed)
    fs = float(sample_rate)
    t = np.arange(n) / fs

    gaps = rng.uniform(0.4, 1.6, size=n_shocks)
    starts = np.concatenate(([0.0], np.cumsum(gaps[:-1])))
    span = starts[-1] if n_shocks > 1 else 1.0
    onsets = duration * (0.05 + 0.80 * starts / span) if n_shocks > 1 else np.array([0.3 * duration])
    freqs = fs * rng.permutation(np.linspace(0.06, 0.44, n_shocks)) * rng.uniform(0.95, 1.05,
                                                                                  n_shocks)
    decays = rng.uniform(0.002, 0.025, size=n_shocks)
    amps = rng.uniform(0.6, 1.0, size=n_shocks)

    clean = np.zeros(n)
    dominant = np.zeros(n)
    freq_hz = np.full(n, np.nan)
    for t0, f, tau, a in zip(onsets, freqs, decays, amps, strict=True):
        i0 = int(np.ceil(t0 * fs))
        i1 = min(n, i0 + int(np.ceil(tau * np.log(100) * fs)) + 1)
        if i0 >= n:
            continue
        dt = t[i0:i1] - t0
        env = a * np.exp(-dt / tau)
        clean[i0:i1] += env * np.sin(2 * np.pi * f * dt)
        stronger = env > dominant[i0:i1]
        dominant[i0:i1] = np.where(stronger, env, dominant[i0:i1])
        freq_hz[i0:i1] = np.where(stronger, f, freq_hz[i0:i1])

    signal = add_noise(clean, snr_db, noise_rng)
    truth = {
        "time_s": t,
        "freq_hz": freq_hz,
        "onsets_s": onsets.tolist(),
        "freqs_hz": freqs.tolist(),
        "decays_s": decays.tolist(),
        "durations_s": (decays * np.log(100)).tolist(),
        "amplitudes": amps.tolist(),
        "snr_db": snr_db,
        "seed": seed,
    }
    return signal, fs, truth


def _smooth_noise(rng: np.random.Generator, n: int, sample_rate: float, cutoff_hz: float
                  ) -> np.ndarray:
    """Zero-mean, unit-peak random curve band-limited to ``cutoff_hz`` (FFT masking)."""
    spec = np.fft.rfft(rng.standard_normal(n))
    f = np.fft.rfftfreq(n, 1 / sample_rate)
    spec[f > cutoff_hz] = 0
    spec[0] = 0
    curve = np.fft.irfft(spec, n)
    peak = np.max(np.abs(curve))
    return curve / peak if peak > 0 else curve


def harmonics(duration: float = 2.0, sample_rate: float = 8000, n_harmonics: int = 10,
              seed: int = 0, snr_db: float | None = 20, f0_range: tuple[float, float] | None = None
              ) -> SynthResult:
    """Sec. VI-C style multi-harmonic signal with a varying fundamental f0(t).

    f0 rises smoothly (a tanh ramp) across ``f0_range`` (default 0.015–0.025 fs, i.e. 120–200 Hz
    at 8 kHz), wanders slowly (band-limited noise below 2 Hz, ±4 % of the range mid-point) and
    makes three rapid excursions (Gaussian bumps of 20–50 ms, ±15 % of the mid-point) at random
    times. The signal is ``Σ_k a_k cos(k φ(t) + φ_k)`` for k = 1 … n_harmonics with φ' = 2π f0,
    a_k ∝ 1/√k (with a ±30 % random spread), plus white noise at ``snr_db`` (default 20 dB).
    The highest harmonic stays below 0.45 fs.

    truth: per sample ``time_s`` and ``f0_hz``; also ``n_harmonics`` and ``amplitudes``.
    """
    n = _frames(duration, sample_rate)
    if n_harmonics < 1:
        raise ValueError(f"{n_harmonics=} must be >= 1")
    rng, noise_rng = _rngs(seed)
    fs = float(sample_rate)
    lo, hi = f0_range if f0_range is not None else (0.015 * fs, 0.025 * fs)
    if not 0 < lo <= hi:
        raise ValueError(f"bad {f0_range=}")
    t = np.arange(n) / fs
    mid = 0.5 * (lo + hi)

    ramp = lo + (hi - lo) * 0.5 * (1 + np.tanh((t / duration - 0.5) * 6))
    wander = 0.04 * mid * _smooth_noise(rng, n, fs, cutoff_hz=2.0)
    bumps = np.zeros(n)
    for centre in np.sort(rng.uniform(0.15, 0.85, size=3)) * duration:
        width = rng.uniform(0.02, 0.05)
        bumps += rng.choice([-1.0, 1.0]) * 0.15 * mid * np.exp(-0.5 * ((t - centre) / width) ** 2)
    f0 = ramp + wander + bumps
    limit = 0.45 * fs / n_harmonics
    if f0.max() > limit:
        raise ValueError(f"{n_harmonics} harmonics of f0 up to {f0.max():.1f} Hz exceed 0.45 × "
                         f"{fs:g} Hz; lower f0_range or n_harmonics")

    amps = rng.uniform(0.7, 1.3, size=n_harmonics) / np.sqrt(np.arange(1, n_harmonics + 1))
    offsets = rng.uniform(0, 2 * np.pi, size=n_harmonics)
    phi = _phase(f0, fs)
    clean = np.zeros(n)
    for k in range(1, n_harmonics + 1):
        clean += amps[k - 1] * np.cos(k * phi + offsets[k - 1])
    clean /= np.max(np.abs(clean))
    signal = add_noise(clean, snr_db, noise_rng)
    truth = {
        "time_s": t,
        "f0_hz": f0,
        "n_harmonics": int(n_harmonics),
        "amplitudes": (amps / np.max(np.abs(amps))).tolist(),
        "snr_db": snr_db,
        "seed": seed,
    }
    return signal, fs, truth


def variable_period_sines(n_signals: int = 32, duration: float = 1.0, sample_rate: float = 8000,
                          seed: int = 0, snr_db: float | None = 10
                          ) -> list[tuple[np.ndarray, np.ndarray]]:
    """Sec. VII-A data set: ``n_signals`` sines whose period varies, in white noise.

    Signal j has f_j(t) = c_j + d_j sin(2π r_j t + ψ_j) with centre c_j ∈ [0.08, 0.30] fs,
    deviation d_j ∈ [0.005, 0.04] fs and modulation rate r_j ∈ [0.5, 3] Hz, amplitude 1, plus noise
    at ``snr_db``. Returns a list of ``(signal, f_hz)``, both float64 of length
    ``round(duration · sample_rate)``, ``f_hz`` the true instantaneous frequency per sample.
    """
    n = _frames(duration, sample_rate)
    if n_signals < 1:
        raise ValueError(f"{n_signals=} must be >= 1")
    fs = float(sample_rate)
    t = np.arange(n) / fs
    out = []
    for child in np.random.SeedSequence(seed).spawn(n_signals):
        rng, noise_rng = (np.random.default_rng(s) for s in child.spawn(2))
        centre = rng.uniform(0.08, 0.30) * fs
        deviation = rng.uniform(0.005, 0.04) * fs
        rate = rng.uniform(0.5, 3.0)
        psi, phase0 = rng.uniform(0, 2 * np.pi, size=2)
        f_hz = centre + deviation * np.sin(2 * np.pi * rate * t + psi)
        clean = np.cos(_phase(f_hz, fs) + phase0)
        out.append((add_noise(clean, snr_db, noise_rng), f_hz))
    return out


def truth_columns(truth: dict[str, Any]) -> dict[str, np.ndarray]:
    """The per-sample arrays of a truth dict (``time_s`` first), e.g. for a CSV beside the WAV."""
    if "time_s" not in truth:
        raise ValueError("truth has no 'time_s' entry")
    n = len(truth["time_s"])
    cols = {"time_s": np.asarray(truth["time_s"], dtype=np.float64)}
    for name, value in truth.items():
        if name != "time_s" and isinstance(value, np.ndarray) and value.shape == (n,):
            cols[name] = value
    return cols


def truth_metadata(truth: dict[str, Any]) -> dict[str, Any]:
    """The non-per-sample entries of a truth dict, as plain JSON-friendly Python values."""
    cols = truth_columns(truth)

    def plain(v: Any) -> Any:
        if isinstance(v, dict):
            return {k: plain(x) for k, x in v.items()}
        if isinstance(v, (list, tuple)):
            return [plain(x) for x in v]
        if isinstance(v, np.ndarray):
            return plain(v.tolist())
        if isinstance(v, np.generic):
            return v.item()
        return v

    return {k: plain(v) for k, v in truth.items() if k not in cols}


#: ``dstft synth NAME OUT``: every entry takes ``duration=, sample_rate=, seed=, snr_db=``.
SIGNALS: dict[str, Callable[..., SynthResult]] = {
    "three-components": three_components,
    "shocks": shocks,
    "harmonics": harmonics,
}
