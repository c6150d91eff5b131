"""The measurements of `make bench`, one function per section of BENCHMARKS.md.

Each returns plain dicts (kept in bench-out/results.json); page.py turns them into BENCHMARKS.md.
"""

from __future__ import annotations

import hashlib
import json
import tempfile
from pathlib import Path
from typing import Any

import numpy as np

from advisor.benchmarks.run import Ran, Runner

MODEL = "smollm2-135m"
PRESETS = ("Q2_K", "Q3_K_S", "Q3_K_M", "Q3_K_L", "Q4_0", "Q4_1", "Q4_K_S", "Q4_K_M", "Q5_0",
           "Q5_1", "Q5_K_S", "Q5_K_M", "Q6_K", "Q8_0")
PICK_BUDGETS = ("Q3_K_M", "Q4_K_M")
# Presets benched for sections 3 and 4, at the 512+128-token workload of their estimates (the
# rest add rows, not information, to both)
BENCHED_PRESETS = ("Q2_K", "Q3_K_M", "Q4_K_M", "Q6_K", "Q8_0")
# Held-out windows scored per artifact (the held-out half has 10): 5 x 255 scored tokens keeps
# the suite inside its hour; the presets' KL differ by far more than their window-to-window noise
HELDOUT_WINDOWS = 5
# --quick (the test suite's form, which checks code paths, not figures): 2 windows, the fewest
# that still give a paired interval
QUICK_WINDOWS = 2
# The cost section's larger models: the measured phase cut to one searched plan and one preset
# (1 window, 1 request each) and no importance matrix, so that three sizes fit in the hour; the
# default settings are measured once, on the embedded model (the cold pick of section 1)
COST_SETTINGS = ("--no-imatrix", "--candidates", "1", "--presets", "1", "--eval-windows", "1",
                 "--bench-requests", "1")
# (backend, bits) of the HF rows: every scheme once; rtn at both widths as the baseline that
# GPTQ and AWQ (4 bits, where they matter: 8-bit RTN is within noise of float) are judged by
HF_ROWS = (("rtn", 4), ("rtn", 8), ("gptq", 4), ("awq", 4), ("autoround", 4), ("nf4", 4),
           ("fp8", 8), ("smoothquant", 8))
INT_WRITERS = ("rtn", "gptq", "awq", "autoround")
# `make bench SECTION=hf`: the 4-bit rows, on the embedded model and its rotated float-native copy
HF_W4_ROWS = (("rtn", 4), ("gptq", 4), ("awq", 4), ("autoround", 4), ("nf4", 4))
# the 8-bit schemes, each against 8-bit RTN (`make bench SECTION=hf-w8`)
HF_W8_ROWS = (("rtn", 8), ("fp8", 8), ("smoothquant", 8))
STAGES = ("inspect", "convert", "targets", "plan space", "sensitivity", "search", "realize",
          "measure", "pick", "emit")


def heldout_text(root: Path) -> Path:
    """The second half of data/evaluation.txt, from a paragraph start: `recommend` selects its
    pick on the first windows of the evaluation text, so judging the picks there would grade
    the tool on text it chose on. Every quality figure of the suite is on this half."""
    from advisor.textdata import default_evaluation_text

    text = default_evaluation_text()
    cut = text.find("\n\n", len(text) // 2)
    path = root / "heldout.txt"
    path.write_text(text[cut + 2:])
    return path


def _report(directory: Path) -> dict[str, Any]:
    data: dict[str, Any] = json.loads((directory / "report.json").read_text())
    return data


def _quality(q: dict[str, Any]) -> dict[str, Any]:
    return {k: q[k]["value"] for k in ("mean_kl", "p99_kl", "top1_agreement", "perplexity",
                                       "reference_perplexity") if k in q} | {
        "n_windows": q.get("n_windows"), "n_scored": q.get("n_tokens", q.get("n_scored")),
        "mean_kl_ci95": q.get("mean_kl", {}).get("ci95"), "kl_windows": q.get("kl_windows")}


def evaluate(r: Runner, artifact: Path, heldout: Path, model: str = MODEL,
             windows: int | None = None) -> dict[str, Any]:
    """Held-out quality of an artifact; `windows` 0 scores every window of the text, None
    HELDOUT_WINDOWS (QUICK_WINDOWS under --quick: `r.quick`)."""
    if windows is None:
        windows = QUICK_WINDOWS if r.quick else HELDOUT_WINDOWS
    ran = r.advisor("eval", "--model", model, "--artifact", artifact, "--eval-text", heldout,
                    "--max-windows", str(windows), "--json")
    return _quality(ran.json())


def machine(r: Runner) -> dict[str, Any]:
    hw = r.advisor("probe", "--json").json()
    cpu = hw["cpu"]
    return {"cpu": cpu.get("model"), "physical_cores": cpu.get("physical_cores"),
            "logical_cores": cpu.get("logical_cores"), "ram_total": cpu.get("ram_total"),
            "isa": cpu.get("isa"), "bandwidth": cpu.get("memory_bandwidth"),
            "accelerators": [a.get("name") for a in hw.get("accelerators", [])]}


def weights_digest(directory: Path) -> str:
    """sha256 of an artifact's weight files (*.gguf, *.safetensors), in name order."""
    h = hashlib.sha256()
    for f in sorted([*directory.glob("*.gguf"), *directory.glob("*.safetensors")]):
        h.update(f.name.encode() + b"\0")
        with f.open("rb") as fh:
            for block in iter(lambda: fh.read(1 << 22), b""):
                h.update(block)
    return h.hexdigest()


def quality_per_byte(r: Runner, work: Path, heldout: Path,
                     presets: tuple[str, ...] = PRESETS,
                     imatrix_modes: tuple[bool, ...] = (False, True)) -> list[dict[str, Any]]:
    """Every preset with and without an importance matrix, quantized by llama.cpp, judged on the
    held-out text. A file byte-identical to one already judged (on the embedded model Q4_1 and
    Q8_0 come out the same with and without importance matrix; Q2_K and Q3_K_S share every
    tensor but not the file-type field, so both are judged) takes that one's figures, with
    `same_as` naming it, instead of being evaluated again."""
    rows: list[dict[str, Any]] = []
    judged: dict[str, dict[str, Any]] = {}
    for imatrix in imatrix_modes:
        for p in presets:
            d = work / "presets" / (p + ("-imatrix" if imatrix else ""))
            ran = r.advisor("quantize", "--model", MODEL, "--preset", p,
                            "--imatrix" if imatrix else "--no-imatrix", "--out", d, "--json")
            rep = ran.json()
            row = {"label": p, "kind": "preset", "imatrix": imatrix, "dir": str(d),
                   "size": rep["size"]["value"], "bpw": rep["estimate"].get("bits_per_weight"),
                   "quantize_s": round(ran.seconds, 2)}
            digest = weights_digest(d)
            first = judged.get(digest)
            if first is None:
                judged[digest] = row
                row.update(evaluate(r, d, heldout))
            else:
                row.update({k: first[k] for k in _QUALITY_KEYS if k in first},
                           same_as=f"{first['label']} {'with' if first['imatrix'] else 'without'}"
                                   " imatrix")
            rows.append(row)
    return rows


_QUALITY_KEYS = ("mean_kl", "p99_kl", "top1_agreement", "perplexity", "reference_perplexity",
                 "n_windows", "n_scored", "mean_kl_ci95", "kl_windows")


def float_native_models(work: Path) -> list[dict[str, Any]]:
    """The models of the headline: float-native variants of the two trained models
    (advisor.benchmarks.float_native), and Gemma 3 as installed (already quantized: the
    secondary table), built into <work>/models on the fly."""
    from advisor.benchmarks.float_native import build_float_native
    from advisor.benchmarks.models import gemma3_gguf
    from advisor.inspect import resolve_model

    root = work / "models"
    gemma = gemma3_gguf(root)
    return [
        {"name": "SmolLM2-135M, rotated (float-native)", "float_native": True,
         "path": str(build_float_native(resolve_model(MODEL), root, "rotate"))},
        {"name": "Gemma 3 270M, rescaled (float-native)", "float_native": True,
         "path": str(build_float_native(gemma, root, "rescale"))},
        {"name": "Gemma 3 270M (Q4_K_M source)", "float_native": False, "path": str(gemma)},
    ]


def preset_vs_pick(r: Runner, work: Path, heldout: Path, models: list[dict[str, Any]],
                   budgets: tuple[str, ...] = PICK_BUDGETS, extra: tuple[str, ...] = (),
                   imatrix: bool = True, windows: int = 0) -> list[dict[str, Any]]:
    """For each model and budget preset: the preset quantized with the importance matrix the
    tool uses (`quantize --imatrix`: the same chunks of the same calibration text), then
    `recommend --max-size <its bytes>`, both judged on every held-out window, and the pick
    against the preset with 95% paired-bootstrap intervals over the windows. `imatrix` False
    (the test suite's quick form): neither uses an importance matrix; `windows` 0 judges every
    held-out window."""
    from advisor.measure.quality.metrics import paired_comparison

    rows = []
    for i, m in enumerate(models):
        for p in budgets:
            d = work / "float-native" / f"m{i}"
            preset_dir = d / (p + ("-imatrix" if imatrix else ""))
            ran = r.advisor("quantize", "--model", m["path"], "--preset", p,
                            "--imatrix" if imatrix else "--no-imatrix", "--out", preset_dir,
                            "--json")
            size = int(ran.json()["size"]["value"])
            preset = evaluate(r, preset_dir, heldout, m["path"], windows=windows)
            ran = r.advisor("recommend", "--model", m["path"], "--max-size", str(size), *extra,
                            *(() if imatrix else ("--no-imatrix",)),
                            "--out", d / f"pick-at-{p}", "--json")
            rep = ran.json()
            pick = evaluate(r, d / f"pick-at-{p}", heldout, m["path"], windows=windows)
            picked = next(c for c in rep["candidates"] if c["label"] == rep["pick"]["label"])
            rows.append({"model": m["name"], "float_native": m["float_native"], "budget_of": p,
                         "imatrix": imatrix, "budget": size, "preset": preset, "pick": pick,
                         "picked": picked["label"], "picked_kind": picked["kind"],
                         "pick_size": picked["size_measured"], "search": rep.get("search", {}),
                         "recommend_s": round(ran.seconds, 1),
                         "versus": paired_comparison(pick["kl_windows"], preset["kl_windows"])})
    return rows


def picks(r: Runner, work: Path, heldout: Path, sizes: dict[str, int],
          budgets: tuple[str, ...] = PICK_BUDGETS, extra: tuple[str, ...] = (),
          cold: bool = False) -> list[dict[str, Any]]:
    """`advisor recommend` (default settings) at the byte size of each preset in `budgets`.

    `cold`: the first of them is the suite's first command to use its (empty) cache, so it
    computes the importance matrix, F16 reference, reference log-probs and sensitivity table;
    that run is also the embedded model's row of the tool's cost (its `cost` entry)."""
    rows = []
    for i, p in enumerate(budgets):
        out = work / "picks" / f"at-{p}"
        first_cold = cold and i == 0
        ran = r.advisor("recommend", "--model", MODEL, "--max-size", str(sizes[p]), *extra,
                        "--out", out, "--json", note="empty cache" if first_cold else "")
        rep = ran.json()
        pick = next(c for c in rep["candidates"] if c["label"] == rep["pick"]["label"])
        row = {"label": f"pick at {p}", "kind": "pick", "budget": sizes[p],
               "budget_of": p, "picked": pick["label"], "picked_kind": pick["kind"],
               "dir": str(out), "size": pick["size_measured"],
               "bpw": rep["estimate"].get("bits_per_weight"),
               "recommend_s": round(ran.seconds, 1), "cold": first_cold,
               "selection_kl": pick["kl_measured"],
               "surrogate_spearman": rep.get("surrogate_spearman"),
               "candidates_dir": str(out.with_name(out.name + ".candidates")),
               **evaluate(r, out, heldout)}
        if first_cold:
            row["cost"] = _cost_row("embedded", MODEL, _n_params(MODEL), sizes[p], ran, rep)
        rows.append(row)
    return rows


def preset_size(r: Runner, work: Path, preset: str) -> int:
    """Bytes of llama.cpp's `preset` of the embedded model, quantized without importance matrix
    (touches no cache). K-quant presets have the same size with one: the matrix changes values,
    not types (on the embedded model Q3_K_M is 93,510,208 bytes both ways)."""
    ran = r.advisor("quantize", "--model", MODEL, "--preset", preset, "--no-imatrix", "--out",
                    work / "budget" / preset, "--json")
    return int(ran.json()["size"]["value"])


def _n_params(model: str) -> int:
    from advisor.inspect import inspect_model

    return inspect_model(model).n_params


def _cost_row(name: str, model: str, n_params: int, max_size: int, ran: Ran,
              rep: dict[str, Any]) -> dict[str, Any]:
    return {"name": name, "model": model, "params": n_params, "max_size": max_size,
            "wall_s": round(ran.seconds, 1), "peak_rss": ran.peak_rss,
            "stage_seconds": rep.get("stage_seconds", {}),
            "stage_peak_rss": rep.get("stage_peak_rss", {}), "pick": rep["pick"]["label"]}


def hf_backends(r: Runner, work: Path, heldout: Path,
                rows_wanted: tuple[tuple[str, int], ...] = HF_ROWS, model: str = MODEL,
                tag: str = "") -> list[dict[str, Any]]:
    """The HF checkpoint backends (group size 128 for the int schemes, per tensor the largest
    of 128/64/32 that divides its rows), where registered, on `model` (`tag` names it in the
    labels); each int row against RTN at its width on the same windows (paired bootstrap)."""
    from advisor.measure.quality.metrics import paired_comparison
    from backends import names

    rows: list[dict[str, Any]] = []
    for backend, bits in rows_wanted:
        label = f"{backend} w{bits}" + (" g128" if backend in INT_WRITERS else "") \
            + (f" ({tag})" if tag else "")
        if backend not in names():
            rows.append({"label": label, "kind": "hf", "missing": "backend not registered"})
            continue
        d = work / "hf" / f"{backend}-w{bits}{'-' + tag if tag else ''}"
        try:
            ran = r.advisor("quantize", "--model", model, "--backend", backend, "--bits",
                            str(bits), "--group-size", "128", "--out", d, "--force", "--json")
            rep = ran.json()
            row = {"label": label, "kind": "hf", "dir": str(d), "model": model,
                   "backend": backend, "bits": bits, "size": rep["size"]["value"],
                   "bpw": rep.get("estimate", {}).get("bits_per_weight"),
                   "quantize_s": round(ran.seconds, 1), **evaluate(r, d, heldout, model=model)}
        except RuntimeError as e:
            rows.append({"label": label, "kind": "hf",
                         "missing": str(e).splitlines()[-1][:300]})
            continue
        rtn = next((x for x in rows if x.get("backend") == "rtn" and x.get("bits") == bits
                    and x.get("kl_windows")), None)
        if backend != "rtn" and rtn and row.get("kl_windows"):
            row["vs_rtn"] = paired_comparison(row["kl_windows"], rtn["kl_windows"])
        rows.append(row)
    return rows


def _fit(sizes: list[float], values: list[float]) -> float | None:
    """Exponent b of values ~ a * sizes^b (least squares in log-log)."""
    pts = [(s, v) for s, v in zip(sizes, values) if s > 0 and v > 0]
    if len(pts) < 2:
        return None
    x, y = np.log([p[0] for p in pts]), np.log([p[1] for p in pts])
    return float(np.polyfit(x, y, 1)[0])


def tool_cost(r: Runner, work: Path, models: list[tuple[str, str, int, int, bool]],
              extra: tuple[str, ...] = (), done: tuple[dict[str, Any], ...] = ()) -> \
        dict[str, Any]:
    """A `recommend` (with `extra`) per model, each with an empty cache (cold: reference,
    sensitivity, importance matrix when on, all computed): wall time and peak RSS per stage
    from its report, whole-run wall and peak RSS of the process tree, and the fitted growth
    exponent with the parameter count. `models` = (name, path or alias, parameters, --max-size
    bytes, in the fit); `done` = rows measured beforehand (the embedded model's cold pick,
    default settings), never fitted."""
    runs = list(done)
    for name, model, n_params, max_size, fitted in models:
        with tempfile.TemporaryDirectory(prefix="qa-bench-cache-") as cache:
            out = work / "cost" / name
            ran: Ran = r.advisor("recommend", "--model", model, "--max-size", str(max_size),
                                 *extra, "--out", out, "--json",
                                 env={"QUANT_ADVISOR_CACHE": cache},
                                 note="empty cache")
        runs.append(_cost_row(name, model, n_params, max_size, ran, ran.json())
                    | {"fitted": fitted})
    fits = {}
    scaled = [x for x in runs if x["name"] != "embedded" and x.get("fitted", True)] or runs
    params = [float(x["params"]) for x in scaled]
    fits["total"] = _fit(params, [x["wall_s"] for x in scaled])
    fits["peak_rss"] = _fit(params, [float(x["peak_rss"]) for x in scaled])
    for st in STAGES:
        fits[st] = _fit(params, [float(x["stage_seconds"].get(st, 0.0)) for x in scaled])
    return {"runs": runs, "exponents": fits, "settings": list(extra)}


def estimate_workload(est: dict[str, Any]) -> dict[str, Any]:
    """The workload a report's estimate was made for; reports written before estimates recorded
    it were made for the default one, as `quantize` and a default `recommend` make it."""
    from advisor.estimate import Workload

    recorded: dict[str, Any] = est.get("workload") or Workload().to_dict()
    return recorded


def predictions(rows: list[str], labels: dict[str, str] | None = None) -> list[dict[str, Any]]:
    """Predicted vs measured for every candidate artifact whose bench ran the workload its
    estimate was made for: file size, peak memory, TTFT, per-token latency, request p95
    (prediction / measurement). `labels` names a directory's row (default: its plan label); a
    pick and its candidate directory are the same file benched twice, so they need names apart."""
    labels = labels or {}
    out = []
    seen: set[str] = set()
    for d in rows:
        directory = Path(d)
        if str(directory) in seen or not (directory / "report.json").is_file():
            continue
        seen.add(str(directory))
        rep = _report(directory)
        b = rep.get("measurements", {}).get("bench")
        if not b:
            continue
        est = rep["estimate"]
        if b.get("workload") != estimate_workload(est):
            continue  # a 128-token bench says nothing about a 512-token prediction
        mem = b["peak_rss"]["value"] - b["baseline_rss"]["value"]
        out.append({
            "label": labels.get(d) or rep.get("label") or directory.name, "dir": str(directory),
            "workload": b.get("workload"),
            "size": (est["file_size"]["value"], rep["size"]["value"]),
            "memory": (est["total_memory"]["value"], mem),
            "ttft": (est["ttft"]["value"], b["ttft"]["value"]),
            "per_token": (est["per_token"]["value"], b["per_token"]["value"]),
            "p95": (est["request_latency"]["value"], b["latency_p95"]["value"]),
        })
    return out


def error_summary(preds: list[dict[str, Any]]) -> dict[str, dict[str, float]]:
    """Per figure: median, min and max of predicted/measured over the candidates."""
    summary = {}
    for key in ("size", "memory", "ttft", "per_token", "p95"):
        ratios = [p[key][0] / p[key][1] for p in preds if p[key][1]]
        if ratios:
            summary[key] = {"n": len(ratios), "median": float(np.median(ratios)),
                            "min": float(min(ratios)), "max": float(max(ratios))}
    return summary


def bench_artifacts(r: Runner, dirs: list[Path], requests: int = 8) -> None:
    """`advisor bench` on each artifact, recorded in its report, with the workload its estimate
    was made for (so that section 3 compares like with like)."""
    for d in dirs:
        wl = estimate_workload(_report(d)["estimate"])
        r.advisor("bench", "--artifact", d, "--requests", str(requests), "--prompt-tokens",
                  str(wl["prompt_tokens"]), "--max-new-tokens", str(wl["new_tokens"]),
                  "--concurrency", str(wl["concurrency"]), "--json")


def roofline(rows: list[dict[str, Any]], bandwidth: float, model: str = MODEL) -> \
        list[dict[str, Any]]:
    """Decode tokens/s measured by the bench vs the bandwidth roofline of this host: measured
    copy bandwidth / bytes read per decoded token (every weight, the embedding table only when
    tied to the LM head as here, plus the KV cache at the bench's mean context)."""
    from advisor.estimate import weight_bytes
    from advisor.inspect import inspect_model
    from advisor.modelspec import Role
    from advisor.plan import QuantPlan

    spec = inspect_model(model)
    out = []
    for row in rows:
        rep = _report(Path(row["dir"]))
        b = rep.get("measurements", {}).get("bench")
        if not b:
            continue
        plan = QuantPlan.from_dict(rep["plan"])
        per_tensor = weight_bytes(spec, plan)
        weights = sum(per_tensor.values())
        emb = sum(per_tensor[t.canonical] for t in spec.tensors if t.role is Role.EMBEDDING)
        read = weights - (0 if spec.tied_embeddings else emb)
        wl = b["workload"]
        kv = 2 * spec.n_layers * spec.n_kv_heads * spec.head_dim * 2
        per_token_bytes = read + kv * (wl["prompt_tokens"] + wl["new_tokens"] / 2)
        limit = bandwidth / per_token_bytes
        measured = 1.0 / b["per_token"]["value"]
        out.append({"label": row["label"], "bytes_per_token": per_token_bytes,
                    "roofline_tok_s": limit, "measured_tok_s": measured,
                    "percent": 100.0 * measured / limit})
    return out


GGUF_QUANTIZER_PRESETS = ("Q4_K_M", "Q3_K_M")
GGUF_QUANTIZERS = (("llama.cpp + imatrix", ()), ("llama.cpp", ("--no-imatrix",)),
                   ("AutoRound", ("--gguf-quantizer", "autoround")))


def gguf_quantizers(r: Runner, work: Path, heldout: Path) -> list[dict[str, Any]]:
    """Each preset of GGUF_QUANTIZER_PRESETS written by llama.cpp (with and without importance
    matrix) and by AutoRound's GGUF export, on the embedded model and its rotated float-native
    copy; each row's KL against llama.cpp + imatrix's on the same windows (paired bootstrap)."""
    from advisor.benchmarks.float_native import build_float_native
    from advisor.inspect import resolve_model
    from advisor.measure.quality.metrics import paired_comparison

    models = (("SmolLM2-135M (Q4_1 source)", MODEL, "embedded"),
              ("SmolLM2-135M, rotated (float-native)",
               str(build_float_native(resolve_model(MODEL), work / "models", "rotate")),
               "rotated"))
    rows: list[dict[str, Any]] = []
    for name, model, tag in models:
        for preset in GGUF_QUANTIZER_PRESETS:
            base: dict[str, Any] | None = None
            for quantizer, extra in GGUF_QUANTIZERS:
                d = work / "gguf-quantizers" / f"{tag}-{preset}-{quantizer.split()[0].lower()}"
                if quantizer == "llama.cpp":
                    d = d.with_name(d.name + "-plain")
                ran = r.advisor("quantize", "--model", model, "--preset", preset, *extra,
                                "--out", d, "--force", "--json")
                rep = ran.json()
                row = {"model": name, "preset": preset, "quantizer": quantizer, "dir": str(d),
                       "size": rep["size"]["value"], "quantize_s": round(ran.seconds, 1),
                       "fallbacks": len(rep["plan"]["options"].get("fallbacks") or {}),
                       **evaluate(r, d, heldout, model=model)}
                if base is None:
                    base = row
                elif row.get("kl_windows") and base.get("kl_windows"):
                    row["vs_imatrix"] = paired_comparison(row["kl_windows"], base["kl_windows"])
                rows.append(row)
    return rows
