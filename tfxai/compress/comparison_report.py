"""The outputs of the pruning comparison (:mod:`tfxai.compress.experiment`): ``comparison.txt``
(the console table), ``comparison.csv``, ``comparison.json`` and ``pruning_comparison.png``."""
from __future__ import annotations

import os

from ..io.atomic import write_atomic, write_csv, write_json, write_text
from ..tables import Column, format_table

TABLE_COLUMNS = (
    Column("mode", "mode"), Column("target", "target_sparsity", "{:.2f}"), Column("meas.", "sparsity", "{:.3f}"),
    Column("pruned", "sparsity_pruned_layers", "{:.3f}"), Column("nonzero", "nonzero_params", "{:d}"),
    Column("acc", "accuracy", "{:.3f}"), Column("d_acc", "accuracy_change", "{:+.3f}"),
    Column("int8 acc", "int8_accuracy", "{:.3f}"), Column("keras KB", "keras_bytes", "kb"),
    Column("gzip KB", "keras_gzip_bytes", "kb"), Column("tflite KB", "tflite_bytes", "kb"),
    Column("int8 gz KB", "tflite_int8_gzip_bytes", "kb"), Column("ratio", "compression_ratio", "{:.1f}x"),
    Column("int8 ms", "latency_ms_int8", "{:.2f}"),
)
CSV_COLUMNS = ("model", "mode", "target_sparsity", "sparsity", "sparsity_pruned_layers", "nonzero_params",
               "total_params", "accuracy", "accuracy_change", "int8_accuracy", "keras_bytes",
               "keras_gzip_bytes", "tflite_bytes", "tflite_int8_bytes", "tflite_int8_gzip_bytes",
               "compression_ratio", "latency_ms_int8", "latency_ms_keras", "steps", "pruning_end_step")


def comparison_table(doc: dict) -> str:
    """The console table: one row per run, sizes in KB, sparsities measured (not scheduled)."""
    has_ft = any(row["mode"] == "dense_ft" for row in doc["rows"])
    return "\n".join([
        f"{doc['rows'][0]['model']}: accuracy on {doc['data']['eval_images']} {doc['data']['eval_split']} images; "
        f"{doc['data']['train_images']} training images",
        f"budget: {doc['budget']}",
        format_table(doc["rows"], TABLE_COLUMNS),
        ("dense_ft = the dense model trained for the same extra budget (no pruning); " if has_ft else "")
        + "d_acc is relative to dense",
        "meas. = measured zeros / all parameters (BatchNorm, depthwise and biases stay dense); "
        "pruned = over the pruned layers; ratio = dense .keras gzip / int8 TFLite gzip; "
        "int8 ms = median LiteRT latency per image"])


def write_outputs(doc: dict, output_dir: str) -> dict[str, str]:
    """comparison.txt/.csv/.json and pruning_comparison.png in ``output_dir``; returns their paths."""
    paths = {k: os.path.join(output_dir, v) for k, v in (
        ("table", "comparison.txt"), ("csv", "comparison.csv"), ("json", "comparison.json"),
        ("figure", "pruning_comparison.png"))}
    write_text(paths["table"], comparison_table(doc) + "\n")
    write_csv(paths["csv"], doc["rows"], CSV_COLUMNS)
    write_json(paths["json"], doc)
    write_atomic(paths["figure"], lambda tmp: plot_comparison(doc["rows"], tmp))
    return paths


def plot_comparison(rows: list[dict], path: str | None = None):
    """Four panels, one line per mode (dense as a dashed reference): accuracy vs measured
    sparsity, model size (.keras gzip) vs sparsity, compression ratio vs sparsity, accuracy vs
    int8 TFLite gzip size. Saved as PNG to ``path`` when given; returns the matplotlib Figure."""
    from matplotlib.figure import Figure

    fig = Figure(figsize=(12, 9), layout="constrained")
    axes = fig.subplots(2, 2).ravel()
    dense = next((r for r in rows if r["mode"] == "dense"), None)
    modes = list(dict.fromkeys(r["mode"] for r in rows if r["mode"] not in ("dense", "dense_ft")))
    tuned = next((r for r in rows if r["mode"] == "dense_ft"), None)
    panels = (
        (axes[0], "sparsity", "accuracy", "measured sparsity (all parameters)", "accuracy", 1.0, 1.0),
        (axes[1], "sparsity", "keras_gzip_bytes", "measured sparsity (all parameters)", ".keras gzip size (KB)", 1.0, 1024.0),
        (axes[2], "sparsity", "compression_ratio", "measured sparsity (all parameters)",
         "compression (dense .keras gzip / int8 TFLite gzip)", 1.0, 1.0),
        (axes[3], "tflite_int8_gzip_bytes", "accuracy", "int8 TFLite gzip size (KB)", "accuracy", 1024.0, 1.0),
    )
    for ax, xk, yk, xlabel, ylabel, xdiv, ydiv in panels:
        for mode in modes:
            pts = sorted((r[xk] / xdiv, r[yk] / ydiv) for r in rows if r["mode"] == mode)
            ax.plot([p[0] for p in pts], [p[1] for p in pts], marker="o", label=mode)
        if dense is not None:
            ax.scatter([dense[xk] / xdiv], [dense[yk] / ydiv], marker="*", s=160, color="black",
                       label="dense", zorder=3)
            if yk == "accuracy":
                ax.axhline(dense[yk], color="black", linestyle="--", linewidth=0.8)
        if tuned is not None:
            ax.scatter([tuned[xk] / xdiv], [tuned[yk] / ydiv], marker="P", s=90, color="grey",
                       label="dense, fine-tuned for the same budget", zorder=3)
        ax.set_xlabel(xlabel)
        ax.set_ylabel(ylabel)
        ax.grid(alpha=0.3)
        ax.legend(fontsize=8)
    axes[0].set_title("accuracy vs sparsity")
    axes[1].set_title("model size vs sparsity")
    axes[2].set_title("compression ratio vs sparsity")
    axes[3].set_title("accuracy vs size (pruned + int8)")
    if path:
        fig.savefig(path, dpi=110, format="png")
    return fig
