"""The recommendation pipeline of the GGUF backend.

inspect -> targets -> plan space -> sensitivity table -> candidates (stock presets that fit, plus
the Optuna study's best plans at the byte budget) -> realize (quantize each into
`<out>.candidates/<label>`) -> measure (KL vs the F16 reference, a short bench of the targets'
workload) -> pick (lowest measured KL among the candidates meeting every target) -> emit (the
pick re-staged at `--out`, report.json extended, report.md).

Every figure says where it comes from: size and KL are measured; memory is measured (peak RSS
of the bench child above its interpreter baseline) when the target is this CPU host, else
predicted; p95 latency is measured only when the target is this host, else the predicted
request latency.
"""

from __future__ import annotations

import hashlib
import json
import logging
import shutil
import time
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

from advisor.artifact import REPORT_FILE, is_complete, staging, write_report
from advisor.errors import BadInput, Infeasible
from advisor.estimate import Workload, estimate
from advisor.plan import QuantPlan
from advisor.progress import Stages
from advisor.recommend.hf import (
    BACKEND_CHOICES,
    GGUF,
    HF_KINDS,
    backend_offers,
    fits_targets,
    hf_candidates,
    offered,
)
from advisor.recommend.summary import pareto_front, spearman
from advisor.report import render_files
from advisor.stageclock import StageClock
from advisor.targets import Targets, parse_duration, parse_size

log = logging.getLogger(__name__)

DEFAULT_PRESETS = ("Q2_K", "Q3_K_S", "Q3_K_M", "Q3_K_L", "Q4_0", "Q4_K_S", "Q4_K_M", "Q5_0",
                   "Q5_K_S", "Q5_K_M", "Q6_K", "Q8_0")
"""Stock llama.cpp presets offered as candidates (none needs an importance matrix)."""
EVAL_WINDOW = 512
GGUF_ALIGNMENT = 32
MARKDOWN_FILE = "report.md"


@dataclass(frozen=True)
class RecommendConfig:
    """How hard the pipeline works: realized search plans, presets realized nearest the budget,
    trials, eval windows, bench requests."""

    # 2: in the three default runs measured (embedded model, Q3_K_M x2 and Q4_K_M budgets) the
    # surrogate's best plan always measured the lowest KL and its 2nd/3rd within 1-15%, so a
    # third plan (a quantization and an eval, ~26 s) bought nothing; one runner-up guards the
    # surrogate's ranking.
    candidates: int = 2
    presets_measured: int = 2
    trials: int = 30
    seed: int = 0
    eval_windows: int = 2
    bench_requests: int = 3
    bench_warmup: int = 1
    imatrix: bool = True
    threads: int = 0
    storage: str | None = None
    measured_trials: int = 0  # trials of the measured phase (each quantized and measured)
    bench_all: bool = False  # bench every candidate, not only those the pick could be
    presets: tuple[str, ...] = DEFAULT_PRESETS
    flags: dict[str, str] = field(default_factory=dict)  # targets as the user wrote them
    backend: str = "auto"  # advisor.recommend.hf.BACKEND_CHOICES
    group_size: int = 128  # of the HF int schemes

    def __post_init__(self) -> None:
        for name in ("candidates", "trials", "eval_windows", "bench_requests"):
            v = getattr(self, name)
            if not isinstance(v, int) or v < 1:
                raise BadInput(f"--{name.replace('_', '-')} {v!r} must be an integer >= 1",
                               "pass a positive integer")
        if self.presets_measured < 0 or self.bench_warmup < 0 or self.measured_trials < 0:
            raise BadInput("preset and warm-up counts must be >= 0", "pass 0 or more")
        if self.backend not in BACKEND_CHOICES:
            raise BadInput(f"--backend {self.backend!r} is not a backend recommend knows",
                           f"use one of {', '.join(BACKEND_CHOICES)}")
        if self.group_size not in (32, 64, 128, -1):
            raise BadInput(f"--group-size {self.group_size} is not supported",
                           "use 32, 64, 128 or -1 (per channel)")


def targets_from_args(*, prompt_tokens: int, new_tokens: int, concurrency: int, context: int,
                      vram: str | None, mem: str | None, max_size: str | None,
                      p95: str | None, max_kld: str | float | None) -> Targets:
    """Targets from CLI strings; BadInput (exit 2) on any bad value."""
    try:
        workload = Workload(prompt_tokens=prompt_tokens, new_tokens=new_tokens,
                            concurrency=concurrency, context=context)
    except ValueError as e:
        raise BadInput(str(e), "pass positive integers") from None
    kld = None
    if max_kld is not None:
        try:
            kld = float(max_kld)
        except ValueError:
            raise BadInput(f"--max-kld {max_kld!r} is not a number", "e.g. --max-kld 0.05") \
                from None
        if not (kld > 0 and kld < float("inf")):
            raise BadInput(f"--max-kld {max_kld!r} must be a positive number", "e.g. 0.05")
    return Targets(
        workload=workload,
        vram_bytes=parse_size(vram, "--vram") if vram is not None else None,
        mem_bytes=parse_size(mem, "--mem") if mem is not None else None,
        max_size_bytes=parse_size(max_size, "--max-size") if max_size is not None else None,
        p95_s=parse_duration(p95, "--p95") if p95 is not None else None,
        max_kld=kld,
    )


def _flag(cfg: RecommendConfig, key: str, value: Any) -> str:
    return f"--{key} {cfg.flags.get(key, value)}"


def _memory_limits(targets: Targets) -> list[tuple[str, int]]:
    return [(k, v) for k, v in (("vram", targets.vram_bytes), ("mem", targets.mem_bytes))
            if v is not None]


def _study_name(model_id: str, targets: Targets, space_digest: str, budget: int) -> str:
    body = json.dumps({"model": model_id, "targets": targets.to_dict(), "space": space_digest,
                       "budget": budget}, sort_keys=True)
    return "recommend-" + hashlib.sha256(body.encode()).hexdigest()[:16]


def _reusable(directory: Path, plan: QuantPlan) -> dict[str, Any] | None:
    """The report of a complete candidate artifact of the same plan (a rerun resumes)."""
    if not is_complete(directory):
        return None
    report: dict[str, Any] = json.loads((directory / REPORT_FILE).read_text())
    stored = report.get("planned") or report.get("plan")
    try:
        same = QuantPlan.from_dict(dict(stored or {})).digest() == plan.digest()
    except (KeyError, TypeError, ValueError):
        return None
    return report if same else None


def recommend(model: str, targets: Targets, target: str | None, out: Path,
              cfg: RecommendConfig, stages: Stages, *,
              on_trial: Callable[[dict[str, Any]], None] | None = None) -> dict[str, Any]:
    """Run the whole pipeline; return the report written to `out` (raises Infeasible, exit 3,
    when no measured candidate meets the targets). `on_trial(info)` is called as each search
    trial finishes (number, bytes, surrogate_kl, feasible, done, total)."""
    from advisor.artifact import check_out_dir
    from advisor.commands.measure import reference_model
    from advisor.commands.quantize import model_summary, provenance, quantize_artifact
    from advisor.inspect import inspect_model
    from advisor.modelspec import SourceFormat
    from advisor.preflight import check_disk
    from advisor.probe import get_hardware
    from advisor.quality.cache import file_identity
    from advisor.search import SearchConfig, gguf_plan_space, run_search
    from advisor.search.job import create_job_study, recommend_job
    from advisor.sensitivity import sensitivity_table
    from advisor.space import plan_for_format
    from advisor.textdata import default_calibration_text, default_evaluation_text
    from backends.base import QuantizeOptions

    out = Path(out).expanduser().absolute()
    check_out_dir(out)
    clock = StageClock()
    wl = targets.workload

    with clock.stage("inspect"), stages.step(f"inspecting {model}"):
        spec = inspect_model(model)
        hw = get_hardware(target, out.parent)
    source_spec = spec
    if spec.format is not SourceFormat.GGUF:
        # An HF source is planned, quantized and measured as its F16 GGUF (the reference, cached):
        # sizes then include the GGUF metadata (tokenizer) that an HF header cannot predict.
        with clock.stage("convert"), stages.step("converting to an F16 GGUF (cached)"):
            spec = inspect_model(str(reference_model(spec, cfg.threads)))
    with clock.stage("targets"):
        offers = backend_offers(cfg.backend, hw)
        if not offered(offers):
            asked = [o for o in offers if not o.reason.startswith("not requested")]
            raise Infeasible(f"no backend can serve {spec.name} on {hw.name}: "
                             + "; ".join(f"{o.backend}: {o.reason}" for o in asked),
                             "pick a target that has the runtime (--target), or --backend gguf")
        use_gguf = GGUF in offered(offers)
        limits = _memory_limits(targets)
        ref_plan = plan_for_format(spec, "Q8_0")
        ref_est = estimate(spec, ref_plan, hw, wl)
        runtime_bytes = int(ref_est.kv_cache.value + ref_est.overhead.value)
        budgets = []
        if targets.max_size_bytes is not None:
            budgets.append(("max-size", targets.max_size_bytes))
        for key, limit in limits:
            budgets.append((key, limit - runtime_bytes))
        if not budgets and ref_est.device_memory is not None:
            budgets.append(("device memory", int(ref_est.device_memory.value) - runtime_bytes))
        binding, file_budget = min(budgets, key=lambda b: b[1]) if budgets else (None, None)

    with clock.stage("plan space"), stages.step("building the plan space"):
        space = gguf_plan_space(spec, imatrix=cfg.imatrix)
        padding = GGUF_ALIGNMENT * len(space.tensors)
        min_file = spec.metadata_bytes + space.min_size() + padding
        max_file = spec.metadata_bytes + space.max_size() + padding
        tensor_budget = None
        if file_budget is not None:
            tensor_budget = min(file_budget - spec.metadata_bytes - padding, space.max_size())

    # stock presets: predicted size and memory for the target
    preset_rows: list[dict[str, Any]] = []
    for name in cfg.presets:
        plan = plan_for_format(spec, name, imatrix=cfg.imatrix)
        est = estimate(spec, plan, hw, wl)
        size = int(est.file_size.value)
        fits = fits_targets(est, targets.max_size_bytes, limits)
        preset_rows.append({"label": name, "plan": plan, "estimate": est, "size": size,
                            "fits": fits})
    if not use_gguf:
        preset_rows = []
    fitting = [p for p in preset_rows if p["fits"]]
    hf_todo: list[tuple[str, str, QuantPlan, float | None]] = []
    # HF checkpoints are written from the HF source itself (canonical names and shapes are
    # those of its F16 GGUF), from the GGUF's dequantized float16 copy otherwise
    hf_spec = source_spec if source_spec.format is not SourceFormat.GGUF else spec
    hf_info: dict[str, Any] = {}
    if len(offered(offers) - {GGUF}):
        # its own stages ("hf sensitivity", "hf search") are timed inside _hf_search
        with stages.step("HF checkpoint candidates"):
            hf_todo, hf_info = hf_candidates(
                hf_spec, cfg.backend, offers, hw, wl, targets.max_size_bytes, limits,
                lambda hf_space, hf_budget: _hf_search(hf_space, hf_budget, spec, targets, out,
                                                       cfg, stages, on_trial, clock),
                cfg.group_size)
    if use_gguf and tensor_budget is not None and tensor_budget < space.min_size() \
            and not fitting and not hf_todo:
        assert binding is not None and file_budget is not None
        if binding == "max-size":
            raise Infeasible(
                f"{_flag(cfg, 'max-size', targets.max_size_bytes)} ({targets.max_size_bytes:,} "
                f"bytes) is below the smallest plan of {spec.name} ({min_file:,} bytes) and every "
                f"llama.cpp preset", f"nearest feasible: --max-size {min_file} (the smallest "
                f"plan), or {min(preset_rows, key=lambda p: p['size'])['label']} at "
                f"{min(p['size'] for p in preset_rows):,} bytes")
        raise Infeasible(
            f"--{binding} leaves {max(file_budget, 0):,} bytes for weights after "
            f"{runtime_bytes:,} bytes of predicted KV cache and runtime overhead; the smallest "
            f"plan of {spec.name} needs {min_file:,} bytes",
            f"raise --{binding} to at least {min_file + runtime_bytes:,} bytes or shrink the "
            "context/concurrency")

    calib = default_calibration_text()
    eval_text = default_evaluation_text()
    src = Path(spec.path)
    with clock.stage("sensitivity"):
        imatrix_values = None
        if cfg.imatrix and use_gguf:
            from backends.gguf import IMATRIX_CHUNKS
            from backends.gguf_imatrix import imatrix_for

            # the chunks the GGUF backend quantizes with: one imatrix, computed once, and the
            # table scores the very rows the candidates get (was all 11 chunks here, 4 there)
            with stages.step("importance matrix (cached after the first run)"):
                imatrix_values = imatrix_for(src, calib, key_path=Path(spec.path),
                                             threads=cfg.threads,
                                             max_chunks=IMATRIX_CHUNKS).values
        table = None
        if use_gguf:
            with stages.bar("sensitivity table (cached after the first run)") as bar:
                table = sensitivity_table(src, space, text=calib, imatrix=imatrix_values,
                                          threads=cfg.threads, on_progress=bar)

    # the search at the budget
    search_info: dict[str, Any] = {}
    search_plans: list[tuple[str, QuantPlan, float]] = []
    with clock.stage("search"):
        budget = tensor_budget if tensor_budget is not None else space.max_size()
        if table is not None and budget >= space.min_size():
            name = _study_name(file_identity(spec.path), targets, space.digest(), budget)
            storage = cfg.storage or str(out.with_name(out.name + ".study.db"))
            # the job in the study lets `advisor worker --study NAME` on other hosts join in
            create_job_study(recommend_job(model, source_spec, targets.to_dict(), space, budget,
                                           cfg.trials, cfg.seed, cfg.imatrix),
                             storage, study_name=name)
            with stages.bar(f"searching plans ({cfg.trials} trials, study {name})") as bar:
                result = run_search(table, budget, storage,
                                    config=SearchConfig(n_trials=cfg.trials, seed=cfg.seed,
                                                        study_name=name),
                                    callbacks=[_trial_callback(cfg.trials, bar, on_trial)])
            seen: set[str] = set()
            search_plans = _best_plans(result.trials, space, "search", cfg.candidates, seen,
                                       key=lambda t: t.surrogate)
            search_info = {"storage": result.storage, "study_name": result.study_name,
                           "imatrix_sha256": table.imatrix_sha256,
                           "trials": len(result.trials), "budget_tensor_bytes": budget,
                           "best_trial": result.best.number if result.best else None}
            if cfg.measured_trials:
                measured = _measured_search(table, budget, storage, name, model, source_spec,
                                            spec, space, hw, wl, targets, cfg, target is None,
                                            stages, on_trial)
                search_info["measured"] = measured["info"]
                for label, plan, surrogate in measured["plans"]:
                    if plan.digest() not in seen:
                        seen.add(plan.digest())
                        search_plans.append((label, plan, surrogate))

    # which presets are realized: those nearest the budget (the largest that fit)
    nearest = sorted(fitting, key=lambda p: -p["size"])[:cfg.presets_measured]
    todo: list[tuple[str, str, QuantPlan, float | None]] = [
        (label, "search", plan, surrogate) for label, plan, surrogate in search_plans]
    for p in nearest:
        todo.append((p["label"], "preset", p["plan"], _surrogate(table, p["plan"])))
    todo += hf_todo
    if not todo:
        raise Infeasible("no preset fits the targets and the search found no plan",
                         "relax --max-size or the memory limits")

    work = out.with_name(out.name + ".candidates")
    options = QuantizeOptions(calib_text=calib, imatrix=cfg.imatrix, threads=cfg.threads,
                              seed=cfg.seed)
    realized: list[tuple[str, str, Path, dict[str, Any], float | None]] = []
    # pre-flight: every candidate's file, plus the pick's copy at --out
    check_disk(work, int(sum(estimate(spec, p, hw, wl).file_size.value for *_, p, _ in todo))
               + max_file, f"{len(todo)} candidates and the pick")
    with clock.stage("realize"):
        for label, kind, plan, surrogate in todo:
            directory = work / label
            report = _reusable(directory, plan)
            if report is None:
                report = quantize_artifact(hf_spec if kind in HF_KINDS else spec, plan, hw,
                                           directory, options, wl, stages, calib)
            realized.append((label, kind, directory, report, surrogate))

    host = target is None
    with clock.stage("measure"):
        rows = _measure_candidates(realized, spec, wl, eval_text, host, targets, cfg, stages)

    with clock.stage("pick"):
        feasible = [r for r in rows if not r["violations"]]
        front = pareto_front([(r["label"], r["size_measured"], r["kl_measured"]) for r in rows])
        # GGUF rows only: the HF mixes' surrogate is another table (RTN round trips)
        pairs = [(r["surrogate_kl"], r["kl_measured"]) for r in rows
                 if r["surrogate_kl"] is not None and r["kind"] not in HF_KINDS]
        rho = spearman([a for a, _ in pairs], [b for _, b in pairs])
        summary = {"candidates": rows, "pareto_front": front, "surrogate_spearman": rho,
                   "search": search_info, "stage_seconds": clock.seconds}
        work.mkdir(parents=True, exist_ok=True)
        (work / "recommend.json").write_text(json.dumps(summary, indent=2, default=str) + "\n")
        if not feasible:
            _raise_infeasible(rows, targets, cfg)
        pick = min(feasible, key=lambda r: (r["kl_measured"], r["size_measured"]))
        presets_ok = [r for r in feasible if r["kind"] == "preset"]
        best_preset = min(presets_ok, key=lambda r: r["kl_measured"], default=None)
        reason = (f"lowest measured mean KL ({pick['kl_measured']:.4f} nats) of the "
                  f"{len(feasible)} measured candidates meeting every target")
        if best_preset is not None and best_preset is not pick:
            reason += (f"; the best stock preset meeting them, {best_preset['label']}, measures "
                       f"{best_preset['kl_measured']:.4f} nats at "
                       f"{best_preset['size_measured']:,} bytes")

    t_emit = time.perf_counter()
    with clock.stage("emit"), stages.step(f"writing the artifact to {out}"):
        pick_dir = work / pick["label"]
        base = json.loads((pick_dir / REPORT_FILE).read_text())
        base.pop("version", None)
        rep = {
            **base,
            "kind": "recommendation",
            "model": model_summary(source_spec),
            "targets": targets.to_dict(),
            "target_flags": cfg.flags,
            "hardware": hw.to_dict(),
            "host_measured": host,
            "budget": {"binding": binding, "file_bytes": file_budget,
                       "runtime_bytes_predicted": runtime_bytes,
                       "smallest_plan_bytes": min_file, "largest_plan_bytes": max_file},
            "presets": [{"label": p["label"], "fits": p["fits"],
                         "size_predicted": p["size"],
                         "memory_predicted": p["estimate"].total_memory.value,
                         "measured": any(r["label"] == p["label"] for r in rows)}
                        for p in preset_rows],
            "candidates": rows,
            "pareto_front": front,
            "pick": {"label": pick["label"], "kind": pick["kind"], "reason": reason},
            "surrogate_spearman": rho,
            "search": search_info,
            "backends": [o.to_dict() for o in offers],
            "hf_candidates": hf_info,
            "stage_seconds": clock.seconds,
            "stage_peak_rss": clock.peak_rss,
            "provenance": provenance(cfg.seed, {"calibration": calib, "evaluation": eval_text}),
        }
        with staging(out) as tmp:
            for f in pick_dir.iterdir():
                if f.name != REPORT_FILE and f.is_file():
                    shutil.copy2(f, tmp / f.name)
            rep["stage_seconds"] = {**clock.seconds,
                                    "emit": round(time.perf_counter() - t_emit, 3)}
            render_files(rep, tmp)  # report.md, pareto.png, candidates.csv
            write_report(tmp, rep)
    rep["stage_seconds"] = dict(clock.seconds)
    return rep


def _measure_candidates(realized: list[tuple[str, str, Path, dict[str, Any], float | None]],
                        spec: Any, wl: Workload, eval_text: str, host: bool, targets: Targets,
                        cfg: RecommendConfig, stages: Stages) -> list[dict[str, Any]]:
    """KL of every realized candidate, then benches in pick order until one meets every target.

    The pick is the lowest measured KL (then fewest bytes) among the candidates meeting every
    target, so a candidate after the first one that meets them all cannot be picked whatever its
    bench says: it is not benched (its memory and p95 are the target's predictions, labelled so,
    and `benched` is false) unless `cfg.bench_all`. A candidate whose measured size or KL already
    misses a target is not benched either. A bench already in the artifact's report for this
    workload and request count is reused. On this host with no p95 or memory target that is one
    bench, the pick's (measured: 4 of 5 benches skipped, ~24 s each on the embedded model)."""
    from advisor.commands.measure import bench, evaluate

    quality = []
    for label, kind, directory, report, surrogate in realized:
        q = report.get("measurements", {}).get("quality")
        if not (q and q.get("n_windows") == cfg.eval_windows
                and q.get("window") == EVAL_WINDOW):
            q = evaluate(spec, directory, eval_text, cfg.eval_windows, EVAL_WINDOW, stages,
                         cfg.threads).to_dict()
            report = json.loads((directory / REPORT_FILE).read_text())
        quality.append((label, kind, directory, report, surrogate, q))
    order = sorted(range(len(quality)), key=lambda i: (
        float(quality[i][5]["mean_kl"]["value"]), int(quality[i][3]["size"]["value"])))
    rows: list[dict[str, Any] | None] = [None] * len(quality)
    found = False
    for i in order:
        label, kind, directory, report, surrogate, q = quality[i]
        b = report.get("measurements", {}).get("bench")
        if not (b and b.get("workload") == wl.to_dict()
                and b.get("n_requests") == cfg.bench_requests):
            b = None
        unbenched = _row(label, kind, directory, report, q, None, surrogate, host, targets, cfg)
        static = [v for v in unbenched["violations"] if v.startswith(("size ", "KL "))]
        wanted = cfg.bench_all or not (found or static)
        if b is None and kind not in HF_KINDS and wanted:
            b = bench(directory, wl.prompt_tokens, wl.new_tokens, wl.concurrency,
                      cfg.bench_requests, cfg.bench_warmup, eval_text, stages,
                      cfg.threads).to_dict()
            report = json.loads((directory / REPORT_FILE).read_text())
        if kind in HF_KINDS:
            b = None  # vLLM does not run here: memory and p95 are predicted for the target
        row = _row(label, kind, directory, report, q, b, surrogate, host, targets, cfg)
        rows[i] = row
        found = found or not row["violations"]
    return [r for r in rows if r is not None]


def _measured_search(table: Any, budget: int, storage: str, name: str, model: str,
                     source_spec: Any, spec: Any, space: Any, hw: Any, wl: Workload,
                     targets: Targets, cfg: RecommendConfig, host: bool, stages: Stages,
                     on_trial: Callable[[dict[str, Any]], None] | None
                     ) -> dict[str, Any]:
    """The measured phase of the search: a second study (`<name>-measured`, same storage) whose
    every trial is quantized by llama.cpp and measured (KL on `eval_windows` windows; on this
    host also p95 latency and peak memory of a short bench), so TPE learns from measurements
    and the targets the surrogate cannot see (p95, memory) are limits inside the loop. It
    starts from the exact surrogate optimum. Returns its best feasible plans (by measured KL)."""
    from advisor.search import SearchConfig, run_search
    from advisor.search.job import MeasureSettings
    from advisor.search.measured import MeasuredEvaluator

    bench_requests = cfg.bench_requests if host else 0
    evaluator = MeasuredEvaluator(spec, space, hw, MeasureSettings(
        eval_windows=cfg.eval_windows, window=EVAL_WINDOW, bench_requests=bench_requests),
        imatrix=cfg.imatrix, workload=wl, threads=cfg.threads)
    from advisor.search.job import create_job_study, recommend_job
    limits: dict[str, float] = {}
    if host and targets.p95_s is not None:
        limits["p95_s"] = targets.p95_s
    mem = [v for _, v in _memory_limits(targets)]
    if host and mem:
        limits["peak_rss"] = float(min(mem))
    if targets.max_kld is not None:
        limits["kl"] = targets.max_kld
    mname = name + "-measured"
    settings = MeasureSettings(eval_windows=cfg.eval_windows, window=EVAL_WINDOW,
                               bench_requests=bench_requests)
    # stored in the study, so `advisor worker --study <name>-measured` can join this phase too
    job = replace(recommend_job(model, source_spec, targets.to_dict(), space, budget,
                                cfg.measured_trials, cfg.seed, cfg.imatrix),
                  objectives=("kl",), limits=limits, measure=settings)
    create_job_study(job, storage, study_name=mname)
    with stages.bar(f"measured search ({cfg.measured_trials} trials quantized and measured)"
                    ) as bar:
        result = run_search(table, budget, storage,
                            config=SearchConfig(n_trials=cfg.measured_trials, seed=cfg.seed,
                                                study_name=mname),
                            evaluate=evaluator, objectives=("kl",), limits=limits,
                            callbacks=[_trial_callback(cfg.measured_trials, bar, on_trial)])
    plans = _best_plans(result.trials, space, "measured", cfg.candidates, set(),
                        key=lambda t: t.metrics["kl"])
    info = {"study_name": mname, "trials": len(result.trials), "evaluations": result.evaluations,
            "limits": limits, "best_trial": result.best.number if result.best else None,
            "trial_metrics": [{"number": t.number, "feasible": t.feasible, **t.metrics}
                              for t in result.trials]}
    return {"info": info, "plans": plans}


def _hf_search(space: Any, budget: int, spec: Any, targets: Targets, out: Path,
               cfg: RecommendConfig, stages: Stages,
               on_trial: Callable[[dict[str, Any]], None] | None,
               clock: StageClock) -> list[tuple[str, QuantPlan, float]]:
    """The Optuna study over the HF int mix (W4A16/W8A16/F16 per fused group) at `budget`
    tensor bytes, on the RTN sensitivity of each group (advisor.sensitivity.hf): its best
    distinct plans (at most 2: each is a GPTQ/AWQ run and a transformers evaluation)."""
    from advisor.quality.cache import file_identity
    from advisor.search import SearchConfig, run_search
    from advisor.sensitivity.hf import hf_sensitivity_table
    from advisor.textdata import default_calibration_text

    with clock.stage("hf sensitivity"), \
            stages.bar("HF int sensitivity (cached after the first run)") as bar:
        table = hf_sensitivity_table(spec.path, space, default_calibration_text(),
                                     on_progress=bar)
    with clock.stage("hf search"):
        name = _study_name(file_identity(spec.path), targets, space.digest(), budget)
        storage = cfg.storage or str(out.with_name(out.name + ".study.db"))
        with stages.bar(f"searching HF int mixes ({cfg.trials} trials)") as bar:
            result = run_search(table, budget, storage,
                                config=SearchConfig(n_trials=cfg.trials, seed=cfg.seed,
                                                    study_name=name),
                                callbacks=[_trial_callback(cfg.trials, bar, on_trial)])
        return _best_plans(result.trials, space, "hf-search", min(cfg.candidates, 2), set(),
                           key=lambda t: t.surrogate)


def _best_plans(trials: list[Any], space: Any, prefix: str, n: int, seen: set[str],
                key: Callable[[Any], float]) -> list[tuple[str, QuantPlan, float]]:
    """Up to `n` distinct plans (by digest, `seen` updated) of the feasible trials, best `key`
    first (ties: fewer bytes, earlier trial), labelled `<prefix>-<trial number>`."""
    plans: list[tuple[str, QuantPlan, float]] = []
    for t in sorted((t for t in trials if t.feasible), key=lambda t: (key(t), t.nbytes, t.number)):
        plan = space.plan(t.assignment, label=f"{prefix}-{t.number}")
        if plan.digest() in seen:
            continue
        seen.add(plan.digest())
        plans.append((plan.label, plan, t.surrogate))
        if len(plans) >= n:
            break
    return plans


def _trial_callback(total: int, bar: Callable[[int, int], None],
                    on_trial: Callable[[dict[str, Any]], None] | None
                    ) -> Callable[[Any, Any], None]:
    """An Optuna callback: advance the progress bar, hand each finished trial to `on_trial`."""
    import optuna

    def callback(study: optuna.Study, trial: optuna.trial.FrozenTrial) -> None:
        done = len(study.get_trials(deepcopy=False, states=(optuna.trial.TrialState.COMPLETE,)))
        bar(min(done, total), total)
        attrs = trial.user_attrs.get("plan")
        if on_trial is not None and attrs is not None:
            on_trial({"number": trial.number, "bytes": int(attrs["bytes"]),
                      "surrogate_kl": float(attrs["surrogate_kl"]),
                      "feasible": all(c <= 0 for c in attrs["constraints"]),
                      "done": done, "total": total})

    return callback


def _surrogate(table: Any, plan: QuantPlan) -> float | None:
    """The sensitivity table's predicted KL of a plan; None when a type is outside the table."""
    try:
        return float(table.surrogate(plan.tensor_formats))
    except (KeyError, ValueError, BadInput):
        return None


def _row(label: str, kind: str, directory: Path, report: dict[str, Any], q: dict[str, Any],
         b: dict[str, Any] | None, surrogate: float | None, host: bool, targets: Targets,
         cfg: RecommendConfig) -> dict[str, Any]:
    """One measured candidate; `b` None when its runtime does not run here (an HF checkpoint):
    memory and p95 are then the target's predictions."""
    est = report["estimate"]
    cpu = str(est.get("device", "")).startswith("CPU")
    if host and cpu and b is not None:
        memory = {"value": b["peak_rss"]["value"] - b["baseline_rss"]["value"],
                  "origin": "measured",
                  "what": "peak RSS of the bench process above its interpreter baseline"}
    else:
        memory = {"value": est["total_memory"]["value"], "origin": "predicted",
                  "what": f"weights + KV cache + runtime overhead on {est.get('device')}"}
    if host and b is not None:
        p95 = {"value": b["latency_p95"]["value"], "origin": "measured",
               "what": f"p95 request latency over {b['n_requests']} requests on this host"}
    else:
        p95 = {"value": est["request_latency"]["value"], "origin": "predicted",
               "what": "roofline request latency on the target (not a measured p95)"}
    if host and b is None and kind not in HF_KINDS:
        why = (" (not benched: a candidate of lower KL met every target, or this one's size or "
               "KL missed one; --bench-all benches every candidate)")
        memory["what"] += why
        p95["what"] += why
    size = int(report["size"]["value"])
    kl = float(q["mean_kl"]["value"])
    violations = []
    if targets.max_size_bytes is not None and size > targets.max_size_bytes:
        violations.append(f"size {size:,} > {_flag(cfg, 'max-size', targets.max_size_bytes)}")
    for key, limit in _memory_limits(targets):
        if memory["value"] > limit:
            violations.append(f"memory {int(memory['value']):,} ({memory['origin']}) > "
                              f"{_flag(cfg, key, limit)}")
    if targets.p95_s is not None and p95["value"] > targets.p95_s:
        violations.append(f"p95 {p95['value']:.3f}s ({p95['origin']}) > "
                          f"{_flag(cfg, 'p95', targets.p95_s)}")
    if targets.max_kld is not None and kl > targets.max_kld:
        violations.append(f"KL {kl:.4f} > {_flag(cfg, 'max-kld', targets.max_kld)}")
    return {
        "label": label, "kind": kind, "directory": str(directory),
        "plan_digest": report["plan"].get("digest") if isinstance(report.get("plan"), dict)
        else None,
        "size_predicted": int(est["file_size"]["value"]), "size_measured": size,
        "surrogate_kl": surrogate, "kl_measured": kl,
        "top1_measured": q["top1_agreement"]["value"],
        "memory_predicted": est["total_memory"]["value"], "memory": memory,
        "latency_predicted": est["request_latency"]["value"], "p95": p95,
        "bench": {k: b[k]["value"] for k in ("ttft", "per_token", "latency_p95", "peak_rss",
                                             "baseline_rss")} if b is not None else {},
        "benched": b is not None,
        "violations": violations,
    }


def _raise_infeasible(rows: list[dict[str, Any]], targets: Targets,
                      cfg: RecommendConfig) -> None:
    """Infeasible naming the target most candidates miss and the nearest feasible alternative."""
    keys = {"size": "max-size", "memory": "mem/vram", "p95": "p95", "KL": "max-kld"}
    counts: dict[str, int] = {}
    for r in rows:
        for v in r["violations"]:
            k = v.split(" ", 1)[0]
            counts[k] = counts.get(k, 0) + 1
    worst = max(counts, key=lambda k: counts[k])
    example = next(v for r in rows for v in r["violations"] if v.startswith(worst))
    flag = example.split("> ", 1)[1]
    meets = [r for r in rows if not any(v.startswith(worst) for v in r["violations"])]
    if worst == "KL":
        best = min(rows, key=lambda r: r["kl_measured"])
        alt = (f"the best measured KL is {best['kl_measured']:.4f} ({best['label']}, "
               f"{best['size_measured']:,} bytes): raise --max-kld to it or allow more size")
    elif meets:
        best = min(meets, key=lambda r: r["kl_measured"])
        alt = (f"nearest alternative within {flag}: {best['label']} ({best['size_measured']:,} "
               f"bytes, KL {best['kl_measured']:.4f}), which misses "
               f"{'; '.join(best['violations'])}")
    else:
        fig = {"size": lambda r: r["size_measured"], "memory": lambda r: r["memory"]["value"],
               "p95": lambda r: r["p95"]["value"]}[worst]
        best = min(rows, key=fig)
        alt = (f"nearest: {best['label']} at {fig(best):,.3f} ({'; '.join(best['violations'])})")
    raise Infeasible(f"no measured candidate meets {flag} ({keys.get(worst, worst)} binds: "
                     f"{counts[worst]} of {len(rows)} candidates miss it)", alt)
