"""Plain text of the wizard's panels: hardware, model and results summaries, the Pareto chart.
Pure functions of the value types, so they are tested without a terminal."""

from __future__ import annotations

import shlex
from typing import Any

from advisor.cli.console import shown
from advisor.figures import fig, human_bytes
from advisor.hardware import HardwareProfile
from advisor.modelspec import ModelSpec


def hardware_lines(hw: HardwareProfile) -> list[str]:
    """What the hardware step shows of one profile (rich markup)."""
    cpu = hw.cpu
    lines = [f"[b]{shown(hw.name)}[/b]  [dim]source: {shown(hw.source)}[/dim]",
             f"CPU          {shown(cpu.model)}, {cpu.physical_cores} cores "
             f"({cpu.logical_cores} threads)",
             f"RAM          {fig(cpu.ram_total)}"]
    if cpu.memory_bandwidth is not None:
        lines.append(f"RAM b/w      {fig(cpu.memory_bandwidth)}")
    if not hw.accelerators:
        lines.append("Accelerators none (CPU runtimes only)")
    for a in hw.accelerators:
        lines.append(f"GPU          {shown(a.name)} ({a.vendor.value}, {a.arch or '?'}), "
                     f"{fig(a.memory)}")
        if a.capabilities:
            lines.append(f"  supports   {', '.join(c.value for c in a.capabilities)}")
    for rt, fmts in hw.runtimes.items():
        lines.append(f"serves       {shown(rt)}: {shown(', '.join(fmts))}")
    return lines


def option_label(hw: HardwareProfile, probed: bool) -> str:
    """One line of the hardware list (fits 34 columns; markup of the name escaped)."""
    if probed:
        return f"this host: {shown(hw.name)} (probed)"
    acc = hw.primary
    mem = acc.memory.value if acc else hw.cpu.ram_total.value
    kind = "GPU" if acc and not acc.unified_memory else "unified" if acc else "CPU"
    return shown(f"{hw.name:<12} {mem / 2**30:>4.0f} GiB {kind}")


def model_lines(spec: ModelSpec) -> list[str]:
    """The inspection summary: parameters, roles, current precision."""
    n = spec.n_params or 1
    lines = [f"[b]{shown(spec.name)}[/b]  [dim]{spec.format.value}, "
             f"{shown(spec.architecture)}[/dim]",
             f"parameters   {spec.n_params:,} in {spec.n_layers} layers "
             f"(hidden {spec.hidden_size}, ffn {spec.intermediate_size})",
             f"tensor bytes {human_bytes(spec.source_bytes)}",
             "stored as    " + shown(", ".join(f"{k} {v / n:.1%}" for k, v in
                                               spec.dtype_counts().items()))]
    roles = sorted(spec.role_counts().items(), key=lambda kv: -kv[1])
    lines.append("roles        " + ", ".join(f"{k} {v / n:.0%}" for k, v in roles
                                             if v / n >= 0.005))
    q = shown(spec.source_quantization or "")
    if q:
        lines.append(f"[yellow]already quantized ({q}): the reference is the dequantized {q} "
                     f"weights[/yellow]")
    return lines


def pick_row(rep: dict[str, Any]) -> dict[str, Any]:
    return next(c for c in rep["candidates"] if c["label"] == rep["pick"]["label"])


def summary_lines(rep: dict[str, Any], out: str) -> list[str]:
    """The results step's headline: what to deploy, its measured numbers, why."""
    c = pick_row(rep)
    return [
        f"[b]Deploy {shown(c['label'])}[/b] ({c['kind']}) of {shown(rep['model']['name'])} "
        f"on {shown(rep['hardware']['name'])}",
        f"size {c['size_measured'] / 1e6:.2f} MB (measured) · mean KL {c['kl_measured']:.4f} "
        f"nats (measured) · p95 {c['p95']['value'] * 1e3:.0f} ms ({c['p95']['origin']}) · "
        f"memory {c['memory']['value'] / 1e6:.0f} MB ({c['memory']['origin']})",
        f"[dim]why: {shown(rep['pick']['reason'])}[/dim]",
    ]


def serve_command(rep: dict[str, Any], out: str) -> str:
    return f"cd {shlex.quote(str(out))} && {rep['serve']['command']}"


def pareto_chart(rep: dict[str, Any], width: int = 44, height: int = 8) -> list[str]:
    """A character scatter of measured size (x) against measured KL (y): `*` Pareto front,
    `o` other candidates, `@` the pick; then a legend of the points."""
    rows = rep["candidates"]
    xs = [r["size_measured"] / 1e6 for r in rows]
    ys = [r["kl_measured"] for r in rows]
    x0, x1 = min(xs), max(xs)
    y0, y1 = min(ys), max(ys)
    grid = [[" "] * width for _ in range(height)]
    front = set(rep.get("pareto_front", []))
    legend = []
    for r, x, y in zip(rows, xs, ys):
        col = 0 if x1 == x0 else round((x - x0) / (x1 - x0) * (width - 1))
        row = 0 if y1 == y0 else round((y1 - y) / (y1 - y0) * (height - 1))
        mark = "@" if r["label"] == rep["pick"]["label"] else "*" if r["label"] in front \
            else "o"
        grid[row][col] = mark
        legend.append(f"{mark} {r['label']}: {x:.2f} MB, KL {y:.4f}")
    lines = [f"KL {y1:8.4f} ┤" + "".join(grid[0])]
    lines += ["            │" + "".join(g) for g in grid[1:-1]]
    lines.append(f"   {y0:8.4f} ┤" + "".join(grid[-1]))
    lines.append("            └" + "─" * width)
    lines.append(f"             {x0:.2f} MB" + " " * max(1, width - 20) + f"{x1:.2f} MB")
    return [shown(line) for line in lines] + [shown(x) for x in legend]
