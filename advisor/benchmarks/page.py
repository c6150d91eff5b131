"""BENCHMARKS.md and its plot from the suite's results (bench-out/results.json)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

MiB = 2**20


def _kl(x: Any) -> str:
    return "—" if x is None else f"{x:.4f}"


def _pct(x: Any) -> str:
    return "—" if x is None else f"{100 * x:.1f}%"


def _ppl(x: Any) -> str:
    return "—" if x is None else f"{x:.2f}"


def plot(results: dict[str, Any], path: Path) -> Path | None:
    """Size vs mean KL (log scale): presets without and with imatrix, the picks, HF backends."""
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        return None
    fig, ax = plt.subplots(figsize=(8, 5), dpi=120)
    groups = [
        ("llama.cpp preset", [r for r in results["quality"] if not r["imatrix"]], "o", "C0"),
        ("llama.cpp preset + imatrix", [r for r in results["quality"] if r["imatrix"]], "s",
         "C1"),
        ("advisor pick", results.get("picks", []), "*", "C3"),
        ("HF checkpoint", [r for r in results.get("hf", []) if "mean_kl" in r], "^", "C2"),
    ]
    for name, rows, marker, color in groups:
        if not rows:
            continue
        rows = sorted(rows, key=lambda r: r["size"])
        xs = [r["size"] / MiB for r in rows]
        ys = [max(r["mean_kl"], 1e-5) for r in rows]
        ax.plot(xs, ys, marker=marker, color=color, label=name,
                linestyle="-" if name != "HF checkpoint" else "none",
                markersize=11 if marker == "*" else 6)
        if name == "llama.cpp preset":
            for r, x, y in zip(rows, xs, ys):
                ax.annotate(r["label"], (x, y), textcoords="offset points", xytext=(4, 4),
                            fontsize=7)
    ax.set_yscale("log")
    ax.set_xlabel("file size (MiB)")
    ax.set_ylabel("mean KL divergence vs F16 (nats, log scale)")
    ax.set_title("SmolLM2-135M: quality per byte (held-out text, measured)")
    ax.grid(True, which="both", alpha=0.3)
    ax.legend()
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path)
    plt.close(fig)
    return path


def _ratio(pick: dict[str, Any], preset: dict[str, Any] | None) -> str:
    return "—" if not preset else f"{pick['mean_kl'] / preset['mean_kl']:.2f}x"


def fmt(v: float | None) -> str:
    return "—" if v is None else f"{v:.2f}"


def _quality_table(rows: list[dict[str, Any]]) -> list[str]:
    lines = ["| candidate | imatrix | size (bytes) | bits/weight | mean KL | p99 KL | top-1 | "
             "PPL (ref) |", "| --- | --- | ---: | ---: | ---: | ---: | ---: | ---: |"]
    for r in rows:
        if "missing" in r:
            lines.append(f"| {r['label']} | | not measured: {r['missing']} | | | | | |")
            continue
        im = {True: "yes", False: "no"}.get(bool(r["imatrix"])) if "imatrix" in r else "—"
        label = r["label"] + (f" (same file as {r['same_as']})" if r.get("same_as") else "")
        lines.append(
            f"| {label} | {im} | {r['size']:,} | "
            f"{'—' if r.get('bpw') is None else format(r['bpw'], '.2f')} | "
            f"{_kl(r.get('mean_kl'))} | {_kl(r.get('p99_kl'))} | {_pct(r.get('top1_agreement'))} "
            f"| {_ppl(r.get('perplexity'))} ({_ppl(r.get('reference_perplexity'))}) |")
    return lines


def hf_section(results: dict[str, Any]) -> list[str]:
    """The HF checkpoint backends' table and their quantization cost."""
    if not results.get("hf"):
        return []
    out = ["### HF checkpoint backends", "",
           "`advisor quantize --backend B --bits N --group-size 128` (the group size "
           "applies to rtn/gptq/awq/autoround; a row that 128 does not divide takes the largest of "
           "64/32 that does: SmolLM2's 576-wide rows take 64), loaded from the written "
           "checkpoint with transformers on the CPU (W8A8: the dynamic per-token "
           "activation quantization applied in the forward pass) and judged against the "
           "model's own F16 reference and the same text. Sizes are the safetensors files. "
           "gptq is llm-compressor's GPTQModifier, autoround Intel's AutoRound (its light "
           "recipe: 50 iterations); rtn, fp8 and smoothquant the project's own layer-streamed "
           "writers, checked against llm-compressor's output "
           "(`tests/backends/test_llmc_parity.py`); awq the project's own. 8-bit rows are "
           "judged against 8-bit RTN; the 8-bit GPTQ/AWQ/AutoRound rows are left out.", ""]
    out += _quality_table(results["hf"]) + [""]
    out += hf_cost_table(results["hf"]) + [""]
    return out


def hf_cost_table(rows: list[dict[str, Any]]) -> list[str]:
    """Quantization wall time of each HF row, and its mean KL against RTN's at the same width
    on the same windows (95% paired-bootstrap interval)."""
    lines = ["| candidate | quantize wall | mean KL / RTN's (95% CI) |", "| --- | ---: | ---: |"]
    for r in rows:
        if "quantize_s" not in r:
            continue
        v = r.get("vs_rtn")
        ratio = f"{v['ratio']:.2f}x ({v['ratio_ci95'][0]:.2f}-{v['ratio_ci95'][1]:.2f})" \
            if v else "—"
        lines.append(f"| {r['label']} | {r['quantize_s']:.0f} s | {ratio} |")
    return lines


def _ci(q: dict[str, Any]) -> str:
    ci = q.get("mean_kl_ci95")
    return f"{_kl(q['mean_kl'])} ({_kl(ci[0])}-{_kl(ci[1])})" if ci else _kl(q["mean_kl"])


def versus_table(rows: list[dict[str, Any]]) -> list[str]:
    """The pick against the preset made with the same importance matrix, at the preset's bytes,
    with 95% paired-bootstrap intervals over the held-out windows."""
    lines = ["| model | budget | preset + imatrix: mean KL (95% CI) | pick | pick: mean KL "
             "(95% CI) | pick / preset (95% CI) | difference resolved | recommend wall |",
             "| --- | --- | ---: | --- | ---: | ---: | --- | ---: |"]
    for r in rows:
        v = r["versus"]
        lo, hi = v["ratio_ci95"]
        lines.append(
            f"| {r['model']} | {r['budget_of']} ({r['budget']:,} B) | {_ci(r['preset'])} | "
            f"{r['picked']} ({r['picked_kind']}, {r['pick_size']:,} B) | {_ci(r['pick'])} | "
            f"**{v['ratio']:.2f}x** ({lo:.2f}-{hi:.2f}x) | "
            f"{'yes' if v['resolved'] else 'no'} ({v['n_windows']} windows) | "
            f"{r['recommend_s']:.0f} s |")
    return lines


def headline(results: dict[str, Any]) -> list[str]:
    """Section 1's lead: float-native sources, then already-quantized ones (secondary)."""
    rows = results.get("float_native") or []
    if not rows:
        return []
    native = [r for r in rows if r["float_native"]]
    quantized = [r for r in rows if not r["float_native"]]
    out = ["### Float-native sources: the pick against llama.cpp's preset", "",
           "The sources users bring are float. These models are exact function-preserving "
           "transforms of the two trained models installed here (`advisor/benchmarks/"
           "float_native.py`: SmolLM2 with its residual stream rotated, Gemma 3 with per-channel "
           "power-of-two scales between paired tensors), written as F16 GGUFs, so no tensor "
           "sits on a GGML grid and keeping one at the source type is never free. At the byte "
           "size of each preset, made with the importance matrix the tool uses "
           "(`advisor quantize --preset P --imatrix`), `advisor recommend --max-size <bytes>` "
           "with default settings. Both are judged on every held-out window (512 tokens, the "
           "second half scored); intervals are 95% bootstrap over windows, paired for the "
           "ratio (the same resampled windows for both)."
           + (" This section ran alone (`make bench SECTION=float-native`) with the user's "
              "cache, so a recommend time is warm where an earlier run had already computed "
              "that model's importance matrix, reference or sensitivity table."
              if results.get("section_only") == "float-native"
              or results.get("float_native_alone") else ""), ""]
    out += versus_table(native) + [""]
    if quantized:
        out += ["### Already-quantized sources (secondary)", "",
                "The same comparison on a source that is itself quantized (its reference is the "
                "dequantized source, so tensors kept at the source type cost nearly nothing).",
                ""]
        out += versus_table(quantized) + [""]
    return out


def prediction_section(results: dict[str, Any]) -> list[str]:
    """Section 3: the published-measurement validation, then this host's predicted vs measured
    candidates (empty when the run benched none)."""
    preds = results.get("predictions")
    if not preds:
        return []
    out: list[str] = []
    from advisor.calibration.report import markdown as published

    out += ["## 3. Prediction accuracy", "",
            "### Hardware the advisor does not run on: published measurements", "",
            *published(), "", "### This host", "",
            "For every candidate benchmarked (`advisor bench`) with the workload its estimate "
            "was made for (512 prompt + 128 new tokens, one request at a time): the prediction "
            "in force when it was benched (*predicted*: memory as llama.cpp accounts it; "
            "latency re-predicted before each bench: this host's llama.cpp kernel timings of "
            "the candidate's types (`advisor.calibration.kernels`, timed before the bench where "
            "a type was new), scaled by this host's earlier benches of other artifacts; the "
            "timings alone for the first bench into an empty cache) against the measurement. "
            "Ratio = predicted / measured.", "",
            "| candidate | size pred / meas | memory pred / meas (MiB) | TTFT pred / meas "
            "(ms) | per token pred / meas (ms) | p95 pred / meas (ms) |",
            "| --- | ---: | ---: | ---: | ---: | ---: |"]
    for p in preds:
        out.append(
            f"| {p['label']} | {p['size'][0]:,} / {p['size'][1]:,} | "
            f"{p['memory'][0] / MiB:.0f} / {p['memory'][1] / MiB:.0f} | "
            f"{p['ttft'][0] * 1e3:.0f} / {p['ttft'][1] * 1e3:.0f} | "
            f"{p['per_token'][0] * 1e3:.1f} / {p['per_token'][1] * 1e3:.1f} | "
            f"{p['p95'][0] * 1e3:.0f} / {p['p95'][1] * 1e3:.0f} |")
    out += ["", "| figure | candidates | median ratio | min | max |",
            "| --- | ---: | ---: | ---: | ---: |"]
    for k, s in results["prediction_errors"].items():
        out.append(f"| {k} | {s['n']} | {s['median']:.2f} | {s['min']:.2f} | "
                   f"{s['max']:.2f} |")
    out.append("")
    return out


def markdown(results: dict[str, Any], plot_rel: str | None) -> str:
    m = results["machine"]
    bw = m.get("bandwidth") or {}
    out = [
        "# Benchmarks",
        "",
        (f"Generated by `make bench SECTION={results['section_only']}` on {results['date']} in "
         f"{results['wall_s'] / 60:.1f} minutes (that section alone; the others, where shown, "
         "come from the earlier whole run in the same results file)."
         if results.get("section_only") else
         f"Generated by `make bench` on {results['date']} in {results['wall_s'] / 60:.1f} "
         "minutes (the whole suite, one run).")
        + " Every number below was measured in that run unless its "
        "column says *predicted*; the commands are listed at the end. Regenerate with "
        "`make bench`.",
        "",
        *[line for note in results.get("notes", []) for line in (f"**Note.** {note}", "")],
        "## Machine",
        "",
        f"- CPU: {m.get('cpu')}, {m.get('physical_cores')} physical / {m.get('logical_cores')} "
        f"logical cores, ISA {', '.join(m.get('isa') or [])}",
        f"- RAM: {(m.get('ram_total') or {}).get('value', 0) / 2**30:.1f} GiB; "
        f"memory bandwidth {bw.get('value', 0) / 1e9:.1f} GB/s ({bw.get('origin', '?')}, "
        "multi-threaded copy)",
        f"- accelerators: {', '.join(m.get('accelerators') or []) or 'none'}",
        f"- quant-advisor {results.get('version', '?')}, llama-cpp-python "
        f"{results.get('llama_cpp', '?')}, torch {results.get('torch', '?')}",
        "",
        "## 1. Quality per byte",
        "",
        *headline(results),
    ]
    if not results.get("quality"):
        return "\n".join(out + hf_section(results) + gguf_quantizer_section(results)
                         + cost_section(results) + prediction_section(results)
                         + _tail(results))
    out += [
        "### The embedded model, every preset (already-quantized source)",
        "",
        "Model: the embedded SmolLM2-135M-Instruct. Its source is **already quantized (Q4_1)**; "
        "the reference is that source dequantized to F16, so formats at or above Q4_1's "
        "precision look nearly free and are not comparable to numbers against a BF16 original. "
        f"Judged on held-out text: the first {results['heldout_windows']} windows of 512 "
        "tokens of the second half of `data/evaluation.txt` (the second half of each window "
        "scored), which `recommend` never reads when it picks (it scores the first windows of "
        "the file). A preset whose file is byte-identical to one above is not evaluated "
        "again: it shows that one's figures and says so.",
        "",
    ]
    if plot_rel:
        out += [f"![size vs KL]({plot_rel})", ""]
    out += _quality_table(results["quality"]) + [""]
    if results.get("picks"):
        out += ["### The advisor's picks at the presets' byte sizes", "",
                "`advisor recommend --max-size <bytes of the preset>` with default settings "
                "(importance matrix on, 30 trials, 3 searched plans + 2 presets measured). "
                "The ratio compares the pick's held-out KL with the same preset's (with and "
                "without importance matrix). The run marked *cold* was the suite's first command, "
                "with an empty cache (importance matrix, F16 reference, reference log-probs and "
                "sensitivity table all computed; it is also the embedded model's row of section "
                "2); the others found those in the suite's cache.", "",
                "| budget | picked | size | mean KL | p99 KL | top-1 | vs preset | "
                "vs preset + imatrix | recommend wall |",
                "| --- | --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: |"]
        by = {(r["label"], r["imatrix"]): r for r in results["quality"]}
        for p in results["picks"]:
            plain, imat = by.get((p["budget_of"], False)), by.get((p["budget_of"], True))
            out.append(
                f"| {p['budget_of']} ({p['budget']:,} B) | {p['picked']} ({p['picked_kind']}) "
                f"| {p['size']:,} | {_kl(p['mean_kl'])} | {_kl(p['p99_kl'])} | "
                f"{_pct(p['top1_agreement'])} | {_ratio(p, plain)} | {_ratio(p, imat)} | "
                f"{p['recommend_s']:.0f} s{' (cold)' if p.get('cold') else ''} |")
        out.append("")
    out += hf_section(results)
    out += gguf_quantizer_section(results)
    out += cost_section(results)
    out += prediction_section(results)
    roof = results.get("roofline")
    if roof:
        out += ["## 4. Decode speed against the physical limit", "",
                "Measured decode tokens/s (1 / per-token latency of `advisor bench`) against the "
                "memory-bandwidth roofline of this host: measured copy bandwidth / bytes read "
                "per decoded token (all weights, the tied embedding table included as it is "
                "the LM head, plus the KV cache at the bench's mean context).", "",
                "| candidate | bytes per token | roofline tok/s | measured tok/s | "
                "% of roofline |", "| --- | ---: | ---: | ---: | ---: |"]
        for x in roof:
            out.append(f"| {x['label']} | {x['bytes_per_token']:,.0f} | "
                       f"{x['roofline_tok_s']:.1f} | {x['measured_tok_s']:.1f} | "
                       f"{x['percent']:.0f}% |")
        out.append("")
    return "\n".join(out + _tail(results))


def _tail(results: dict[str, Any]) -> list[str]:
    return ["## Commands run", "", "In order (`advisor` is `.venv/bin/advisor`; the suite is "
            "`advisor/benchmarks/`):", "", "```"] + results["commands"] + ["```", ""]


def gguf_quantizer_section(results: dict[str, Any]) -> list[str]:
    """llama.cpp's and AutoRound's GGUF writers of the same presets."""
    rows = results.get("gguf_quantizers")
    if not rows:
        return []
    out = ["### GGUF writers: llama.cpp and AutoRound", "",
           "`advisor quantize --preset P` (llama.cpp, with its importance matrix from "
           "`data/calibration.txt`, and with `--no-imatrix`) and `--gguf-quantizer autoround` "
           "(AutoRound's GGUF export, 0 tuning iterations, float32), judged on the held-out "
           "windows against the model's own F16 reference. *Retyped*: tensors AutoRound wrote "
           "in another type than the plan (recorded in the artifact's plan as fallbacks).", "",
           "| model | preset | writer | size | mean KL (95% CI) | / llama.cpp + imatrix (95% CI) "
           "| retyped | quantize wall |",
           "| --- | --- | --- | ---: | ---: | ---: | ---: | ---: |"]
    for r in rows:
        v = r.get("vs_imatrix")
        ratio = f"{v['ratio']:.2f}x ({v['ratio_ci95'][0]:.2f}-{v['ratio_ci95'][1]:.2f})" \
            if v else "—"
        out.append(f"| {r['model']} | {r['preset']} | {r['quantizer']} | {r['size']:,} | "
                   f"{_ci(r)} | {ratio} | {r['fallbacks']} | {r['quantize_s']:.0f} s |")
    return out + [""]


def cost_section(results: dict[str, Any]) -> list[str]:
    """Section 2: recommend's wall time and peak RSS per stage and model, the fitted
    exponents; nothing without a cost run."""
    cost = results.get("cost")
    if not cost:
        return []
    out: list[str] = []
    settings = cost.get("settings") or []
    out += ["## 2. The tool's own cost", "",
            "`recommend` at the model's Q3_K_M byte size with an **empty cache** (F16 "
            "reference, reference log-probs and sensitivity table all computed). Per stage: "
            "wall seconds / peak RSS of the tool's process tree in MiB (sampled every 50 ms)."
            " The embedded model's row is the cold pick of section 1: default settings, "
            "importance matrix included. The random-weight rows (the llama layout on SmolLM2's "
            "vocabulary built from config, `advisor/benchmarks/models.py`; F16 safetensors "
            "sources, so a `convert` stage) measure how the cost grows with size, with `"
            + " ".join(settings) + "` so that every size fits the section's time: the same "
            "stages, with fewer candidates realized and measured. Issue 17's memory bound, "
            "0.5 x the model's F16 bytes + 1 GiB, is the last column.", ""]
    stages = [s for s in (results.get("stages") or []) if any(
        s in r["stage_seconds"] for r in cost["runs"])]
    out.append("| model | parameters | " + " | ".join(stages)
               + " | total wall | peak RSS | RSS bound |")
    out.append("| --- | ---: | " + " | ".join("---:" for _ in stages)
               + " | ---: | ---: | ---: |")
    for r in cost["runs"]:
        cells = [f"{r['stage_seconds'].get(s, 0):.1f} s / "
                 f"{r['stage_peak_rss'].get(s, 0) / MiB:.0f}" for s in stages]
        bound = (2 * r["params"] / 2 + 2**30) / MiB  # 0.5 x F16 bytes + 1 GiB
        name = r["name"] + ("" if r.get("fitted", True) else " (not fitted)")
        out.append(f"| {name} | {r['params'] / 1e6:.0f}M | " + " | ".join(cells)
                   + f" | {r['wall_s']:.0f} s | {r['peak_rss'] / MiB:.0f} MiB | "
                   f"{bound:.0f} MiB |")
    e = cost["exponents"]
    if any(not r.get("fitted", True) for r in cost["runs"]):
        out += ["", "Rows marked *not fitted* have widths that do not split into llama.cpp's "
                "256-value blocks (SmolLM2's 576 and 960): there every K- and IQ-type falls "
                "back to a cheaper legacy type, so their realize and sensitivity stages time "
                "other quantizers than the fitted rows'. The fit keeps the widths that do "
                "split, so that it measures size alone."]
    out += ["", "Fitted growth exponent b of cost ~ parameters^b over the fitted random-weight "
            "sizes: total wall " + fmt(e.get("total")) + ", peak RSS "
            + fmt(e.get("peak_rss")) + "; per stage: "
            + ", ".join(f"{s} {fmt(e.get(s))}" for s in stages) + ".", ""]
    return out
