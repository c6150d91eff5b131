"""pareto.png: measured size against measured KL of every candidate, the front and the pick."""

from __future__ import annotations

from pathlib import Path
from typing import Any


def pareto_png(rep: dict[str, Any], path: Path) -> Path:
    """Draw the candidates of a recommendation report into `path` (PNG, Agg backend)."""
    import matplotlib

    matplotlib.use("Agg", force=True)
    from matplotlib.figure import Figure

    fig = Figure(figsize=(7, 4.5), dpi=110)
    ax = fig.add_subplot()
    rows = rep["candidates"]
    front = [r for r in sorted(rows, key=lambda r: r["size_measured"])
             if r["label"] in rep.get("pareto_front", [])]
    if front:
        ax.step([r["size_measured"] / 1e6 for r in front], [r["kl_measured"] for r in front],
                where="post", color="0.6", lw=1, zorder=1, label="Pareto front")
    for kind, marker, color in (("search", "o", "tab:blue"), ("preset", "s", "tab:orange")):
        pts = [r for r in rows if r["kind"] == kind]
        if pts:
            ax.scatter([r["size_measured"] / 1e6 for r in pts], [r["kl_measured"] for r in pts],
                       marker=marker, color=color, zorder=2,
                       label=f"{kind} ({'searched plans' if kind == 'search' else 'llama.cpp'})")
    for r in rows:
        bad = " (misses targets)" if r["violations"] else ""
        ax.annotate(r["label"] + bad, (r["size_measured"] / 1e6, r["kl_measured"]),
                    textcoords="offset points", xytext=(5, 4), fontsize=8)
    pick = next(r for r in rows if r["label"] == rep["pick"]["label"])
    ax.scatter([pick["size_measured"] / 1e6], [pick["kl_measured"]], s=220, facecolors="none",
               edgecolors="tab:green", lw=2, zorder=3, label=f"pick: {pick['label']}")
    limit = rep.get("targets", {}).get("max_size_bytes")
    if limit:
        ax.axvline(limit / 1e6, color="tab:red", ls="--", lw=1, label="--max-size")
    ax.set_xlabel("file size, MB (measured)")
    ax.set_ylabel("mean KL vs reference, nats (measured)")
    ax.set_title(f"{rep['model']['name']} on {rep['hardware']['name']}", fontsize=10)
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8, loc="best")
    fig.tight_layout()
    fig.savefig(path, format="png", metadata={"Software": None})
    return path
