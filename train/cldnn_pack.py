"""Train the CLDNN on a machine without the audio stack: a GPU box lent for a few minutes.

Such a machine has torch but neither librosa nor the data, and takes a small working tree, so
the training windows travel as a *pack* and the fold checkpoints come back:

1. here, ``python -m train cldnn-pack`` writes ``pack.npz``: every clip's cached log-mel
   windows as 8-bit JPEG images (0.59 dB steps; at quality 85, 1.7 dB RMS of coding noise
   and under a quarter of the raw size: 33 MiB for the 4Q set), and for each codec of
   :data:`train.pipeline.CODECS` one window per clip of the clip re-encoded through ffmpeg
   (chosen at random, seeded);
2. there, ``python -m train.cldnn_pack PACK --out DIR`` (numpy, Pillow, scikit-learn and
   torch only) cross-validates every variant of :data:`VARIANTS` on the artist-disjoint folds,
   all folds at once in worker processes, then trains each variant's final model for the
   median best epoch count, and writes the checkpoints and ``summary.json``;
3. here, ``python -m train cldnn-import`` scores the fold checkpoints on the exact cached
   log-mels (the JPEG coding only ever touches training inputs), then exports and cards the
   final model like ``python -m train cldnn`` (:func:`train.pipeline.finish_cldnn`).
"""

from __future__ import annotations

import argparse
import functools
import hashlib
import io
import itertools
import json
import logging
import multiprocessing
import time
from concurrent.futures import ProcessPoolExecutor
from dataclasses import replace
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
from numpy.typing import NDArray

if TYPE_CHECKING:
    from train.cldnn_train import TrainConfig
    from train.pipeline import Data

logger = logging.getLogger(__name__)

#: Pack layout version (bump when the arrays change meaning).
PACK_VERSION = 1
#: dB range mapped onto 0..255 (the front end floors at -100 dB; louder bins than +50 dB
#: do not occur in the 4Q clips, whose maximum is +40 dB).
DB_RANGE = (-100.0, 50.0)
#: What each variant trains on: the codec windows of the pack, and gain changes.
VARIANTS: dict[str, dict[str, Any]] = {
    "plain": {"codecs": False, "gain_db": None},
    "augmented": {"codecs": True, "gain_db": (-12.0, 6.0)},
}
#: Checkpoints per returned file (a lent machine returns files of at most 16 MiB).
PER_FILE = 3


# --- here: writing the pack -------------------------------------------------------------------

def encode_windows(logmel: NDArray[np.floating], quality: int = 85) -> list[bytes]:
    """JPEG images of log-mel windows (dB, shape (n, n_mels, frames)), 8 bits over
    :data:`DB_RANGE`."""
    from PIL import Image

    low, high = DB_RANGE
    scaled = (np.clip(np.asarray(logmel, dtype=np.float32), low, high) - low) / (high - low)
    images = np.round(scaled * 255).astype(np.uint8)
    out = []
    for image in images:
        buffer = io.BytesIO()
        Image.fromarray(image).save(buffer, format="JPEG", quality=quality)
        out.append(buffer.getvalue())
    return out


def decode_windows(blob: NDArray[np.uint8], offsets: NDArray[np.int64]) -> NDArray[np.float16]:
    """The windows of :func:`encode_windows`, back in dB, shape (n, n_mels, frames)."""
    from PIL import Image

    low, high = DB_RANGE
    images = [np.asarray(Image.open(io.BytesIO(blob[a:b].tobytes())), dtype=np.float32)
              for a, b in itertools.pairwise(offsets)]
    return (np.stack(images) / 255 * (high - low) + low).astype(np.float16)


def _codec_window(job: tuple[str, list[str], int]) -> NDArray[np.float16]:
    """One cached-layout window of a clip re-encoded with ffmpeg ``args``."""
    import tempfile

    from mer_models.audio import load_windows
    from mer_models.features import extract_features
    from train.data import CACHE_WINDOWS
    from train.pipeline import SERVING, encode

    path, args, window = job
    config = SERVING.with_windows(CACHE_WINDOWS)
    with tempfile.TemporaryDirectory() as tmp:
        windows = load_windows(encode(Path(path), Path(tmp), args), config).windows
    return extract_features(windows[window : window + 1], config).logmel[0].astype(np.float16)


def codec_windows(data: Data, name: str, args: list[str], chosen: NDArray[np.int64],
                  folder: Path, workers: int | None) -> NDArray[np.float16]:
    """The ``chosen`` window of every clip, re-encoded by ffmpeg with ``args``.

    Kept exact (float16 dB) in ``folder``, keyed by the codec, the windows, the clips and
    the feature settings, so that a pack of another quality or a benchmark
    (``bench/cldnn_codecs.py``) costs no re-encoding.

    Returns
    -------
    ndarray, shape (n_clips, n_mels, frames), float16
    """
    from train.data import CACHE_WINDOWS, cache_key
    from train.pipeline import SERVING

    payload = {"args": args, "windows": chosen.tolist(), "ids": data.features.song_ids.tolist(),
               "features": cache_key(SERVING.with_windows(CACHE_WINDOWS))}
    key = hashlib.sha256(json.dumps(payload).encode()).hexdigest()[:16]
    cached = folder / f"codec-{name}-{key}.npy"
    if cached.is_file():
        return np.load(cached)
    jobs = [(str(c.path), args, int(w)) for c, w in zip(data.clips, chosen, strict=True)]
    with ProcessPoolExecutor(max_workers=workers) as pool:
        windows = np.stack(list(pool.map(_codec_window, jobs, chunksize=8)))
    folder.mkdir(parents=True, exist_ok=True)
    np.save(cached, windows)
    logger.info("codec %s: %d windows", name, len(windows))
    return windows


def write_pack(data: Data, path: Path, *, quality: int = 85, seed: int = 0,
               workers: int | None = None, codec_cache: Path | None = None,
               codecs: dict[str, list[str]] | None = None) -> dict[str, Any]:
    """Write the pack of ``data`` (its cached windows and one codec window per clip and codec
    of ``codecs``, default :data:`train.pipeline.CODECS`).

    ``codec_cache`` keeps the re-encoded windows (default: the folder ``cldnn-codec`` beside
    ``path``'s folder, so that the pack's own folder holds the pack alone).

    Returns
    -------
    dict
        Counts and the file's size in bytes.
    """
    from train.pipeline import CODECS

    logmel = data.features.logmel
    n_clips, n_windows = logmel.shape[:2]
    rng = np.random.default_rng(seed)
    images = encode_windows(logmel.reshape(-1, *logmel.shape[2:]), quality)
    clip = np.repeat(np.arange(n_clips), n_windows)
    window = np.tile(np.arange(n_windows), n_clips)
    source = np.zeros(len(images), dtype=np.int64)
    codecs = CODECS if codecs is None else codecs
    for s, (name, args) in enumerate(codecs.items(), start=1):
        chosen = np.asarray(rng.integers(0, n_windows, size=n_clips), dtype=np.int64)
        windows = codec_windows(data, name, args, chosen,
                                 codec_cache or path.parent.parent / "cldnn-codec", workers)
        images += encode_windows(windows, quality)
        clip = np.concatenate([clip, np.arange(n_clips)])
        window = np.concatenate([window, chosen])
        source = np.concatenate([source, np.full(n_clips, s)])
    offsets = np.concatenate([[0], np.cumsum([len(b) for b in images])]).astype(np.int64)
    path.parent.mkdir(parents=True, exist_ok=True)
    np.savez(path, version=PACK_VERSION, blob=np.frombuffer(b"".join(images), dtype=np.uint8),
             offsets=offsets, clip=clip, window=window, source=source,
             sources=np.array(["original", *codecs]), labels=data.labels, folds=data.folds,
             song_ids=data.features.song_ids, quality=quality)
    return {"windows": len(images), "codec_windows": int(np.sum(source > 0)),
            "bytes": path.stat().st_size}


# --- there: training from the pack ------------------------------------------------------------

def load_pack(path: Path) -> dict[str, Any]:
    """The pack's arrays, windows decoded (``"x"``, float16 dB)."""
    with np.load(path) as pack:
        if int(pack["version"]) != PACK_VERSION:
            raise ValueError(f"{path}: pack version {int(pack['version'])}, "
                             f"expected {PACK_VERSION}")
        out = {key: pack[key] for key in pack.files if key != "blob"}
        out["x"] = decode_windows(pack["blob"], pack["offsets"])
    return out


def _split(pack: dict[str, Any], variant: str, train_clips: NDArray[np.bool_]
           ) -> tuple[NDArray[np.float16], NDArray[np.int64]]:
    """Training windows of ``train_clips``: the originals, and the codec windows if the
    variant uses them."""
    keep = train_clips[pack["clip"]]
    if not VARIANTS[variant]["codecs"]:
        keep &= pack["source"] == 0
    return pack["x"][keep], pack["labels"][pack["clip"][keep]]


@functools.lru_cache(maxsize=1)
def _worker_pack(path: str) -> dict[str, Any]:
    """The pack, decoded once per worker process (a worker runs a fold, then a final)."""
    return load_pack(Path(path))


def _train_job(job: dict[str, Any]) -> dict[str, Any]:
    """One training in a worker process: a fold (held out, validated on the next) or the
    final model (every clip, fixed epochs)."""
    import torch

    from train.cldnn_train import predict_windows, train_cldnn, window_f1

    logging.basicConfig(level=logging.INFO, force=True,
                        format=f"%(asctime)s {job['name']} %(message)s")
    torch.set_num_threads(1)
    pack, cfg, fold = _worker_pack(job["pack"]), job["config"], job["fold"]
    folds = pack["folds"]
    if fold is None:
        tx, ty = _split(pack, job["variant"], np.ones(len(folds), dtype=bool))
        vx = vy = None
    else:
        valid = (fold + 1) % 5
        tx, ty = _split(pack, job["variant"], (folds != fold) & (folds != valid))
        originals = pack["source"] == 0
        held = originals & (folds[pack["clip"]] == valid)
        vx, vy = pack["x"][held], pack["labels"][pack["clip"][held]]
    start = time.time()
    model, history = train_cldnn(tx, ty, vx, vy, cfg, score=window_f1, device=job["device"],
                                 deadline=job["deadline"])
    result: dict[str, Any] = {"name": job["name"], "variant": job["variant"], "fold": fold,
                              "history": history, "seconds": time.time() - start,
                              "windows": len(tx), **model.checkpoint()}
    if fold is not None:  # an indicative score on the JPEG-coded originals of the fold
        held = (pack["source"] == 0) & (folds[pack["clip"]] == fold)
        p = predict_windows(model.to(job["device"]), pack["x"][held], device=job["device"])
        model.cpu()
        clips = pack["clip"][held]
        order = np.unique(clips)
        mean = np.stack([p[clips == c].mean(axis=0) for c in order])
        result["approx_f1"] = window_f1(mean, pack["labels"][order])
    return result


def train_pack(pack_path: Path, out: Path, *, variants: list[str], cfg: TrainConfig,
               device: str, budget_s: float, jobs: int) -> dict[str, Any]:
    """Cross-validate every variant (all folds in parallel), then train the final models.

    Parameters
    ----------
    pack_path : Path
        A pack of :func:`write_pack`.
    out : Path
        Where the checkpoints (``{variant}-{i}.pt``, :data:`PER_FILE` each) and
        ``summary.json`` go.
    variants : list of str
        Keys of :data:`VARIANTS`.
    cfg : TrainConfig
        Optimisation and architecture; each variant sets its gain changes.
    device : str
        ``"cuda"`` or ``"cpu"``.
    budget_s : float
        Bounds the whole run: cross-validation may use 65 % of it, and no epoch starts after
        the end (the best epoch so far is kept).
    jobs : int
        Worker processes (trainings at once).

    Returns
    -------
    dict
        The summary also written to ``summary.json``.
    """
    import torch

    from train.cldnn_train import best_epoch, final_epochs

    start = time.time()
    with np.load(pack_path) as pack:
        folds = sorted(set(pack["folds"].tolist()))
        ids_digest = song_ids_digest(pack["song_ids"])
    context = multiprocessing.get_context("spawn")  # CUDA in workers needs spawn
    common = {"pack": str(pack_path), "device": device}
    cv_jobs = [{**common, "name": f"{v}-fold{k}", "variant": v, "fold": k,
                "config": _variant_config(cfg, v), "deadline": start + 0.65 * budget_s}
               for v in variants for k in folds]
    results: list[dict[str, Any]] = []
    with ProcessPoolExecutor(max_workers=jobs, mp_context=context) as pool:
        results += list(pool.map(_train_job, cv_jobs))
        summary: dict[str, Any] = {"device": _device_name(device), "torch": torch.__version__,
                                   "song_ids_sha256": ids_digest, "variants": {}}
        final_jobs = []
        for v in variants:
            runs = [r for r in results if r["variant"] == v]
            epochs = final_epochs([r["history"] for r in runs])
            summary["variants"][v] = {
                "best_epochs": [best_epoch(r["history"]) for r in runs], "final_epochs": epochs,
                "approx_macro_f1": [round(r["approx_f1"], 4) for r in runs],
                "seconds": [round(r["seconds"], 1) for r in runs],
                "windows": [r["windows"] for r in runs]}
            final_jobs.append({**common, "name": f"{v}-final", "variant": v, "fold": None,
                               "config": replace(_variant_config(cfg, v), epochs=epochs),
                               "deadline": start + budget_s})
        for final in pool.map(_train_job, final_jobs):
            results.append(final)
            # Fewer than planned when the budget ran out (then the schedule did not finish).
            summary["variants"][final["variant"]]["final_trained_epochs"] = len(
                final["history"])
    out.mkdir(parents=True, exist_ok=True)
    for v in variants:
        runs = [r for r in results if r["variant"] == v]
        for i in range(0, len(runs), PER_FILE):
            torch.save({r["name"]: {k: r[k] for k in ("fold", "config", "state", "history")}
                        for r in runs[i : i + PER_FILE]}, out / f"{v}-{i // PER_FILE}.pt")
        summary["variants"][v]["config"] = _variant_config(cfg, v).to_dict()
    summary["seconds"] = round(time.time() - start, 1)
    (out / "summary.json").write_text(json.dumps(summary, indent=2))
    return summary


def song_ids_digest(song_ids: NDArray[np.str_]) -> str:
    """What ties a pack's results to the clips (and their order) they were trained on."""
    return hashlib.sha256("\n".join(song_ids.tolist()).encode()).hexdigest()


def _variant_config(cfg: TrainConfig, variant: str) -> TrainConfig:
    return replace(cfg, gain_db=VARIANTS[variant]["gain_db"], threads=1)


def _device_name(device: str) -> str:
    import torch

    return torch.cuda.get_device_name() if device == "cuda" else "cpu"


def read_results(folder: Path, variant: str) -> dict[str, dict[str, Any]]:
    """The checkpoints of ``variant`` returned by :func:`train_pack`, by name
    (``{variant}-fold{k}``, ``{variant}-final``)."""
    import torch

    out: dict[str, dict[str, Any]] = {}
    for path in sorted(folder.glob(f"{variant}-*.pt")):
        out.update(torch.load(path, weights_only=True))
    if not out:
        raise FileNotFoundError(f"no checkpoints of variant {variant!r} in {folder}")
    return out


def main(argv: list[str] | None = None) -> None:
    """``python -m train.cldnn_pack PACK --out DIR``: train on a machine with torch alone."""
    import torch

    from train.cldnn_train import CPU_CONFIG, GPU_CONFIG

    parser = argparse.ArgumentParser(description=main.__doc__)
    parser.add_argument("pack", type=Path)
    parser.add_argument("--out", type=Path, required=True)
    parser.add_argument("--variants", nargs="+", default=list(VARIANTS), choices=list(VARIANTS))
    parser.add_argument("--epochs", type=int, default=None)
    parser.add_argument("--budget", type=float, default=420.0,
                        help="seconds for the whole run (cross-validation gets 65%%)")
    parser.add_argument("--jobs", type=int, default=10)
    parser.add_argument("--seed", type=int, default=0, help="initialisation and batch order")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(message)s")
    device = "cuda" if torch.cuda.is_available() else "cpu"
    cfg = GPU_CONFIG if device == "cuda" else CPU_CONFIG
    cfg = replace(cfg, seed=args.seed, epochs=args.epochs or cfg.epochs)
    summary = train_pack(args.pack, args.out, variants=args.variants, cfg=cfg, device=device,
                         budget_s=args.budget, jobs=args.jobs)
    print(f"{summary['device']}, torch {summary['torch']}, {summary['seconds']:.0f} s")
    for name, v in summary["variants"].items():
        print(f"{name}: macro-F1 on the JPEG-coded folds {np.mean(v['approx_macro_f1']):.3f} "
              f"{v['approx_macro_f1']}; best epochs {v['best_epochs']}, final "
              f"{v['final_epochs']} (trained {v['final_trained_epochs']}); seconds "
              f"{v['seconds']}")


if __name__ == "__main__":
    main()
