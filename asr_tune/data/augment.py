"""Training-time augmentation in the mel-power domain, so it works on cached features.

Every transform takes and returns the log mel power of ONE utterance, ``(frames, n_mels)``, and draws
its randomness from a ``numpy.random.Generator`` seeded per item by the batch sampler (so loader
workers differ, and a resumed run replays the same draws):

- vocal-tract-length perturbation: the frequency axis is warped by a factor in ``[1-v, 1+v]``
  (each mel band reads the band at ``f / alpha`` Hz, interpolated);
- additive noise at an SNR drawn from ``[snr, snr + span]`` dB: a noise power spectrum with a random
  spectral tilt and per-frame fluctuation is added to the signal power;
- reverberation: the power in each band is smeared forward in time by an exponential tail whose
  decay is set by an RT60 drawn up to ``reverb_rt60_s`` and a random direct-to-reverberant ratio;
- band-limiting (a channel that loses the high band): above a corner drawn from
  ``[lowpass_min_hz, 0.9 * Nyquist]`` the power rolls off linearly in dB to an attenuation drawn up
  to ``lowpass_db`` at the top band. Applied before the noise, so weak high-band cues (the frication
  of /s/, /f/) can sink below the noise floor as on a poor microphone; a static roll-off alone
  would be undone by per-utterance mean normalisation.

Speed perturbation is not here: it changes the waveform, so the cache keeps one entry per factor.
"""
from __future__ import annotations

import math

import numpy as np
import torch
import torch.nn.functional as F

from asr_tune.config import FeatureConfig

TILT_RANGE = 2.0  # noise spectral tilt: gain from e^-1 to e^+1 across the band, at most
DRR_DB_RANGE = (0.0, 12.0)  # direct-to-reverberant ratio of the simulated room, dB
NOISE_GAMMA_SHAPE = 4.0  # per-frame fluctuation of the noise power (gamma shape; large = steady)
DECIBELS_PER_RT60 = 60.0


def _hz_to_mel(f: np.ndarray) -> np.ndarray:
    return 2595.0 * np.log10(1.0 + f / 700.0)  # the HTK scale torchaudio's MelSpectrogram uses


def _mel_to_hz(m: np.ndarray) -> np.ndarray:
    return 700.0 * (10.0 ** (m / 2595.0) - 1.0)


def band_centres_hz(n_mels: int, sample_rate: int) -> np.ndarray:
    """Centre frequency of each mel band (HTK scale, ``n_mels`` bands up to Nyquist)."""
    return _mel_to_hz(_mel_step(n_mels, sample_rate) * np.arange(1, n_mels + 1))


def _mel_step(n_mels: int, sample_rate: int) -> float:
    return float(_hz_to_mel(np.array(sample_rate / 2.0))) / (n_mels + 1)


def vtlp_positions(n_mels: int, sample_rate: int, alpha: float) -> np.ndarray:
    """Fractional source band index that each output band reads for warp factor ``alpha``."""
    centres = band_centres_hz(n_mels, sample_rate)
    step = _mel_step(n_mels, sample_rate)
    return np.clip(_hz_to_mel(centres / alpha) / step - 1.0, 0.0, n_mels - 1.0)


def vtlp(logp: torch.Tensor, alpha: float, sample_rate: int) -> torch.Tensor:
    pos = torch.from_numpy(vtlp_positions(logp.shape[1], sample_rate, alpha)).to(logp.dtype)
    lo = pos.floor().long()
    hi = (lo + 1).clamp_max(logp.shape[1] - 1)
    w = pos - lo
    return logp[:, lo] * (1 - w) + logp[:, hi] * w


def add_noise(logp: torch.Tensor, snr_db: float, rng: np.random.Generator) -> torch.Tensor:
    power = logp.exp()
    n_frames, n_mels = power.shape
    tilt = np.exp(rng.uniform(-TILT_RANGE, TILT_RANGE) / 2 * np.linspace(-1.0, 1.0, n_mels))
    fluct = rng.gamma(NOISE_GAMMA_SHAPE, 1.0 / NOISE_GAMMA_SHAPE, size=(n_frames, n_mels))
    noise = torch.from_numpy(tilt[None, :] * fluct).to(power.dtype)
    level = power.sum(1).mean() / noise.sum(1).mean().clamp_min(1e-10) * 10.0 ** (-snr_db / 10.0)
    return (power + noise * level).clamp_min(1e-10).log()


def lowpass(logp: torch.Tensor, corner_hz: float, depth_db: float, sample_rate: int) -> torch.Tensor:
    """Roll the power off above ``corner_hz``: 0 dB at the corner to ``-depth_db`` at Nyquist."""
    f = band_centres_hz(logp.shape[1], sample_rate)
    nyq = sample_rate / 2.0
    ramp = np.clip((f - corner_hz) / max(nyq - corner_hz, 1e-6), 0.0, 1.0)
    gain_log = torch.from_numpy(-depth_db * ramp * math.log(10.0) / 10.0).to(logp.dtype)
    return logp + gain_log[None, :]


def reverberate(logp: torch.Tensor, rt60_s: float, drr_db: float, hop_s: float) -> torch.Tensor:
    """Forward exponential smear per band: ``y[t] = x[t] + sum_k g d^k x[t-k]``."""
    decay = 10.0 ** (-DECIBELS_PER_RT60 / 10.0 * hop_s / rt60_s)  # power decay per frame
    n_taps = max(1, min(int(math.ceil(rt60_s / hop_s)), logp.shape[0]))
    taps = decay ** np.arange(1, n_taps + 1)
    taps *= 10.0 ** (-drr_db / 10.0) / taps.sum()
    kernel = torch.from_numpy(np.concatenate([[1.0], taps])[::-1].copy()).to(logp.dtype)
    power = logp.exp().T.unsqueeze(1)  # (F, 1, T)
    tail = F.conv1d(F.pad(power, (n_taps, 0)), kernel.view(1, 1, -1))
    return tail.squeeze(1).T.clamp_min(1e-10).log()


class Augmenter:
    """The configured chain; ``active`` is False when nothing is switched on."""

    def __init__(self, cfg: FeatureConfig, sample_rate: int) -> None:
        self.cfg, self.sr = cfg, sample_rate
        self.hop_s = cfg.hop_ms / 1000.0
        self.active = bool(cfg.vtlp or (cfg.noise_snr_db and cfg.noise_prob) or cfg.reverb_prob
                           or (cfg.lowpass_prob and cfg.lowpass_db))

    def __call__(self, logp: torch.Tensor, rng: np.random.Generator) -> torch.Tensor:
        c = self.cfg
        if c.vtlp:
            logp = vtlp(logp, float(rng.uniform(1 - c.vtlp, 1 + c.vtlp)), self.sr)
        if c.reverb_prob and rng.random() < c.reverb_prob:
            logp = reverberate(logp, float(rng.uniform(0.1, max(c.reverb_rt60_s, 0.1))),
                               float(rng.uniform(*DRR_DB_RANGE)), self.hop_s)
        if c.lowpass_prob and c.lowpass_db and rng.random() < c.lowpass_prob:
            top = 0.9 * self.sr / 2.0
            corner = float(rng.uniform(min(c.lowpass_min_hz, top), top))
            logp = lowpass(logp, corner, float(rng.uniform(0.0, c.lowpass_db)), self.sr)
        if c.noise_snr_db and rng.random() < c.noise_prob:
            logp = add_noise(logp, float(rng.uniform(c.noise_snr_db, c.noise_snr_db + c.noise_snr_span_db)), rng)
        return logp
