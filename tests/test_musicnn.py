"""musicnn: the front end, the shipped ONNX networks against TensorFlow, the clip embedding."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from numpy.typing import NDArray

import mer_models
from mer_models.config import AnalysisConfig
from mer_models.errors import ModelCardError, ParameterError
from mer_models.musicnn import (
    CPU_BATCH,
    HOP_LENGTH,
    N_FFT,
    N_MELS,
    PATCH_FRAMES,
    SAMPLE_RATE,
    OnnxMusicnn,
    log_mel,
    musicnn_patches,
    pool_embedding,
)
from tests.synth import SR, mood_clip

WEIGHTS = Path(mer_models.__file__).parent / "weights"
FIXTURE = Path(__file__).parent / "data" / "musicnn_parity.npz"
WINDOW = AnalysisConfig().window_samples  # 110,080 samples: 4.99 s at 22,050 Hz


@pytest.fixture(scope="module", params=["msd", "mtt"])
def network(request: pytest.FixtureRequest) -> tuple[str, OnnxMusicnn]:
    """Each shipped network, one onnxruntime thread."""
    key: str = request.param
    return key, OnnxMusicnn(WEIGHTS / f"musicnn-{key}-1.json", threads=1, prefer_gpu=False)


@pytest.fixture(scope="module")
def mtt() -> OnnxMusicnn:
    """The MagnaTagATune network (its tags include 'quiet' and 'loud')."""
    return OnnxMusicnn(WEIGHTS / "musicnn-mtt-1.json", threads=1, prefer_gpu=False)


def _windows(signal: NDArray[np.float32], n_windows: int = 3) -> NDArray[np.float32]:
    return np.resize(signal, n_windows * WINDOW).reshape(n_windows, WINDOW).astype(np.float32)


def _chirp(seconds: float = WINDOW / SR, amplitude: float = 0.5) -> NDArray[np.float32]:
    t = np.arange(int(seconds * SR)) / SR
    return (amplitude * np.sin(2 * np.pi * (100 * t + 400 * t**2))).astype(np.float32)


def _sine(hz: float, n: int = WINDOW, sr: int = SR) -> NDArray[np.float32]:
    return (0.5 * np.sin(2 * np.pi * hz * np.arange(n) / sr)).astype(np.float32)


def _music(amplitude: float) -> NDArray[np.float32]:
    clip = mood_clip("Q1", seconds=16, seed=1)
    return _windows(clip / np.abs(clip).max() * amplitude)


# --- parity with TensorFlow ----------------------------------------------------------------


def test_onnx_matches_tensorflow_fixture(network: tuple[str, OnnxMusicnn]) -> None:
    key, model = network
    with np.load(FIXTURE) as fixture:
        inputs = fixture["inputs"]
        assert inputs.shape == (2, PATCH_FRAMES, N_MELS)
        np.testing.assert_allclose(model.penultimate(inputs), fixture[f"{key}_penultimate"],
                                   rtol=0, atol=1e-4)
        np.testing.assert_allclose(model.taggram(inputs), fixture[f"{key}_taggram"],
                                   rtol=0, atol=1e-4)
        # The fixture is not trivial: the two patches give clearly different outputs.
        assert np.abs(np.diff(fixture[f"{key}_penultimate"], axis=0)).max() > 0.5


def test_front_end_still_makes_the_fixture_inputs() -> None:
    # The networks were checked on these front-end patches; a change of the front end shows here.
    from train.musicnn_convert import fixture_inputs

    with np.load(FIXTURE) as fixture:
        np.testing.assert_allclose(fixture_inputs(), fixture["inputs"], rtol=0, atol=1e-3)


# --- front end -----------------------------------------------------------------------------


@pytest.mark.parametrize("per_window", [1, 2, 3])
def test_patches_of_a_chirp_and_of_silence(per_window: int) -> None:
    chirp = musicnn_patches(_windows(_chirp()), patches_per_window=per_window)
    assert chirp.patches.shape == (3 * per_window, PATCH_FRAMES, N_MELS)
    assert chirp.patches.dtype == np.float32 and np.isfinite(chirp.patches).all()
    assert chirp.patches.max() > 3.0
    silence = musicnn_patches(np.zeros((2, WINDOW), np.float32), patches_per_window=per_window)
    assert silence.patches.shape == (2 * per_window, PATCH_FRAMES, N_MELS)
    assert np.array_equal(silence.patches, np.zeros_like(silence.patches))


def test_loud_audio_stays_finite() -> None:
    # musicnn's own extractor takes 10000 * mel in float16, which overflows past 65,504.
    patches = musicnn_patches(_windows(_sine(220.0) * 1.8)).patches
    assert np.isfinite(patches).all() and patches.max() > np.log10(1 + 65_504.0) + 1


def test_log_mel_matches_a_plain_numpy_reference(rng: np.random.Generator) -> None:
    import librosa
    import scipy.signal

    audio = rng.standard_normal(SAMPLE_RATE).astype(np.float32) * 0.2
    n_frames = 1 + (len(audio) - N_FFT) // HOP_LENGTH
    frames = np.stack([audio[i * HOP_LENGTH : i * HOP_LENGTH + N_FFT] for i in range(n_frames)])
    power = np.abs(np.fft.rfft(frames * scipy.signal.get_window("hann", N_FFT), axis=1)) ** 2
    mel = power @ librosa.filters.mel(sr=SAMPLE_RATE, n_fft=N_FFT, n_mels=N_MELS).T
    np.testing.assert_allclose(log_mel(audio), np.log10(1 + 10_000 * mel), rtol=1e-4, atol=1e-4)


def test_layout_is_frames_then_mel_bands() -> None:
    import librosa

    centres = librosa.mel_frequencies(n_mels=N_MELS + 2, fmax=SAMPLE_RATE / 2)[1:-1]
    patches = musicnn_patches(_sine(1000.0)[None]).patches
    assert set(patches[0].argmax(axis=1)) == {int(np.abs(centres - 1000.0).argmin())}
    # A click lights up one frame range, across the mel bands.
    click = np.zeros((1, WINDOW), np.float32)
    click[0, WINDOW // 2] = 1.0
    energy = musicnn_patches(click).patches[0].sum(axis=1)
    assert 0 < energy.argmax() < PATCH_FRAMES - 1
    assert (energy > 0.05 * energy.max()).sum() <= 4


@pytest.mark.parametrize(("per_window", "starts"), [(1, [62]), (2, [0, 124]), (3, [0, 62, 124])])
def test_patches_map_back_to_their_windows(per_window: int, starts: list[int]) -> None:
    import librosa

    tones = [300.0, 1000.0, 3000.0, 600.0]
    windows = np.stack([_sine(hz) for hz in tones])
    result = musicnn_patches(windows, patches_per_window=per_window)
    assert result.window_index.tolist() == [w for w in range(4) for _ in range(per_window)]
    assert result.start_frames.tolist() == starts * 4
    centres = librosa.mel_frequencies(n_mels=N_MELS + 2, fmax=SAMPLE_RATE / 2)[1:-1]
    bands = result.patches.mean(axis=1).argmax(axis=1)
    assert [float(centres[b]) for b in bands] == pytest.approx(
        [tones[w] for w in result.window_index], rel=0.1)


def test_patch_start_follows_the_audio() -> None:
    # A burst starting 1 s into the window lands 62.5 frames later in the 3-patch layout.
    windows = np.zeros((1, WINDOW), np.float32)
    windows[0, SR : SR + 2000] = _sine(1000.0, 2000)
    first, _, last = musicnn_patches(windows, patches_per_window=3).patches.sum(axis=2)
    assert abs(int(np.argmax(first > 1.0)) - SAMPLE_RATE // HOP_LENGTH) <= 2
    assert not (last > 1.0).any()  # frames 124-310 start after the burst ends


def test_sixteen_khz_input_is_not_resampled() -> None:
    audio = _sine(440.0, n=4 * SAMPLE_RATE, sr=SAMPLE_RATE)[None]
    patches = musicnn_patches(audio, sample_rate=SAMPLE_RATE).patches
    start = (1 + (len(audio[0]) - N_FFT) // HOP_LENGTH - PATCH_FRAMES) // 2
    np.testing.assert_array_equal(patches[0], log_mel(audio[0])[start : start + PATCH_FRAMES])


@pytest.mark.parametrize(("windows", "kwargs"), [
    (np.zeros(WINDOW, np.float32), {}),
    (np.zeros((0, WINDOW), np.float32), {}),
    (np.zeros((1, 2 * SR), np.float32), {}),
    (np.full((1, WINDOW), np.nan, np.float32), {}),
    (np.zeros((1, WINDOW), np.float32), {"patches_per_window": 0}),
    (np.zeros((1, WINDOW), np.float32), {"sample_rate": -1}),
])
def test_bad_windows_are_refused(windows: NDArray[np.float32], kwargs: dict[str, int]) -> None:
    with pytest.raises(ParameterError):
        musicnn_patches(windows, **kwargs)


# --- runner and cards ----------------------------------------------------------------------


def _copy_model(tmp_path: Path, key: str = "msd") -> Path:
    for suffix in (".json", ".onnx"):
        shutil.copy(WEIGHTS / f"musicnn-{key}-1{suffix}", tmp_path / f"musicnn-{key}-1{suffix}")
    return tmp_path / f"musicnn-{key}-1.json"


@pytest.mark.parametrize(("field", "value"), [
    ("sha256", "0" * 64),
    ("kind", "cldnn"),
    ("preprocessing", {"sample_rate": 22050}),
])
def test_a_card_that_does_not_match_is_refused(tmp_path: Path, field: str, value: object
                                               ) -> None:
    card_path = _copy_model(tmp_path)
    OnnxMusicnn(card_path, threads=1, prefer_gpu=False)  # the untouched copy loads
    card = json.loads(card_path.read_text())
    card[field] = card[field] | value if isinstance(value, dict) else value
    card_path.write_text(json.dumps(card))
    with pytest.raises(ModelCardError):
        OnnxMusicnn(card_path, threads=1, prefer_gpu=False)


def test_a_tampered_artifact_is_refused(tmp_path: Path) -> None:
    card_path = _copy_model(tmp_path)
    onnx_path = tmp_path / "musicnn-msd-1.onnx"
    onnx_path.write_bytes(onnx_path.read_bytes()[:-1] + b"\0")
    with pytest.raises(ModelCardError, match="sha256"):
        OnnxMusicnn(card_path, threads=1, prefer_gpu=False)


def test_cards_carry_source_licence_and_front_end() -> None:
    for key in ("msd", "mtt"):
        card = json.loads((WEIGHTS / f"musicnn-{key}-1.json").read_text())
        assert card["architecture"]["source"]["license"] == "ISC"
        assert len(card["architecture"]["source"]["wheel_sha256"]) == 64
        assert "Pons" in card["training"]["citation"] and len(card["classes"]) == 50
        assert {k: card["preprocessing"][k] for k in ("sample_rate", "n_fft", "hop_length",
                                                      "n_mels", "patch_frames")} == {
            "sample_rate": 16000, "n_fft": 512, "hop_length": 256, "n_mels": 96,
            "patch_frames": 187}
        assert card["architecture"]["parameters"] == 792_079
    assert "quiet" in OnnxMusicnn(WEIGHTS / "musicnn-mtt-1.json", threads=1).tags


@pytest.mark.parametrize("on_gpu", [False, True])
def test_embed_batches_patches_by_device(network: tuple[str, OnnxMusicnn], on_gpu: bool,
                                         monkeypatch: pytest.MonkeyPatch) -> None:
    # On the CPU, CPU_BATCH patches per call (a session keeps memory for its largest batch);
    # a GPU session takes every patch of the clip at once. Same values either way.
    _, model = network
    patches = musicnn_patches(_music(0.5), patches_per_window=3).patches  # 9 patches
    calls: list[int] = []
    session = model._session

    class Counting:
        def run(self, output: list[str], feed: dict[str, np.ndarray]) -> object:
            calls.append(len(next(iter(feed.values()))))
            return session.run(output, feed)

    monkeypatch.setattr(model, "_session", Counting())
    monkeypatch.setattr(model, "_batch_all", on_gpu)
    embedding = model.embed(patches)
    monkeypatch.undo()
    expected_calls = [9] if on_gpu else [min(CPU_BATCH, 9 - i) for i in range(0, 9, CPU_BATCH)]
    assert calls == expected_calls and embedding.shape == (400,)
    (whole,) = session.run([model.card.outputs[0].name], {model.card.inputs[0].name: patches})
    np.testing.assert_allclose(model.penultimate(patches), whole, rtol=0, atol=1e-6)
    np.testing.assert_allclose(embedding[:200], whole.mean(axis=0), atol=1e-5)
    np.testing.assert_allclose(embedding[200:], whole.std(axis=0), atol=1e-5)
    assert embedding[200:].max() > 0.05  # patches of a changing clip differ


def test_a_cpu_session_runs_in_small_batches(mtt: OnnxMusicnn) -> None:
    assert mtt.providers[0] == "CPUExecutionProvider" and not mtt._batch_all


def test_pool_embedding_of_one_patch_has_zero_spread() -> None:
    values = np.arange(200, dtype=np.float32)[None]
    assert np.array_equal(pool_embedding(values), np.concatenate([values[0], np.zeros(200)]))
    with pytest.raises(ParameterError):
        pool_embedding(np.zeros((0, 200)))


def test_penultimate_refuses_bad_patches(mtt: OnnxMusicnn) -> None:
    with pytest.raises(ParameterError):
        mtt.penultimate(np.zeros((1, 96, 187), np.float32))


def test_loudness_moves_the_embedding_less_than_the_content(
        network: tuple[str, OnnxMusicnn], rng: np.random.Generator) -> None:
    _, model = network

    def embed(windows: NDArray[np.float32]) -> NDArray[np.float32]:
        return model.embed(musicnn_patches(windows).patches)[:200]

    loud, softer = embed(_music(0.5)), embed(_music(0.25))
    noise = embed(_windows(rng.standard_normal(3 * WINDOW).astype(np.float32) * 0.1))
    assert np.linalg.norm(loud - softer) < 0.5 * np.linalg.norm(loud - noise)
    cosine = loud @ noise / np.linalg.norm(loud) / np.linalg.norm(noise)
    assert cosine < 0.5


def test_mtt_tags_hear_quiet_and_loud(mtt: OnnxMusicnn, rng: np.random.Generator) -> None:
    # The tags follow the input's level only if the front end scales it as in training.
    def tag(windows: NDArray[np.float32], name: str) -> float:
        return float(mtt.taggram(musicnn_patches(windows).patches)[:, mtt.tags.index(name)]
                     .mean())

    music, quiet = _music(0.5), _music(0.05)
    noise = _windows(rng.standard_normal(3 * WINDOW).astype(np.float32) * 0.3)
    assert tag(quiet, "quiet") > 2 * tag(music, "quiet")
    assert tag(noise, "loud") > 2 * tag(music, "loud")


def test_importing_the_module_stays_cheap() -> None:
    code = ("import sys, mer_models.musicnn; "
            "print(sorted({'librosa', 'onnxruntime', 'soxr'} & set(sys.modules)))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         check=True)
    assert out.stdout.strip() == "[]"
