"""`python -m advisor.benchmarks` (what `make bench` runs): the whole suite, then BENCHMARKS.md.

  --out DIR     working directory for artifacts and results.json (default bench-out/)
  --md FILE     the markdown written (default BENCHMARKS.md); its plot goes to
                data/benchmarks/quality_per_byte.png beside it
  --quick       a small subset with the same code paths (two presets, one pick without
                importance matrix, two tiny random models): what the test suite runs
  --section S   run one section alone (`float-native`: the headline of section 1;
                `predictions`: section 3 on the benched presets; `hf` / `hf-w8`: the 4-bit /
                8-bit HF rows on both models; `gguf-quantizers`:
                llama.cpp's and AutoRound's GGUF writers; `scale`: section 2 on random-weight
                models of 135M-3.0B parameters), keeping the other sections
                of <out>/results.json from an earlier run; `make bench SECTION=float-native`

The full suite empties <out> first (but for the random models of section 2) and runs every
command with QUANT_ADVISOR_CACHE=<out>/cache, so that
its timings do not depend on what earlier runs left in the user's cache: the importance matrix,
the F16 reference, the reference log-probs and the sensitivity table are computed once in the
run (the cold pick and the cost runs use empty caches of their own). --quick keeps the user's
cache, as the rest of the test suite does.
"""

from __future__ import annotations

import argparse
import datetime
import json
import os
import shutil
import sys
import time
from pathlib import Path
from typing import Any

from advisor.benchmarks import page, sections
from advisor.benchmarks.models import FAMILY, SCALE_FAMILY, FamilySize, build_family_model
from advisor.benchmarks.run import Runner

QUICK_FAMILY = (FamilySize("tiny-a-random", 128, 2, 256, 2, 1),
                FamilySize("tiny-b-random", 192, 4, 384, 3, 1))


def _q3km_size(r: Runner, model: str) -> tuple[int, int]:
    """(parameters, predicted Q3_K_M file size) of a model."""
    from advisor.inspect import inspect_model
    from advisor.modelspec import SourceFormat
    from backends.gguf import f16_reference

    spec = inspect_model(model)
    # an HF directory's GGUF metadata (tokenizer) is known once converted: size the F16 GGUF
    # the tool itself converts to (cached in the user's cache, not the cost runs' empty ones)
    gguf = model if spec.format is SourceFormat.GGUF else str(f16_reference(spec))
    est = r.advisor("estimate", "--model", gguf, "--format", "Q3_K_M", "--json").json()
    return spec.n_params, int(est["estimate"]["file_size"]["value"])


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m advisor.benchmarks")
    ap.add_argument("--out", default="bench-out")
    ap.add_argument("--md", default="BENCHMARKS.md")
    ap.add_argument("--quick", action="store_true")
    ap.add_argument("--section", choices=("all", "float-native", "predictions", "hf", "hf-w8",
                                           "gguf-quantizers", "scale"), default="all")
    args = ap.parse_args(argv)
    work = Path(args.out).absolute()
    work.mkdir(parents=True, exist_ok=True)
    md = Path(args.md).absolute()
    if args.section != "all":
        return _one_section(work, md, args.quick, args.section)
    if not args.quick:
        # a fresh start: a recommend finds its earlier study and measured candidates beside its
        # --out and would skip work (the random family models are kept: building them is not
        # measured)
        if any(work.iterdir()) and not (work / "results.json").is_file():
            print(f"error: --out {work} is not empty and holds no results.json of an earlier "
                  "run; pass a new directory or this suite's own (default bench-out)",
                  file=sys.stderr)
            return 2
        for old in work.iterdir():
            if old.name != "models":
                shutil.rmtree(old) if old.is_dir() else old.unlink()
        cache = work / "cache"
        cache.mkdir()
        os.environ["QUANT_ADVISOR_CACHE"] = str(cache)  # this process and every command
    t0 = time.perf_counter()
    r = Runner(quick=args.quick)
    results: dict[str, Any] = {"date": datetime.date.today().isoformat(),
                               "stages": list(sections.STAGES), "quick": args.quick}
    results.update(_versions())
    heldout = sections.heldout_text(work)
    picks: list[dict[str, Any]] = []
    if not args.quick:
        # first, into the empty cache: the cold default recommend (issue 4's five minutes)
        cold = sections.PICK_BUDGETS[0]
        picks = sections.picks(r, work, heldout, {cold: sections.preset_size(r, work, cold)},
                               budgets=(cold,), cold=True)
    results["machine"] = sections.machine(r)

    presets = ("Q4_0", "Q8_0") if args.quick else sections.PRESETS
    results["quality"] = sections.quality_per_byte(r, work, heldout, presets,
                                                   imatrix_modes=(False,) if args.quick
                                                   else (False, True))
    results["heldout_windows"] = results["quality"][0]["n_windows"]
    sizes = {row["label"]: row["size"] for row in results["quality"] if row["imatrix"]
             } or {row["label"]: row["size"] for row in results["quality"]}
    if args.quick:
        picks += sections.picks(r, work, heldout, sizes, budgets=("Q4_0",),
                                extra=("--no-imatrix", "--trials", "4", "--candidates", "1",
                                       "--presets", "1"))
    else:
        picks += sections.picks(r, work, heldout, sizes, budgets=sections.PICK_BUDGETS[1:])
    results["picks"] = picks

    def save() -> None:
        _save(work, md, results, r, t0)

    save()
    results["float_native"] = _float_native(r, work, heldout, args.quick)
    save()

    plain = [Path(row["dir"]) for row in results["quality"] if not row["imatrix"]
             and (args.quick or row["label"] in sections.BENCHED_PRESETS)]
    sections.bench_artifacts(r, plain + [Path(p["dir"]) for p in results["picks"]],
                             requests=2 if args.quick else 3)
    labels = {str(d): f"{d.name} (recommend's bench, {p['label'].removeprefix('pick ')})"
              for p in results["picks"]
              for d in sorted(Path(p["candidates_dir"]).iterdir()) if d.is_dir()}
    labels.update({p["dir"]: f"{p['label']} ({p['picked']}, suite's bench)"
                   for p in results["picks"]})
    results["predictions"] = sections.predictions(
        [str(d) for d in plain] + [p["dir"] for p in results["picks"]] + list(labels), labels)
    results["prediction_errors"] = sections.error_summary(results["predictions"])
    bandwidth = (results["machine"].get("bandwidth") or {}).get("value")
    if bandwidth:
        rows = [{"label": row["label"], "dir": row["dir"]} for row in results["quality"]
                if not row["imatrix"]] + [{"label": p["label"] + f" ({p['picked']})",
                                           "dir": p["dir"]} for p in results["picks"]]
        results["roofline"] = sections.roofline(rows, bandwidth)
    save()

    family = QUICK_FAMILY if args.quick else FAMILY
    models: list[tuple[str, str, int, int, bool]] = []
    for size in family:
        path = str(build_family_model(size, work / "models"))
        params, q3 = _q3km_size(r, path)
        models.append((size.name, path, params, q3, size.fitted))
    extra = ("--no-imatrix", "--trials", "4", "--candidates", "1", "--presets", "1") \
        if args.quick else sections.COST_SETTINGS
    results["cost"] = sections.tool_cost(r, work, models, extra=extra, done=tuple(
        p["cost"] for p in results["picks"] if "cost" in p))
    save()
    # last: GPTQ and AWQ are the slowest runs of the suite
    results["hf"] = _hf(r, work, heldout, args.quick)
    save()
    if not args.quick:
        results["gguf_quantizers"] = sections.gguf_quantizers(r, work, heldout)
        save()
    print(f"wrote {md} ({results['wall_s'] / 60:.1f} min)", file=sys.stderr)
    return 0


def _save(work: Path, md: Path, results: dict[str, Any], r: Runner, t0: float) -> None:
    """results.json and BENCHMARKS.md as far as the suite got (a run stopped part-way still
    leaves its finished sections)."""
    results["commands"] = r.log
    results["wall_s"] = time.perf_counter() - t0
    (work / "results.json").write_text(json.dumps(results, indent=1, default=str) + "\n")
    png = md.parent / "data" / "benchmarks" / "quality_per_byte.png"
    plotted = page.plot(results, png) if results.get("quality") else None
    md.write_text(page.markdown(results, str(plotted.relative_to(md.parent))
                                  if plotted else None))


def _float_native(r: Runner, work: Path, heldout: Path, quick: bool) -> list[dict[str, Any]]:
    """Section 1's headline; --quick: its code path on the embedded model at Q4_0's size (no
    importance matrix, a short search: what the quick picks already cached), labelled so."""
    if quick:
        models = [{"name": "SmolLM2-135M (Q4_1 source; --quick)", "float_native": False,
                   "path": sections.MODEL}]
        return sections.preset_vs_pick(r, work, heldout, models, budgets=("Q4_0",),
                                       extra=("--trials", "4", "--candidates", "1",
                                              "--presets", "1"), imatrix=False,
                                       windows=sections.QUICK_WINDOWS)
    return sections.preset_vs_pick(r, work, heldout, sections.float_native_models(work))


def _hf(r: Runner, work: Path, heldout: Path, quick: bool,
        rows_wanted: tuple[tuple[str, int], ...] | None = None) -> list[dict[str, Any]]:
    """The HF backends on the embedded model (every scheme, or `rows_wanted`), then the 4-bit
    ones (or `rows_wanted`) on its rotated float-native copy (not in --quick)."""
    if quick:
        return sections.hf_backends(r, work, heldout, rows_wanted=(("rtn", 4),))
    rows = sections.hf_backends(r, work, heldout, rows_wanted=rows_wanted or sections.HF_ROWS)
    rotated = sections.float_native_models(work)[0]["path"]
    return rows + sections.hf_backends(r, work, heldout,
                                       rows_wanted=rows_wanted or sections.HF_W4_ROWS,
                                       model=rotated, tag="rotated")


def _one_section(work: Path, md: Path, quick: bool, section: str) -> int:
    """One section alone, merged into the results of an earlier run at `work` (when there is
    one) and rendered with them; its commands replace the log of that run.

    float-native: uses the user's cache (as --quick does), so its recommend times are warm where
    an earlier run left the importance matrix, reference or sensitivity table of these models.
    hf: the 4-bit HF backends on the embedded model and its rotated float-native copy (the
    other schemes' rows of an earlier run are replaced).
    predictions: section 3 on the presets it benches, in a cache of its own emptied first, so
    that this host's latency model starts from nothing: the first preset benched is predicted
    by this host's kernel timings alone (timed before its bench), each later one by the timings
    scaled by the benches before it."""
    path = work / "results.json"
    results: dict[str, Any] = json.loads(path.read_text()) if path.is_file() else {
        "date": datetime.date.today().isoformat(), "quick": quick, "stages": []}
    results.update(_versions())
    results["date"] = datetime.date.today().isoformat()
    r, t0 = Runner(quick=quick), time.perf_counter()
    if "machine" not in results:
        results["machine"] = sections.machine(r)
    if section == "float-native":
        results["float_native"] = _float_native(r, work, sections.heldout_text(work), quick)
        results["float_native_alone"] = True
    elif section in ("hf", "hf-w8"):  # the 4-bit rows, or the 8-bit ones; the others kept
        bits = 4 if section == "hf" else 8
        wanted = sections.HF_W4_ROWS if bits == 4 else sections.HF_W8_ROWS
        kept = [row for row in results.get("hf", []) if row.get("bits") != bits]
        results["hf"] = kept + _hf(r, work, sections.heldout_text(work), quick, wanted)
    elif section == "gguf-quantizers":
        results["gguf_quantizers"] = sections.gguf_quantizers(r, work, sections.heldout_text(work))
    elif section == "scale":  # section 2 over SCALE_FAMILY; the embedded cold pick's row kept
        models: list[tuple[str, str, int, int, bool]] = []
        for size in SCALE_FAMILY:
            model_dir = str(build_family_model(size, work / "models"))
            params, q3 = _q3km_size(r, model_dir)
            models.append((size.name, model_dir, params, q3, size.fitted))
        embedded = tuple(x for x in (results.get("cost") or {}).get("runs", [])
                         if x.get("name") == "embedded")
        results["cost"] = sections.tool_cost(r, work, models, extra=sections.COST_SETTINGS,
                                             done=embedded)
        results["stages"] = list(sections.STAGES)
    else:
        cache = work / "cache-predictions"
        shutil.rmtree(cache, ignore_errors=True)
        cache.mkdir(parents=True)
        os.environ["QUANT_ADVISOR_CACHE"] = str(cache)
        dirs = []
        for p in sections.BENCHED_PRESETS:
            d = work / "predictions" / p
            r.advisor("quantize", "--model", sections.MODEL, "--preset", p, "--no-imatrix",
                      "--out", d, "--force", "--json")
            dirs.append(d)
        sections.bench_artifacts(r, dirs, requests=8)
        results["predictions"] = sections.predictions([str(d) for d in dirs])
        results["prediction_errors"] = sections.error_summary(results["predictions"])
        results["notes"] = [n for n in results.get("notes", []) if "Section 3" not in n]
    results["section_only"] = section
    _save(work, md, results, r, t0)
    print(f"wrote {md} ({section} section, {(time.perf_counter() - t0) / 60:.1f} min)",
          file=sys.stderr)
    return 0


def _versions() -> dict[str, str]:
    from importlib.metadata import version

    out = {}
    for key, dist in (("version", "quant-advisor"), ("llama_cpp", "llama-cpp-python"),
                      ("torch", "torch")):
        try:
            out[key] = version(dist)
        except Exception:  # noqa: BLE001 - a version string is informative only
            out[key] = "?"
    return out


if __name__ == "__main__":
    raise SystemExit(main())
