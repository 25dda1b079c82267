"""The HTML report: one self-contained file with the verdict table and plots (inline SVG).

Every string that comes from a model, a config or a measurement is made plain text (no control
characters) and escaped with `html.escape`; the plots are matplotlib SVGs, whose text
matplotlib escapes itself (labels are made plain text first).
"""

from __future__ import annotations

import html
import io
import itertools
from collections.abc import Sequence
from typing import Any

from dlopt.plain_text import plain_text
from dlopt.report.explain import (
    grouped_by_variant,
    html_diagnoses,
    html_recommendation,
    verdict_counts,
)
from dlopt.report.format import fmt_interval, fmt_number
from dlopt.report.nodes import node_summary

_STYLE = """
body{font-family:system-ui,sans-serif;margin:2rem;color:#222}
table{border-collapse:collapse;margin:1rem 0;font-size:0.9rem}
th,td{border:1px solid #ccc;padding:0.3rem 0.6rem;text-align:left}
td.num{text-align:right;font-variant-numeric:tabular-nums}
.pass{background:#e6f4ea}.fail{background:#fce8e6}.inconclusive{background:#fef7e0}
.skipped{background:#f1f3f4}.verdict{font-size:1.4rem;padding:0.5rem 1rem;display:inline-block}
figure{display:inline-block;margin:0.5rem;vertical-align:top}
tr.group th{background:#eef1f5;text-align:left;font-weight:600}
p.note{margin:0.2rem 0;font-size:0.9rem}
"""


def _escape(value: Any) -> str:
    return html.escape(plain_text(value))


def render_html(report: dict[str, Any]) -> str:
    """The whole report as one HTML document with inline SVG plots."""
    e = _escape
    verdict = str(report.get("verdict", "fail"))
    parts = [
        "<!DOCTYPE html><html lang='en'><head><meta charset='utf-8'>",
        f"<title>dlopt gate: {e(verdict)}</title><style>{_STYLE}</style></head><body>",
        f"<h1>dlopt gate</h1><p class='verdict {e(verdict)}' id='verdict'>"
        f"Verdict: <strong>{e(verdict.upper())}</strong> (exit code "
        f"{e(str(report.get('exit_code')))})</p>",
        f"<p>Config <code>{e(str(report.get('config', '')))}</code>, "
        f"{e(str(report.get('created_utc', '')))}.</p>",
        html_recommendation(report),
        html_diagnoses(report),
        "<h2>Gates</h2>",
        _gate_table(report.get("gates", [])),
        "<h2>Measurements</h2>",
        _rows_table(report.get("rows", [])),
        *_nodes_table(report),
        "<h2>Plots</h2>",
    ]
    for title, svg in _plots(report.get("rows", [])):
        parts.append(f"<figure><figcaption>{e(title)}</figcaption>{svg}</figure>")
    parts.append("</body></html>")
    return "\n".join(parts) + "\n"


def _gate_table(gates: Sequence[dict[str, Any]]) -> str:
    """One group of rows per variant, under a heading row with the variant's name and verdict
    counts (so the rows need no variant column)."""
    e = _escape
    head = (
        "backend",
        "gate",
        "measured",
        "threshold",
        "95% interval",
        "verdict",
        "reason",
    )
    groups = []
    for variant, variant_gates in grouped_by_variant(gates):
        rows = [
            f"<tr class='group'><th colspan='{len(head)}'>{e(variant)}: "
            f"{e(verdict_counts(variant_gates))}</th></tr>"
        ]
        rows += [
            f"<tr class='{e(str(g['verdict']))}'><td>{e(str(g['backend']))}</td>"
            f"<td>{e(str(g['gate']))}</td>"
            f"<td class='num'>{e(fmt_number(g.get('measured')))}</td>"
            f"<td class='num'>{e(fmt_number(g.get('threshold')))}</td>"
            f"<td>{e(fmt_interval(g.get('interval')))}</td><td>{e(str(g['verdict']))}</td>"
            f"<td>{e(str(g.get('reason') or ''))}</td></tr>"
            for g in variant_gates
        ]
        groups.append(f"<tbody>{''.join(rows)}</tbody>")
    header = "".join(f"<th>{html.escape(h)}</th>" for h in head)
    return f"<table id='gates'><thead><tr>{header}</tr></thead>{''.join(groups)}</table>"


def _rows_table(rows: Sequence[dict[str, Any]]) -> str:
    e = _escape
    head = (
        "variant",
        "backend",
        "status",
        "p50 ms",
        "p99 ms",
        "speedup",
        "accuracy",
        "cosine",
        "peak RSS MB",
        "size MB",
    )
    body = []
    for row in rows:
        latency = row.get("latency_ms") or {}
        speedup = row.get("speedup") or {}
        status = str(row.get("status", ""))
        reason = f": {row['reason']}" if row.get("reason") else ""
        cells = [
            fmt_number(latency.get("p50")),
            fmt_number(latency.get("p99")),
            f"{fmt_number(speedup.get('ratio'))} {fmt_interval(speedup.get('interval'))}",
            fmt_number((row.get("metrics") or {}).get("accuracy")),
            fmt_number((row.get("drift") or {}).get("cosine")),
            fmt_number(row.get("peak_rss_mb")),
            fmt_number(row.get("model_size_mb")),
        ]
        body.append(
            f"<tr><td>{e(str(row['variant']))}</td><td>{e(str(row['backend']))}</td>"
            f"<td>{e(status + reason)}</td>"
            + "".join(f"<td class='num'>{e(c)}</td>" for c in cells)
            + "</tr>"
        )
    return _table("measurements", head, body)


def _nodes_table(report: dict[str, Any]) -> list[str]:
    nodes = node_summary(report)
    if not nodes:
        return []
    rows = [
        f"<tr><td>{_escape(n['node'])}</td><td>{_escape(n['hardware'])}</td>"
        f"<td>{_escape(n['rows'])}</td></tr>"
        for n in nodes
    ]
    return ["<h2>Where it ran</h2>", _table("nodes", ("node", "hardware", "rows"), rows)]


def _table(table_id: str, head: Sequence[str], rows: Sequence[str]) -> str:
    header = "".join(f"<th>{html.escape(h)}</th>" for h in head)
    return (
        f"<table id='{table_id}'><thead><tr>{header}</tr></thead><tbody>"
        + "".join(rows)
        + "</tbody></table>"
    )


def _plots(rows: Sequence[dict[str, Any]]) -> list[tuple[str, str]]:
    import matplotlib

    matplotlib.use("Agg")  # no display on CI machines
    import matplotlib.pyplot as plt

    plt.rcParams["svg.fonttype"] = "none"  # text stays text (searchable, small)
    plots: list[tuple[str, str]] = []
    measured = [
        r
        for r in rows
        if r.get("status") == "ok" and _is_number((r.get("latency_ms") or {}).get("p50"))
    ]
    scatter: list[tuple[dict[str, Any], float]] = []
    for row in measured:
        quality = (row.get("metrics") or {}).get("accuracy", (row.get("drift") or {}).get("cosine"))
        if quality is not None:
            scatter.append((row, float(quality)))
    if scatter:
        plots.append(("Accuracy vs latency", _accuracy_latency_plot(scatter)))
    by_backend: dict[str, list[dict[str, Any]]] = {}
    for row in measured:
        by_backend.setdefault(str(row["backend"]), []).append(row)
    for backend, backend_rows in by_backend.items():
        samples = [r["latency_ms"].get("samples") or [] for r in backend_rows]
        if not any(samples):
            continue
        figure, axes = plt.subplots(figsize=(6, 3.5))
        axes.boxplot(samples, showfliers=False)
        axes.set_xticks(
            range(1, len(backend_rows) + 1),
            [plain_text(r["variant"]) for r in backend_rows],
            rotation=20,
        )
        axes.set_ylabel("latency (ms)")
        plots.append((f"Latency distribution on {plain_text(backend)}", _svg(figure)))
    memory = [r for r in rows if r.get("peak_rss_mb") is not None]
    if memory:
        figure, axes = plt.subplots(figsize=(6, 3.5))
        axes.barh(
            [plain_text(f"{r['variant']}@{r['backend']}") for r in memory],
            [r["peak_rss_mb"] for r in memory],
        )
        axes.set_xlabel("peak RSS (MB)")
        plots.append(("Peak memory", _svg(figure)))
    return plots


def _is_number(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool)


FRONT_COLOUR = "#dc143c"
BACKEND_MARKERS = "osD^v<>"


def _accuracy_latency_plot(scatter: Sequence[tuple[dict[str, Any], float]]) -> str:
    """Each (variant, backend) a point, named in a legend beside the plot (labels on the points
    overlapped), and the Pareto front as a staircase from the bottom edge through the
    undominated points to the right edge, with a ring on each: visible even when a single
    point makes the front."""
    import matplotlib.pyplot as plt

    figure, axes = plt.subplots(figsize=(7.5, 4.2))
    backends = list(dict.fromkeys(str(row["backend"]) for row, _ in scatter))
    variants = list(dict.fromkeys(str(row["variant"]) for row, _ in scatter))
    colours = plt.get_cmap("tab10")
    points = []
    for row, quality in scatter:
        latency = float(row["latency_ms"]["p50"])
        points.append((latency, quality))
        axes.scatter(
            [latency],
            [quality],
            s=45,
            zorder=3,
            marker=BACKEND_MARKERS[backends.index(str(row["backend"])) % len(BACKEND_MARKERS)],
            color=colours(variants.index(str(row["variant"])) % 10),
            label=plain_text(f"{row['variant']} @ {row['backend']}"),
        )
    left, right = axes.get_xlim()
    bottom, top = axes.get_ylim()
    front = pareto_front(points)
    stairs = [(front[0][0], bottom), front[0]]
    for previous, point in itertools.pairwise(front):
        stairs += [(point[0], previous[1]), point]
    stairs.append((right, front[-1][1]))
    axes.plot(
        [x for x, _ in stairs],
        [y for _, y in stairs],
        color=FRONT_COLOUR,
        linewidth=2,
        linestyle="--",
        zorder=2,
        label=f"Pareto front ({len(front)} of {len(points)})",
    )
    axes.scatter(
        [x for x, _ in front],
        [y for _, y in front],
        s=180,
        facecolors="none",
        edgecolors=FRONT_COLOUR,
        linewidths=1.5,
        zorder=4,
    )
    axes.set_xlim(left, right)
    axes.set_ylim(bottom, top)
    axes.set_xlabel("p50 latency (ms)")
    axes.set_ylabel("accuracy" if scatter[0][0].get("metrics") else "cosine vs FP32")
    axes.legend(loc="upper left", bbox_to_anchor=(1.02, 1.0), fontsize=8, frameon=False)
    return _svg(figure)


def pareto_front(points: Sequence[tuple[float, float]]) -> list[tuple[float, float]]:
    """Points not beaten on both latency (lower is better) and accuracy (higher is better)."""
    front: list[tuple[float, float]] = []
    for latency, accuracy in sorted(points, key=lambda p: (p[0], -p[1])):
        if not front or accuracy > front[-1][1]:
            front.append((latency, accuracy))
    return front


def _svg(figure: Any) -> str:
    import matplotlib.pyplot as plt

    buffer = io.StringIO()
    figure.tight_layout()
    figure.savefig(buffer, format="svg", bbox_inches="tight")  # keeps a legend beside the axes
    plt.close(figure)
    text = buffer.getvalue()
    return text[text.index("<svg") :]  # drop the XML prolog and DOCTYPE: inline SVG in HTML
