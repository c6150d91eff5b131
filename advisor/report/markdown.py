"""report.md for a ticket: what to deploy, how to serve it and the measured numbers first; then
the Pareto table of every candidate, and the per-tensor plan."""

from __future__ import annotations

from collections import Counter
from typing import Any

from advisor.inspect.roles import role_of
from advisor.report.schema import REPORT_SCHEMA_VERSION

# column order of the per-layer plan table (llama.cpp base names -> header)
_LAYER_COLUMNS = (("attn_q", "q"), ("attn_k", "k"), ("attn_v", "v"), ("attn_output", "o"),
                  ("attn_qkv", "qkv"), ("ffn_gate", "gate"), ("ffn_up", "up"),
                  ("ffn_down", "down"), ("ffn_gate_up", "gate_up"))


def mb(v: float | None) -> str:
    return "-" if v is None else f"{v / 1e6:.2f} MB"


def num(v: float | None, fmt: str = "{:.4f}") -> str:
    return "-" if v is None else fmt.format(v)


def ms(v: float | None) -> str:
    return "-" if v is None else f"{v * 1e3:.0f} ms"


def _pct(v: float) -> str:
    return f"{v:.1%}"


def _ppl(v: float) -> str:
    return f"{v:.3f}"


def _fig(f: dict[str, Any] | None, render: Any = num, unit: str = "") -> str:
    """A figure dict as `value unit (origin)`."""
    if not f:
        return "-"
    ci = f.get("ci95")
    bar = f", 95% CI {render(ci[0])}-{render(ci[1])}{unit}" if ci else ""
    return f"{render(f.get('value'))}{unit} ({f.get('origin', '?')}{bar})"


def targets_line(t: dict[str, Any]) -> str:
    """The targets as the user wrote them (sizes in bytes, durations in seconds)."""
    names = {"vram_bytes": "vram", "mem_bytes": "mem", "max_size_bytes": "max size",
             "p95_s": "p95", "max_kld": "max KL"}
    parts = []
    for k, label in names.items():
        v = t.get(k)
        if v is None:
            continue
        parts.append(f"{label} {v:,} bytes" if k.endswith("bytes") else
                     f"{label} {ms(v)}" if k == "p95_s" else f"{label} {v} nats")
    w = t["workload"]
    parts.append(f"workload {w['prompt_tokens']} prompt + {w['new_tokens']} new tokens, "
                 f"{w['concurrency']} concurrent, context {w['context']}")
    return "; ".join(parts)


def plan_section(plan: dict[str, Any]) -> list[str]:
    """The per-tensor plan: types by count, a layer x role table, the other tensors."""
    fmts: dict[str, str] = plan["tensor_formats"]
    counts = Counter(fmts.values())
    lines = [f"## Per-tensor plan (`{plan.get('label') or plan['backend']}`, "
             f"digest {plan['digest']})", "",
             "Types: " + ", ".join(f"{t} x{n}" for t, n in counts.most_common()) + ".", ""]
    layers: dict[int, dict[str, str]] = {}
    others: list[tuple[str, str]] = []
    for name, fmt in fmts.items():
        stem = name.rsplit(".", 1)[0] if name.endswith((".weight", ".bias")) else name
        role, layer = role_of(name, 2)
        base = stem.split(".", 2)[-1] if layer is not None else stem
        if layer is not None and role.value != "norm" and name.endswith(".weight") and \
                base in dict(_LAYER_COLUMNS):
            layers.setdefault(layer, {})[base] = fmt
        elif role.value != "norm":
            others.append((name, fmt))
    norms = sorted({fmt for name, fmt in fmts.items() if role_of(name, 2)[0].value == "norm"})
    if layers:
        cols = [(k, h) for k, h in _LAYER_COLUMNS if any(k in row for row in layers.values())]
        lines += ["| layer | " + " | ".join(h for _, h in cols) + " |",
                  "| --- |" + " --- |" * len(cols)]
        for i in sorted(layers):
            lines.append(f"| {i} | " + " | ".join(layers[i].get(k, "-") for k, _ in cols) + " |")
        lines.append("")
    if others:
        lines += ["| tensor | type |", "| --- | --- |",
                  *[f"| `{n}` | {f} |" for n, f in sorted(others)], ""]
    if norms:
        lines += [f"Norms: {', '.join(norms)}.", ""]
    return lines


def _measured_table(rep: dict[str, Any], cand: dict[str, Any] | None) -> list[str]:
    m = rep.get("measurements") or {}
    q, b = m.get("quality") or {}, m.get("bench") or {}
    rows = [("file size", f"{mb(rep['size']['value'])} ({int(rep['size']['value']):,} bytes, "
                          f"{rep['size']['origin']})")]
    if q:
        ref_ppl = num((q.get("reference_perplexity") or {}).get("value"), "{:.3f}")
        rows += [("mean KL vs the reference", _fig(q.get("mean_kl"), num, " nats")),
                 ("p99 KL", _fig(q.get("p99_kl"), num, " nats")),
                 ("top-1 agreement", _fig(q.get("top1_agreement"), _pct)),
                 ("perplexity", f"{_fig(q.get('perplexity'), _ppl)} (reference {ref_ppl})"),
                 ("scored", f"{q.get('n_windows')} windows of {q.get('window')} tokens")]
    if cand is not None:
        rows += [("p95 request latency", f"{ms(cand['p95']['value'])} ({cand['p95']['origin']}: "
                                         f"{cand['p95']['what']})"),
                 ("memory", f"{mb(cand['memory']['value'])} ({cand['memory']['origin']}: "
                            f"{cand['memory']['what']})")]
    elif b:
        rows += [("time to first token", _fig(b.get("ttft"), ms)),
                 ("per-token latency", _fig(b.get("per_token"), ms)),
                 ("p95 request latency", _fig(b.get("latency_p95"), ms)),
                 ("peak resident memory", _fig(b.get("peak_rss"), mb))]
    if b and cand is not None:
        rows += [("time to first token", _fig(b.get("ttft"), ms)),
                 ("per-token latency", _fig(b.get("per_token"), ms))]
    est = rep.get("estimate") or {}
    if not b and est:
        rows += [("memory", _fig(est.get("total_memory"), mb)),
                 ("request latency", _fig(est.get("request_latency"), ms))]
    return ["| figure | value |", "| --- | --- |", *[f"| {k} | {v} |" for k, v in rows]]


def _candidates(rep: dict[str, Any]) -> list[str]:
    front = set(rep.get("pareto_front", []))
    pick = rep["pick"]["label"]
    lines = ["## Candidates (Pareto front marked *)", "",
             "| label | kind | size (meas) | mean KL (meas) | surrogate KL (pred) | p95 | memory "
             "| meets targets | Pareto |",
             "| --- | --- | --- | --- | --- | --- | --- | --- | --- |"]
    for x in sorted(rep["candidates"], key=lambda c: (c["size_measured"], c["kl_measured"])):
        label = f"**{x['label']}**" if x["label"] == pick else x["label"]
        lines.append(
            f"| {label} | {x['kind']} | {mb(x['size_measured'])} | {num(x['kl_measured'])} | "
            f"{num(x.get('surrogate_kl'))} | {ms(x['p95']['value'])} ({x['p95']['origin']}) | "
            f"{mb(x['memory']['value'])} ({x['memory']['origin']}) | "
            f"{'yes' if not x['violations'] else '; '.join(x['violations'])} | "
            f"{'*' if x['label'] in front else ''} |")
    rho = rep.get("surrogate_spearman")
    lines += ["", f"Surrogate (predicted) vs measured KL, Spearman rank correlation: "
                  f"{num(rho, '{:.3f}')} over {len(rep['candidates'])} candidates. "
                  "Plot: `pareto.png`; every candidate: `candidates.csv`.", ""]
    skipped = [x["label"] for x in rep["candidates"] if x.get("benched") is False]
    if skipped:
        lines[-1:] = [f"Not benched ({', '.join(skipped)}): a candidate of lower KL met every "
                      "target first, or their size or KL missed one, so no bench could change "
                      "the pick; their p95 and memory are predictions (`--bench-all` benches "
                      "every candidate).", ""]
    return lines


def render_markdown(rep: dict[str, Any]) -> str:
    """report.md of any report the advisor writes (recommendation or single artifact)."""
    recommendation = rep.get("kind") == "recommendation"
    cand = None
    if recommendation:
        pick = rep["pick"]
        cand = next(x for x in rep["candidates"] if x["label"] == pick["label"])
        title = f"# Recommendation: {pick['label']} ({rep['model']['name']})"
        what = (f"**Deploy** `{pick['label']}` ({pick['kind']}, {rep['backend']} backend) on "
                f"{rep['hardware']['name']} ({rep['hardware']['source']}).")
    else:
        label = rep.get("label") or rep["plan"].get("label") or rep["backend"]
        title = f"# Artifact `{label}` of {rep['model']['name']}"
        what = (f"**Artifact** `{label}` ({rep['backend']} backend), written for "
                f"{rep['hardware']['name']} ({rep['hardware']['source']}).")
    lines = [title, "", what, "",
             f"**Serve** (from this directory): `{rep['serve']['command']}`", ""]
    if recommendation:
        lines += [f"**Why**: {rep['pick']['reason']}.", "",
                  f"**Targets**: {targets_line(rep['targets'])}.", ""]
    if rep["model"].get("source_note"):
        lines += [f"Note: {rep['model']['source_note']}.", ""]
    lines += ["## Numbers", "", *_measured_table(rep, cand), ""]
    if recommendation:
        lines += _candidates(rep)
    lines += plan_section(rep["plan"])
    if rep.get("stage_seconds"):
        lines += ["## Stage times", "", "| stage | seconds |", "| --- | --- |",
                  *[f"| {k} | {v:.1f} |" for k, v in rep["stage_seconds"].items()], ""]
    prov = rep.get("provenance") or {}
    if prov:
        lines += [f"Command: `{prov.get('command', '')}`; created {prov.get('created', '')}; "
                  f"seed {prov.get('seed')}; report schema version "
                  f"{rep.get('version', REPORT_SCHEMA_VERSION)} "
                  "(`advisor schema`).", ""]
    return "\n".join(lines)
