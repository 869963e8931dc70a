"""Our metrics against the reference values of ../shared/metrics-ref/EXPECTED.md (§1, §2, §4, §5, §6).

Every pair is scored at its native rate, stereo mixed to mono by channel mean, trimmed to equal length,
exactly as EXPECTED.md describes. Skips cleanly when the shared folder is absent.
"""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from bench.metrics.base import compute, get_metric
from shared_paths import metrics_ref_file

PESQ_REF = "pesq/audio/speech.wav"
PESQ_DEG = "pesq/audio/speech_bab_0dB.wav"
CA01 = ("visqol/testdata/clean_speech/CA01_01.flac", "visqol/testdata/clean_speech/transcoded_CA01_01.flac")
STEELY = ("visqol/testdata/conformance_testdata_subset/steely48_stereo.flac",
          "visqol/testdata/conformance_testdata_subset/steely48_stereo_lp7.flac")
STRAUSS = ("visqol/testdata/conformance_testdata_subset/strauss48_stereo.flac",
           "visqol/testdata/conformance_testdata_subset/strauss48_stereo_lp35.flac")
SPEECH = (PESQ_REF, PESQ_DEG)
PAIRS = {"speech": SPEECH, "ca01": CA01, "steely": STEELY, "strauss": STRAUSS}


def _load_mono(rel: str) -> tuple[np.ndarray, int]:
    import soundfile as sf

    path = metrics_ref_file(rel)
    if not path.exists():
        pytest.skip(f"reference file {path} not present")
    data, rate = sf.read(str(path), dtype="float32", always_2d=True)
    return data.mean(axis=1), rate


_CACHE: dict[str, tuple[torch.Tensor, torch.Tensor, int]] = {}


def load_pair(key: str) -> tuple[torch.Tensor, torch.Tensor, int]:
    """(preds=degraded, target=reference, rate) as ``[1, T]`` float32 tensors of equal length."""
    if key not in _CACHE:
        ref, rate = _load_mono(PAIRS[key][0])
        deg, rate_deg = _load_mono(PAIRS[key][1])
        assert rate == rate_deg
        n = min(len(ref), len(deg))
        _CACHE[key] = (torch.from_numpy(deg[:n])[None], torch.from_numpy(ref[:n])[None], rate)
    return _CACHE[key]


def score(name: str, key: str, **options) -> float:
    preds, target, rate = load_pair(key)
    value = compute(get_metric(name), preds, target, sample_rate_hz=rate, **options)[0]
    assert value.ok, value.error
    return value.value


# ---------------------------------------------------------------------------------------------- §1 PESQ
def test_pesq_wb_bit_exact():
    assert score("pesq_wb", "speech") == 1.0832337141036987


def test_pesq_nb_bit_exact_with_16k_input():
    assert score("pesq_nb", "speech") == 1.6072081327438354


def test_pesq_silent_reference_is_nan_with_reason():
    # python-pesq tests/test_pesq.py L43-55: silent reference -> NoUtterancesError
    rng = np.random.default_rng(0)
    deg = torch.from_numpy(rng.uniform(-1, 1, 16000).astype(np.float32))[None]
    for name in ("pesq_wb", "pesq_nb"):
        v = compute(get_metric(name), deg, torch.zeros_like(deg), sample_rate_hz=16000)[0]
        assert math.isnan(v.value) and "silent" in v.error


def test_pesq_backend_errors_become_nan_with_reason(monkeypatch):
    import pesq as backend

    def raise_no_utterances(*args, **kwargs):
        raise backend.NoUtterancesError()

    rng = np.random.default_rng(0)
    x = torch.from_numpy(rng.uniform(-1, 1, 16000).astype(np.float32))[None]
    monkeypatch.setattr(backend, "pesq", raise_no_utterances)
    v = compute(get_metric("pesq_wb"), x, x, sample_rate_hz=16000)[0]
    assert math.isnan(v.value) and "no utterances" in v.error
    monkeypatch.undo()
    short = compute(get_metric("pesq_wb"), x[:, :3000], x[:, :3000], sample_rate_hz=16000)[0]
    assert math.isnan(short.value) and "shorter than 1/4 s" in short.error


# ---------------------------------------------------------------------------------------------- §2 STOI
def test_stoi_matches_matlab_reference():
    from bench.metrics.stoi import stoi

    preds, target, rate = load_pair("speech")
    # 16 kHz straight into pystoi, which resamples to 10 kHz internally (the route of the MATLAB reference)
    value = stoi(preds, target, sample_rate_hz=rate)[0].value
    assert round(value, 4) == 0.6739
    assert value == pytest.approx(0.6739177895331301, abs=1e-12)


def test_stoi_through_harness_resampler_at_10k():
    from bench.audio import resample

    preds, target, rate = load_pair("speech")
    spec = get_metric("stoi")
    assert spec.sample_rate_hz == 10000
    p = torch.from_numpy(resample(preds.numpy(), rate, 10000))
    t = torch.from_numpy(resample(target.numpy(), rate, 10000))
    value = compute(spec, p, t, sample_rate_hz=10000)[0].value
    assert round(value, 4) == 0.6739


def test_estoi_and_identity():
    from bench.metrics.stoi import estoi, stoi

    preds, target, rate = load_pair("speech")
    assert estoi(preds, target, sample_rate_hz=rate)[0].value == pytest.approx(0.39044999103355366, abs=1e-9)
    assert stoi(target, target, sample_rate_hz=rate)[0].value == pytest.approx(1.0, abs=1e-9)


# ---------------------------------------------------------------------------------------------- §4 SI-SDR
# own float64 value (tight) and DAC SISDRLoss (float32, sign flipped; within 1e-4 relative)
SI_SDR = {"speech": (0.10378976323555572, 0.10378841), "ca01": (7.384961003194796, 7.38496208),
          "steely": (21.29377033186818, 21.29377174), "strauss": (13.638690170292563, 13.63869095)}


@pytest.mark.parametrize("key", list(SI_SDR))
def test_si_sdr(key):
    own, dac = SI_SDR[key]
    value = score("si_sdr", key)
    assert value == pytest.approx(own, rel=1e-6)
    assert value == pytest.approx(dac, rel=1e-4)


# ---------------------------------------------------------------------------------------------- §5 mel
MEL = {"speech": (5.344351768493652, 3.1682798862457275), "ca01": (2.6564574241638184, 2.5342512130737305),
       "steely": (1.109200119972229, 1.215090274810791), "strauss": (4.6085405349731445, 3.956106662750244)}


@pytest.mark.parametrize("key", list(MEL))
def test_mel_distance_matches_dac(key):
    base_yml, class_defaults = MEL[key]
    assert score("mel_distance", key) == pytest.approx(base_yml, rel=1e-4)
    assert score("mel_distance", key, config="dac_class_defaults") == pytest.approx(class_defaults, rel=1e-4)


def test_mel_module_matches_metric_and_is_batched():
    from bench.metrics.mel import MultiScaleMelDistance

    preds, target, rate = load_pair("speech")
    module = MultiScaleMelDistance(sample_rate_hz=rate)
    both = module(torch.cat([preds, target]), torch.cat([target, target]))
    assert both.shape == (2,)
    assert both[0].item() == pytest.approx(MEL["speech"][0], rel=1e-4)
    assert both[1].item() == 0.0


# ---------------------------------------------------------------------------------------------- §6 LSD/APD
AP_BWE = {
    "speech": (1.6086669765149302, 1.4157219979640323, 1.3595263545627818, 1.3346333272512045),
    "ca01": (2.930656009319398, 1.7757777125615433, 1.43714131987525, 1.4426625293283861),
    "steely": (2.42052153996525, 1.4992281848636688, 1.032305460077892, 1.2165417202454165),
    "strauss": (4.378351498343774, 1.6438288653909585, 1.2118778860713708, 1.351598988129622),
}


@pytest.mark.parametrize("key", list(AP_BWE))
def test_lsd_and_phase_distances_match_ap_bwe_definition(key):
    lsd, ip, gd, iaf = AP_BWE[key]
    assert score("lsd", key) == pytest.approx(lsd, rel=1e-6)
    assert score("ip_distance", key) == pytest.approx(ip, rel=1e-6)
    assert score("gdd", key) == pytest.approx(gd, rel=1e-6)
    assert score("iaf_distance", key) == pytest.approx(iaf, rel=1e-6)


def _ap_bwe_matrix_form(preds: torch.Tensor, target: torch.Tensor) -> tuple[float, float]:
    """Upstream's own formulation (banded difference matrices) for GD and IAF, as an independent check."""
    window = torch.hann_window(2048, dtype=torch.float64)
    phase = [torch.angle(torch.stft(x.double(), 2048, 512, window=window, return_complex=True))
             for x in (preds, target)]
    pp, pt = phase

    def band(n: int) -> torch.Tensor:
        ones = torch.ones(n, n, dtype=torch.float64)
        return torch.triu(ones, 1) - torch.triu(ones, 2) - torch.eye(n, dtype=torch.float64)

    def wrap(x: torch.Tensor) -> torch.Tensor:
        return x - torch.round(x / (2 * np.pi)) * 2 * np.pi

    gd = band(pp.shape[1])
    gd_r, gd_g = pt.permute(0, 2, 1) @ gd, pp.permute(0, 2, 1) @ gd
    iaf = band(pp.shape[2])
    iaf_r, iaf_g = pt @ iaf, pp @ iaf
    return (wrap(gd_r - gd_g).square().mean(dim=1).sqrt().mean().item(),
            wrap(iaf_r - iaf_g).square().mean(dim=1).sqrt().mean().item())


def test_phase_distances_equal_upstream_matrix_formulation():
    preds, target, rate = load_pair("speech")
    gd, iaf = _ap_bwe_matrix_form(preds, target)
    assert score("gdd", "speech") == pytest.approx(gd, rel=1e-9)
    assert score("iaf_distance", "speech") == pytest.approx(iaf, rel=1e-9)
