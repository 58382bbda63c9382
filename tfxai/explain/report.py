"""One self-contained HTML report for a folder of explained X-rays.

Thumbnails are embedded as base64 PNGs and the page has no scripts, fonts or links to the
internet, so it opens offline in any browser and can be mailed as one file.
"""
from __future__ import annotations

import base64
import datetime
import html
from dataclasses import dataclass, field

import numpy as np

from ..io.atomic import write_text
from .figures import overlay
from .types import METHOD_TITLES


@dataclass
class ReportEntry:
    """One image: name, predicted class and confidence, true label if known, the original
    (uint8 (H, W[, C])), {method: heatmap (H, W) in [0, 1] on that original}, {method: metrics},
    and the path of its comparison figure relative to the report (or None)."""

    name: str
    predicted: str
    confidence: float
    original: np.ndarray
    heatmaps: dict[str, np.ndarray]
    metrics: dict[str, dict] = field(default_factory=dict)
    true_label: str | None = None
    figure: str | None = None


def png_data_uri(image: np.ndarray, max_side: int = 180) -> str:
    """uint8 image (H, W[, 3] RGB) -> "data:image/png;base64,..." thumbnail."""
    import cv2

    img = np.asarray(image)
    h, w = img.shape[:2]
    scale = min(1.0, max_side / max(h, w))
    if scale < 1.0:
        img = cv2.resize(img, (max(1, round(w * scale)), max(1, round(h * scale))),
                         interpolation=cv2.INTER_AREA)
    if img.ndim == 3 and img.shape[2] == 3:
        img = cv2.cvtColor(img, cv2.COLOR_RGB2BGR)
    ok, buf = cv2.imencode(".png", img)
    if not ok:
        raise ValueError(f"could not encode a thumbnail of shape {np.shape(image)}")
    return "data:image/png;base64," + base64.b64encode(buf.tobytes()).decode("ascii")


_CSS = """
body{font-family:sans-serif;margin:1.5em;color:#222}
table{border-collapse:collapse;margin-bottom:1.5em}
td,th{border:1px solid #ccc;padding:4px 6px;text-align:center;font-size:13px;vertical-align:top}
th{background:#f2f2f2} img{display:block;margin:auto} .wrong{color:#b00;font-weight:bold}
.note{color:#555;font-size:13px;max-width:60em}
"""


def _fmt(value) -> str:
    if isinstance(value, bool):
        return "yes" if value else "no"
    if isinstance(value, (float, np.floating)):
        return "n/a" if not np.isfinite(value) else f"{float(value):.3f}"
    return html.escape(str(value))


def write_report(path: str, entries: list[ReportEntry], summary: dict[str, dict] | None = None,
                 title: str = "tfxai explanations", notes: list[str] | tuple[str, ...] = ()) -> str:
    """Write the report: a summary table (``summary``: {method: {measure: mean}}), then one row
    per image with its thumbnail, prediction and one overlay per method with its measures."""

    methods = list(dict.fromkeys(m for e in entries for m in e.heatmaps))
    parts = ["<!DOCTYPE html><html><head><meta charset='utf-8'>",
             f"<title>{html.escape(title)}</title><style>{_CSS}</style></head><body>",
             f"<h1>{html.escape(title)}</h1>",
             f"<p class='note'>{len(entries)} image(s), generated "
             f"{datetime.datetime.now().isoformat(timespec='seconds')}. Heatmaps show where each "
             "method says the model looked (red = most important). Deletion area: lower is more "
             "faithful; insertion area: higher is more faithful. Decision support only, not a "
             "diagnosis.</p>"]
    parts += [f"<p class='note'>{html.escape(n)}</p>" for n in notes]
    if summary:
        measures = list(dict.fromkeys(k for row in summary.values() for k in row))
        parts.append("<h2>Average per method</h2><table><tr><th>method</th>"
                     + "".join(f"<th>{html.escape(k)}</th>" for k in measures) + "</tr>")
        for method, row in summary.items():
            parts.append(f"<tr><td>{html.escape(METHOD_TITLES.get(method, method))}</td>"
                         + "".join(f"<td>{_fmt(row.get(k, ''))}</td>" for k in measures) + "</tr>")
        parts.append("</table>")
    parts.append("<h2>Images</h2><table><tr><th>image</th><th>prediction</th>"
                 + "".join(f"<th>{html.escape(METHOD_TITLES.get(m, m))}</th>" for m in methods)
                 + "</tr>")
    for e in entries:
        wrong = e.true_label is not None and e.true_label.lower() != e.predicted.lower()
        truth = (f"<br>true: <span class='{'wrong' if wrong else ''}'>"
                 f"{html.escape(e.true_label)}</span>") if e.true_label is not None else ""
        link = f"<br><a href='{html.escape(e.figure)}'>figure</a>" if e.figure else ""
        row = [f"<tr><td><img src='{png_data_uri(e.original)}' alt=''>"
               f"{html.escape(e.name)}{link}</td>",
               f"<td>{html.escape(e.predicted)}<br>{e.confidence:.1%}{truth}</td>"]
        for m in methods:
            if m not in e.heatmaps:
                row.append("<td>-</td>")
                continue
            measures = "<br>".join(f"{html.escape(k)} {_fmt(v)}"
                                   for k, v in e.metrics.get(m, {}).items())
            row.append(f"<td><img src='{png_data_uri(overlay(e.original, e.heatmaps[m]))}' "
                       f"alt=''>{measures}</td>")
        parts.append("".join(row) + "</tr>")
    parts.append("</table></body></html>\n")
    return write_text(path, "\n".join(parts))
