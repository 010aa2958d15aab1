"""Convert the musicnn checkpoints of its PyPI wheel into ONNX models with cards.

``python -m train.musicnn_convert [--out DIR] [--venv DIR]`` (or ``python -m train
convert-musicnn``) builds a throwaway virtualenv with TensorFlow and tf2onnx, fetches
``musicnn==0.1.0`` (ISC licence, Pons & Serra 2019) and checks its sha256, rebuilds the MSD and
MTT networks from their checkpoints, freezes them with the penultimate layer and the taggram as
outputs, converts them to ONNX (opset 17, dynamic batch) and writes the cards and a parity
fixture (TensorFlow's outputs on two fixed patches) for ``tests/test_musicnn.py``.

TensorFlow never enters the project's environment: this file is also run as a script by the
throwaway venv's python (``--tf-stage``), so at module level it imports only the standard
library and numpy. The network is rebuilt from the architecture of the paper with plain
``tf.nn`` ops (no musicnn code), restored strictly (every model variable of the checkpoint,
values checked) and compared with the authors' own inference graph from the ``.meta`` file.
"""

from __future__ import annotations

import argparse
import ast
import hashlib
import json
import logging
import os
import subprocess
import sys
import time
import zipfile
from pathlib import Path
from typing import Any

import numpy as np

logger = logging.getLogger(__name__)

ROOT = Path(__file__).resolve().parents[1]
WHEEL = "musicnn==0.1.0"
WHEEL_SHA256 = "f38a4890c648c1ddbb141c5d96d2b0a8cfcd36746002d896989f7b88beb65cfa"
#: Installed with dependencies; tf2onnx itself goes in with --no-deps (older releases pin a
#: protobuf that breaks TensorFlow), so its own needs are listed here. The graph is built with
#: tf.nn ops, so neither tf_keras nor TF_USE_LEGACY_KERAS is needed.
REQUIREMENTS = ("tensorflow-cpu==2.21.0", "onnx==1.23.2", "requests", "flatbuffers>=1.12",
                "protobuf>=3.20")
NO_DEPS = ("tf2onnx==1.17.0",)
OPSET = 17
#: Network name in the wheel, per card kind suffix.
NETWORKS = {"msd": "MSD_musicnn", "mtt": "MTT_musicnn"}
TAG_LISTS = {"msd": "MSD_LABELS", "mtt": "MTT_LABELS"}
DATASETS = {
    "msd": "Million Song Dataset audio previews with the 50 most frequent Last.fm tags",
    "mtt": "MagnaTagATune with its 50 most frequent tags",
}
CITATION = ("J. Pons, X. Serra, 'musicnn: pre-trained convolutional neural networks for music "
            "audio tagging', ISMIR 2019 late-breaking/demo, arXiv:1909.06654")
TOLERANCE = 1e-4
PATCH_FRAMES, N_MELS = 187, 96
DEFAULT_OUT = ROOT / "mer_models" / "weights"
DEFAULT_VENV = ROOT / ".cache" / "musicnn-convert-venv"
DEFAULT_FIXTURE = ROOT / "tests" / "data" / "musicnn_parity.npz"
DEFAULT_WORK = ROOT / ".cache" / "musicnn-convert"


# --- the TensorFlow stage: runs inside the throwaway venv --------------------------------------


def _tf_stage(spec: dict[str, Any]) -> None:
    import tensorflow as tf
    import tf2onnx

    tf.compat.v1.disable_eager_execution()
    inputs = np.load(spec["inputs"])
    prefix = spec["checkpoint"]
    reader = tf.compat.v1.train.NewCheckpointReader(prefix)
    model_vars = {name for name in reader.get_variable_to_shape_map()
                  if "Adam" not in name and not name.endswith("_power")}
    graph = tf.Graph()
    with graph.as_default():
        net = _Musicnn(tf, reader)
        melspec = tf.compat.v1.placeholder(tf.float32, [None, PATCH_FRAMES, N_MELS], "melspec")
        penultimate, logits = net(melspec)
        outputs = [tf.identity(penultimate, "penultimate"), tf.identity(tf.sigmoid(logits),
                                                                        "taggram")]
        missing = model_vars - set(net.variables)
        if missing:
            raise RuntimeError(f"checkpoint variables not used by the rebuilt graph: {missing}")
        saver = tf.compat.v1.train.Saver(var_list=net.variables)
        with tf.compat.v1.Session(graph=graph) as sess:
            # No initializer runs: a variable the restore missed fails loudly when read.
            saver.restore(sess, prefix)
            for name, variable in net.variables.items():
                if not np.array_equal(sess.run(variable), reader.get_tensor(name)):
                    raise RuntimeError(f"{name}: restored value differs from the checkpoint")
            values = sess.run(outputs, {melspec: inputs})
            frozen = tf.compat.v1.graph_util.convert_variables_to_constants(
                sess, graph.as_graph_def(), ["penultimate", "taggram"])
    reference = _authors_graph(tf, spec["meta"], reader, inputs)
    model_proto, _ = tf2onnx.convert.from_graph_def(
        frozen, name=spec["name"], input_names=["melspec:0"],
        output_names=["penultimate:0", "taggram:0"], opset=OPSET,
        tensors_to_rename={"melspec:0": "melspec", "penultimate:0": "penultimate",
                           "taggram:0": "taggram"})
    _save_onnx(model_proto, spec["onnx"], spec["metadata"])
    np.savez(spec["outputs"], penultimate=values[0], taggram=values[1])
    report = {
        "restored_variables": len(net.variables),
        "parameters": int(sum(reader.get_tensor(n).size for n in net.variables)),
        "max_abs_diff_vs_authors_graph": {
            "penultimate": float(np.abs(values[0] - reference[0]).max()),
            "taggram": float(np.abs(values[1] - reference[1]).max())},
        "libraries": {"tensorflow": tf.__version__, "tf2onnx": tf2onnx.__version__,
                      "onnx": __import__("onnx").__version__},
    }
    Path(spec["report"]).write_text(json.dumps(report, indent=2), encoding="utf-8")


class _Musicnn:
    """musicnn's layers as plain tf.nn ops over variables named as in the checkpoint.

    Front end: batch-normalised log-mel; two timbral convolutions (7 frames x 38 and 67 mel
    bands, 204 filters) and three temporal ones (128, 64, 32 frames x 1 band, 51 filters), each
    ReLU, batch norm and max over frequency. Mid end: three 7-frame 1-D convolutions with 64
    filters (the 2nd and 3rd residual), densely concatenated with the front end (753 channels).
    Back end: max and mean over time (interleaved per channel, 1506 values), batch norm, dense
    200 + ReLU + batch norm (the penultimate layer), dense 50 (tag logits).
    """

    EPSILON = 1e-3  # the batch-norm epsilon of tf.layers, which trained the checkpoints

    def __init__(self, tf: Any, reader: Any) -> None:
        self.tf = tf
        self.shapes = reader.get_variable_to_shape_map()
        self.variables: dict[str, Any] = {}
        self.counts: dict[str, int] = {}

    def _layer(self, kind: str, *names: str) -> list[Any]:
        # tf.layers numbered layers of a kind in creation order: conv2d, conv2d_1, ...
        count = self.counts.get(kind, 0)
        self.counts[kind] = count + 1
        scope = kind if count == 0 else f"{kind}_{count}"
        made = []
        for name in names:
            full = f"{scope}/{name}"
            variable = self.tf.compat.v1.get_variable(
                full.replace("/", "__"), shape=self.shapes[full], dtype=self.tf.float32,
                trainable=False)
            self.variables[full] = variable
            made.append(variable)
        return made

    def _norm(self, x: Any) -> Any:
        beta, gamma, mean, variance = self._layer(
            "batch_normalization", "beta", "gamma", "moving_mean", "moving_variance")
        return self.tf.nn.batch_normalization(x, mean, variance, beta, gamma, self.EPSILON)

    def _conv2d(self, x: Any, padding: str) -> Any:
        kernel, bias = self._layer("conv2d", "kernel", "bias")
        return self.tf.nn.relu(self.tf.nn.conv2d(x, kernel, 1, padding) + bias)

    def _conv1d(self, x: Any) -> Any:
        # The checkpoint's (7, channels, 1, filters) kernel spans all channels: a 1-D conv.
        kernel, bias = self._layer("conv2d", "kernel", "bias")
        kernel = self.tf.squeeze(kernel, 2)
        padded = self.tf.pad(x, [[0, 0], [3, 3], [0, 0]])
        return self._norm(self.tf.nn.relu(self.tf.nn.conv1d(padded, kernel, 1, "VALID") + bias))

    def _dense(self, x: Any) -> Any:
        kernel, bias = self._layer("dense", "kernel", "bias")
        return self.tf.matmul(x, kernel) + bias

    def __call__(self, melspec: Any) -> tuple[Any, Any]:
        tf = self.tf
        x = self._norm(melspec[..., None])
        timbral_input = tf.pad(x, [[0, 0], [3, 3], [0, 0], [0, 0]])
        front = [tf.reduce_max(self._norm(self._conv2d(timbral_input, "VALID")), axis=2)
                 for _ in range(2)]
        front += [tf.reduce_max(self._norm(self._conv2d(x, "SAME")), axis=2) for _ in range(3)]
        features = [tf.concat(front, axis=2)]
        for i in range(3):
            out = self._conv1d(features[-1])
            features.append(out if i == 0 else out + features[-1])
        stacked = tf.concat(features, axis=2)
        pooled = tf.stack([tf.reduce_max(stacked, 1), tf.reduce_mean(stacked, 1)], axis=2)
        flat = self._norm(tf.reshape(pooled, [-1, 2 * pooled.shape[1]]))
        penultimate = self._norm(tf.nn.relu(self._dense(flat)))
        return penultimate, self._dense(penultimate)


def _authors_graph(tf: Any, meta_path: str, reader: Any, inputs: np.ndarray) -> list[Any]:
    """Penultimate layer and taggram of the authors' inference graph (from the .meta file)."""
    from tensorflow.core.protobuf import meta_graph_pb2

    meta = meta_graph_pb2.MetaGraphDef()
    meta.ParseFromString(Path(meta_path).read_bytes())
    penultimate = "model/batch_normalization_10/batchnorm/add_1"
    graph_def = tf.compat.v1.graph_util.extract_sub_graph(meta.graph_def,
                                                          ["model/Sigmoid", penultimate])
    for node in graph_def.node:
        node.attr.pop("_output_shapes", None)
        if node.op == "VariableV2":  # freeze by hand: the value straight from the checkpoint
            value = reader.get_tensor(node.name)
            node.op = "Const"
            for key in list(node.attr):
                if key != "dtype":
                    del node.attr[key]
            node.attr["value"].tensor.CopyFrom(tf.make_tensor_proto(value))
    with tf.Graph().as_default() as graph, tf.compat.v1.Session(graph=graph) as sess:
        tf.compat.v1.import_graph_def(graph_def, name="")
        return list(sess.run([f"{penultimate}:0", "model/Sigmoid:0"],
                             {"model/Placeholder:0": inputs, "model/Placeholder_2:0": False}))


def _save_onnx(model: Any, path: str, metadata: dict[str, str]) -> None:
    import onnx

    for value in (*model.graph.input, *model.graph.output):
        value.type.tensor_type.shape.dim[0].dim_param = "batch"
    _canonical_names(model.graph)
    model.producer_name = "mood-companion train.musicnn_convert"
    for key, text in metadata.items():
        model.metadata_props.add(key=key, value=text)
    onnx.checker.check_model(model)
    onnx.save(model, path)


def _canonical_names(graph: Any) -> None:
    """Rename tf2onnx's ``name__<counter>`` tensors in graph order, for reproducible bytes.

    tf2onnx's counters (and which of two equal folded constants it keeps) follow Python set
    order, so the same graph would get other names, and another sha256, on every run.
    """
    import re

    pattern = re.compile(r"__\d+")
    tensors: dict[str, str] = {}
    for node in graph.node:
        for name in (*node.input, *node.output):
            if pattern.search(name) and name not in tensors:
                tensors[name] = f"tensor__{len(tensors)}"
    for i, node in enumerate(graph.node):
        node.input[:] = [tensors.get(n, n) for n in node.input]
        node.output[:] = [tensors.get(n, n) for n in node.output]
        node.name = f"{node.op_type}_{i}"
    for item in (*graph.initializer, *graph.value_info):
        item.name = tensors.get(item.name, item.name)
    ordered = sorted(graph.initializer, key=lambda t: t.name)
    graph.ClearField("initializer")
    graph.initializer.extend(ordered)


# --- the project side: venv, wheel, fixture, parity, cards -------------------------------------


def convert(out: Path, venv: Path, *, fixture: Path, work: Path) -> list[Path]:
    """Convert both networks; write ONNX files and cards to ``out`` and the parity fixture.

    Parameters
    ----------
    out : path
        Folder of the artifacts and cards (``mer_models/weights``).
    venv : path
        The throwaway virtualenv with TensorFlow (created or updated here).
    fixture : path
        Where the parity fixture (.npz) goes.
    work : path
        Scratch folder for the wheel and intermediate files.

    Returns
    -------
    list of Path
        The cards written.
    """
    work.mkdir(parents=True, exist_ok=True)
    out.mkdir(parents=True, exist_ok=True)
    python = ensure_venv(venv)
    wheel = fetch_wheel(python, work)
    extracted = _extract(wheel, work / "wheel")
    tags = _tag_lists(extracted / "musicnn" / "configuration.py")
    inputs = fixture_inputs()
    np.save(work / "fixture_inputs.npy", inputs)
    expected: dict[str, np.ndarray] = {"inputs": inputs}
    cards = []
    for key, network in NETWORKS.items():
        folder = extracted / "musicnn" / network
        onnx_path = out / f"musicnn-{key}-1.onnx"
        spec = {"name": f"musicnn-{key}", "checkpoint": f"{folder}/", "meta": str(folder / ".meta"),
                "inputs": str(work / "fixture_inputs.npy"), "onnx": str(onnx_path),
                "outputs": str(work / f"{key}_tf.npz"), "report": str(work / f"{key}.json"),
                "metadata": {"source": f"{WHEEL} ({network}), wheel sha256 {WHEEL_SHA256}",
                             "license": "ISC", "attribution": CITATION}}
        spec_path = work / f"{key}_spec.json"
        spec_path.write_text(json.dumps(spec), encoding="utf-8")
        logger.info("converting %s with TensorFlow in %s", network, venv)
        env = dict(os.environ, TF_CPP_MIN_LOG_LEVEL="2", CUDA_VISIBLE_DEVICES="-1",
                   TF_ENABLE_ONEDNN_OPTS="0", PYTHONHASHSEED="0",
                   PYTHONNOUSERSITE="1")
        subprocess.run([str(python), str(Path(__file__).resolve()), "--tf-stage",
                        str(spec_path)], check=True, env=env)
        report = json.loads((work / f"{key}.json").read_text(encoding="utf-8"))
        tf_out = np.load(work / f"{key}_tf.npz")
        diffs = _check_parity(onnx_path, inputs, tf_out, report)
        expected[f"{key}_penultimate"] = tf_out["penultimate"]
        expected[f"{key}_taggram"] = tf_out["taggram"]
        cards.append(_write_card(key, onnx_path, tags[key], report, diffs))
    fixture.parent.mkdir(parents=True, exist_ok=True)
    np.savez_compressed(fixture, allow_pickle=False, **expected)
    logger.info("wrote %s (%.0f KB)", fixture, fixture.stat().st_size / 1024)
    return cards


def ensure_venv(venv: Path) -> Path:
    """Create (once) the throwaway venv with TensorFlow, onnx and tf2onnx; its python."""
    python = venv / "bin" / "python"
    stamp = venv / ".musicnn-convert-stamp"
    wanted = json.dumps([REQUIREMENTS, NO_DEPS])
    if python.exists() and stamp.exists() and stamp.read_text(encoding="utf-8") == wanted:
        return python
    if not python.exists():
        logger.info("creating %s", venv)
        subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True)
    pip = [str(python), "-m", "pip", "install", "-q"]
    subprocess.run([*pip, "--upgrade", "pip"], check=True)
    subprocess.run([*pip, *REQUIREMENTS], check=True)
    subprocess.run([*pip, "--no-deps", *NO_DEPS], check=True)
    stamp.write_text(wanted, encoding="utf-8")
    return python


def fetch_wheel(python: Path, work: Path) -> Path:
    """Download the musicnn wheel (no dependencies) and check its sha256."""
    folder = work / "download"
    wheel = folder / "musicnn-0.1.0-py3-none-any.whl"
    if not wheel.exists():
        subprocess.run([str(python), "-m", "pip", "download", "-q", WHEEL, "--no-deps",
                        "--only-binary=:all:", "-d", str(folder)], check=True)
    digest = hashlib.sha256(wheel.read_bytes()).hexdigest()
    if digest != WHEEL_SHA256:
        raise RuntimeError(f"{wheel}: sha256 {digest} is not the expected {WHEEL_SHA256}")
    return wheel


def _extract(wheel: Path, folder: Path) -> Path:
    with zipfile.ZipFile(wheel) as archive:
        members = [m for m in archive.namelist()
                   if m.startswith(tuple(f"musicnn/{n}/" for n in NETWORKS.values()))
                   or m in ("musicnn/configuration.py", "musicnn-0.1.0.dist-info/LICENSE.md")]
        archive.extractall(folder, members)
    return folder


def _tag_lists(configuration: Path) -> dict[str, list[str]]:
    # Read as data (the wheel's module imports nothing, but is never executed here).
    values = {}
    for node in ast.parse(configuration.read_text(encoding="utf-8")).body:
        if isinstance(node, ast.Assign) and isinstance(node.targets[0], ast.Name):
            values[node.targets[0].id] = node.value
    return {key: list(ast.literal_eval(values[name])) for key, name in TAG_LISTS.items()}


def fixture_inputs() -> np.ndarray:
    """Two deterministic front-end patches: a chord with clicks, and a loud chirp with noise.

    The second one is loud enough that musicnn's float16 mel spectrogram would overflow.
    """
    from mer_models.config import AnalysisConfig
    from mer_models.musicnn import musicnn_patches

    config = AnalysisConfig()
    sr, n = config.sample_rate, config.window_samples
    t = np.arange(n) / sr
    rng = np.random.default_rng(2019)
    chord = sum(np.sin(2 * np.pi * 220 * 2 ** (s / 12) * h * t) / h
                for s in (0, 4, 7) for h in range(1, 5))
    clicks = np.zeros(n)
    for start in range(0, n - 600, int(0.4 * sr)):
        clicks[start : start + 600] += rng.standard_normal(600) * np.exp(-np.arange(600) / 80)
    chirp = np.sin(2 * np.pi * 60 * (t[-1] / np.log(120)) * (120 ** (t / t[-1]) - 1))
    windows = np.stack([0.1 * chord + 0.3 * clicks, 0.8 * chirp + 0.1 * rng.standard_normal(n)])
    return musicnn_patches(windows.astype(np.float32), sample_rate=sr).patches


def _check_parity(onnx_path: Path, inputs: np.ndarray, tf_out: Any,
                  report: dict[str, Any]) -> dict[str, float]:
    import onnxruntime as ort

    for name, diff in report["max_abs_diff_vs_authors_graph"].items():
        if diff > TOLERANCE:
            raise RuntimeError(f"rebuilt graph differs from the authors' on {name}: {diff:.2e}")
    session = ort.InferenceSession(str(onnx_path), providers=["CPUExecutionProvider"])
    penultimate, taggram = session.run(["penultimate", "taggram"], {"melspec": inputs})
    diffs = {"penultimate": float(np.abs(penultimate - tf_out["penultimate"]).max()),
             "taggram": float(np.abs(taggram - tf_out["taggram"]).max())}
    if max(diffs.values()) > TOLERANCE:
        raise RuntimeError(f"{onnx_path}: onnxruntime differs from TensorFlow: {diffs}")
    logger.info("%s: ONNX vs TensorFlow max abs diff %s; TensorFlow vs the authors' graph %s",
                onnx_path.name, diffs, report["max_abs_diff_vs_authors_graph"])
    return diffs


def _write_card(key: str, onnx_path: Path, tags: list[str], report: dict[str, Any],
                diffs: dict[str, float]) -> Path:
    from importlib.metadata import version

    import onnxruntime

    from mer_models.card import ModelCard, ModelKind, TensorSpec, TrainingData, sha256_file
    from mer_models.musicnn import FRONT_END, N_TAGS, PENULTIMATE_SIZE

    network = NETWORKS[key]
    kinds: dict[str, ModelKind] = {"msd": "musicnn-msd", "mtt": "musicnn-mtt"}
    card = ModelCard(
        name=f"musicnn-{key}", version="1", kind=kinds[key], artifact=onnx_path.name,
        sha256=sha256_file(onnx_path), classes=tags, preprocessing=FRONT_END,
        inputs=[TensorSpec(name="melspec", shape=[None, PATCH_FRAMES, N_MELS])],
        outputs=[TensorSpec(name="penultimate", shape=[None, PENULTIMATE_SIZE]),
                 TensorSpec(name="taggram", shape=[None, N_TAGS])],
        architecture={
            "network": "musicnn (musically motivated CNN): timbral and temporal front end, "
                       "dense mid end, max+mean temporal pooling back end",
            "parameters": report["parameters"],
            "restored_variables": report["restored_variables"],
            "penultimate": "batch-normalised ReLU dense layer of 200 units before the tags",
            "taggram": "sigmoid of the 50 tag logits (classes, in order)",
            "source": {"wheel": WHEEL, "wheel_sha256": WHEEL_SHA256,
                       "checkpoint": f"musicnn/{network}", "license": "ISC",
                       "attribution": CITATION},
            "onnx_opset": OPSET,
        },
        fusion_weight=0.0,
        training=TrainingData(dataset=DATASETS[key], citation=CITATION,
                              license=f"ISC: weights from the {WHEEL} wheel (sha256 "
                                      f"{WHEEL_SHA256}), Music Technology Group, UPF 2019",
                              split="the musicnn authors' training split (see the paper)"),
        metrics={"onnx_vs_tensorflow_max_abs_diff": diffs,
                 "tensorflow_vs_authors_graph_max_abs_diff":
                     report["max_abs_diff_vs_authors_graph"]},
        libraries={**report["libraries"], "onnxruntime": onnxruntime.__version__,
                   **{name: version(name) for name in ("numpy", "librosa", "soxr")}},
        created=time.strftime("%Y-%m-%dT%H:%M:%S+00:00", time.gmtime()),
        notes=(f"Pretrained embedding, not a mood model (fusion weight 0). Converted by "
               f"train/musicnn_convert.py from {network} in {WHEEL} (ISC licence; "
               "Pons & Serra 2019). Input: log-mel patches from "
               "mer_models.musicnn.musicnn_patches; clip embedding: mean and std of "
               "'penultimate' over patches (OnnxMusicnn.embed)."),
    )
    path = onnx_path.with_suffix(".json")
    card.save(path)
    logger.info("wrote %s", path)
    return path


def main(argv: list[str] | None = None) -> None:
    """Command line: ``python -m train.musicnn_convert [--out DIR] [--venv DIR]``."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=DEFAULT_OUT,
                        help="folder of the ONNX files and cards (default: mer_models/weights)")
    parser.add_argument("--venv", type=Path, default=DEFAULT_VENV,
                        help="throwaway virtualenv with TensorFlow (created when missing)")
    parser.add_argument("--fixture", type=Path, default=DEFAULT_FIXTURE,
                        help="parity fixture to write (default: tests/data/musicnn_parity.npz)")
    parser.add_argument("--work", type=Path, default=DEFAULT_WORK, help="scratch folder")
    parser.add_argument("--tf-stage", type=Path, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.tf_stage:
        _tf_stage(json.loads(args.tf_stage.read_text(encoding="utf-8")))
        return
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    for card in convert(args.out, args.venv, fixture=args.fixture, work=args.work):
        print(card)


if __name__ == "__main__":
    main()
