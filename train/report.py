"""docs/MODEL_REPORT.md from a run directory's metrics files."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

_ROWS = (
    ("CLDNN (log-mel, ONNX)", "metrics_cldnn.json"),
    ("Stacking ensemble (our descriptors)", "metrics_ensemble.json"),
    ("Head on the musicnn embedding", "metrics_musicnn.json"),
    ("Fused (nested fusion weights)", "metrics_fused.json"),
    ("Reference: SVM on the authors' top-100 features", "metrics_reference.json"),
)
_KEYS = ("macro_f1", "accuracy", "valence_accuracy", "arousal_accuracy")


def _load(path: Path) -> dict[str, Any] | None:
    return json.loads(path.read_text()) if path.is_file() else None


def _cell(m: dict[str, Any], key: str) -> str:
    return f"{m[f'{key}_mean']:.3f} ± {m[f'{key}_std']:.3f}"


def summary_table(run: Path) -> str:
    """Markdown table: mean ± std over the five artist-disjoint folds."""
    lines = ["| model | macro-F1 | accuracy | valence acc. | arousal acc. |",
             "| --- | --- | --- | --- | --- |"]
    for name, file in _ROWS:
        m = _load(run / file)
        if m is not None:
            lines.append(f"| {name} | " + " | ".join(_cell(m, k) for k in _KEYS) + " |")
    return "\n".join(lines)


def fold_table(run: Path) -> str:
    """Macro-F1 of every model on every fold."""
    lines = ["| model | " + " | ".join(f"fold {k}" for k in range(5)) + " |",
             "| --- |" + " --- |" * 5]
    for name, file in _ROWS:
        m = _load(run / file)
        if m is not None:
            cells = [f"{m['folds'][str(k)]['macro_f1']:.3f}" if str(k) in m["folds"] else "–"
                     for k in range(5)]
            lines.append(f"| {name} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


_NAMES = {"cldnn": "CLDNN", "ensemble": "ensemble", "musicnn": "musicnn head"}


def fusion_table(run: Path) -> str:
    """Nested macro-F1 of every subset of the fused models: what each model adds."""
    m = _load(run / "metrics_fused.json")
    if m is None or "subsets" not in m:
        return "(not run)"
    lines = ["| fused models | macro-F1 | valence acc. | arousal acc. |",
             "| --- | --- | --- | --- |"]
    rows = {**m["subsets"], "+".join(m["kinds"]): {
        k: m[k] for k in ("macro_f1_mean", "macro_f1_std", "valence_accuracy_mean",
                          "arousal_accuracy_mean")}}
    for subset, s in rows.items():
        names = " + ".join(_NAMES.get(k, k) for k in subset.split("+"))
        lines.append(f"| {names} | {s['macro_f1_mean']:.3f} ± {s['macro_f1_std']:.3f} | "
                     f"{s['valence_accuracy_mean']:.3f} | {s['arousal_accuracy_mean']:.3f} |")
    weights = ", ".join(f"{_NAMES.get(k, k)} {w:.3f}" for k, w in m["weights"].items())
    lines.append("")
    lines.append("Shipped weights (chosen on all five folds: the mean of the best grid points "
                 f"of bootstrap resamples, `train.pipeline.best_weights`): {weights}.")
    return "\n".join(lines)


def robustness_table(run: Path) -> str:
    """Macro-F1 on fold 4 as shipped in the dataset and re-encoded."""
    r = _load(run / "metrics_robustness.json")
    if r is None:
        return "(not run)"
    kinds = [k for k in next(iter(r.values())) if k != "fused"]
    lines = ["| encoding of fold 4 | " + " | ".join(_NAMES.get(k, k) for k in kinds)
             + " | fused | fused valence | fused arousal |",
             "| --- |" + " --- |" * (len(kinds) + 3)]
    for name, m in r.items():
        cells = [f"{m[k]['macro_f1']:.3f}" for k in kinds]
        lines.append(f"| {name} | " + " | ".join(cells) + f" | {m['fused']['macro_f1']:.3f} | "
                     f"{m['fused']['valence_accuracy']:.3f} | "
                     f"{m['fused']['arousal_accuracy']:.3f} |")
    return "\n".join(lines)


def write_report(run: Path, out: Path) -> None:
    """Render the measured tables into ``out`` between the generated-section markers.

    Prose outside the markers is kept, so the analysis written by hand survives a re-run.
    """
    generated = "\n\n".join([
        "### Cross-validated figures (mean ± std over the 5 artist-disjoint folds)",
        summary_table(run),
        "### Macro-F1 per fold",
        fold_table(run),
        "### What each model adds (nested fusion of every subset)",
        fusion_table(run),
        "### Robustness to real-world encodings (fold 4, models trained on folds 0-3)",
        robustness_table(run),
    ])
    begin, end = "<!-- generated:begin -->", "<!-- generated:end -->"
    block = f"{begin}\n{generated}\n{end}"
    if out.is_file() and begin in (text := out.read_text()):
        head, rest = text.split(begin, 1)
        tail = rest.split(end, 1)[1] if end in rest else ""
        out.write_text(head + block + tail)
    else:
        out.write_text(f"# Model report\n\n{block}\n")
