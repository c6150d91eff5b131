"""`advisor recommend`, the orchestration: each stage is a call on typed values.

inspect -> targets (backends the target serves) -> plan space and budget -> sensitivity table ->
search (Optuna at the budget; stock presets that fit; HF checkpoints) -> realize (each candidate
into `<out>.candidates/<label>`) -> measure (KL vs the F16 reference, a bench of the targets'
workload in pick order) -> pick (lowest measured KL meeting every target) -> emit (the pick
re-staged at `--out` with the report, written once).

The stages live beside this file: config, budget, candidates, plans (the studies), results
(measured candidates against the targets), pick, emit.
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

from advisor.errors import Infeasible
from advisor.progress import Stages
from advisor.progress.clock import StageClock
from advisor.recommend import budget as budgets
from advisor.recommend import candidates as cands
from advisor.recommend import emit, plans, results
from advisor.recommend.config import EVAL_WINDOW, RecommendConfig
from advisor.recommend.offers import GGUF, backend_offers, hf_candidates, offered
from advisor.recommend.pick import pick as pick_one
from advisor.recommend.pick import search_notes
from advisor.targets import Targets


def recommend(model: str, targets: Targets, target: str | None, out: Path,
              cfg: RecommendConfig, stages: Stages, *,
              on_trial: plans.TrialHook | None = None) -> dict[str, Any]:
    """Run the whole pipeline; return the report written to `out` (raises Infeasible, exit 3,
    when no measured candidate meets the targets). `on_trial(info)` is called as each search
    trial finishes (number, bytes, surrogate_kl, feasible, done, total)."""
    from advisor.artifact import check_out_dir
    from advisor.artifact.preflight import check_disk
    from advisor.estimate import estimate
    from advisor.inspect import inspect_model
    from advisor.measure.stage import bench, evaluate
    from advisor.modelspec import SourceFormat
    from advisor.probe import get_hardware
    from advisor.realize import model_summary, provenance
    from advisor.sensitivity import gguf_sensitivity
    from advisor.space import plan_for_format
    from advisor.textdata import default_calibration_text, default_evaluation_text
    from backends.base import QuantizeOptions
    from backends.gguf import f16_reference

    out = Path(out).expanduser().absolute()
    check_out_dir(out, force=cfg.force)
    clock, wl, host = StageClock(), targets.workload, target is None

    with clock.stage("inspect"), stages.step(f"inspecting {model}"):
        source_spec = inspect_model(model)
        check_out_dir(out, cfg.force, source_spec.path)
        hw = get_hardware(target, out.parent)
    spec = source_spec
    if spec.format is not SourceFormat.GGUF:
        # An HF source is planned, quantized and measured as its F16 GGUF (the reference, cached):
        # sizes then include the GGUF metadata (tokenizer) that an HF header cannot predict.
        with clock.stage("convert"), stages.step("converting to an F16 GGUF (cached)"):
            spec = inspect_model(str(f16_reference(spec, cfg.threads)))
    # HF checkpoints are written from the HF source itself, from the GGUF's float copy otherwise
    hf_spec = source_spec if source_spec.format is not SourceFormat.GGUF else spec
    with clock.stage("targets"):
        offers = backend_offers(cfg.backend, hw)
        if not offered(offers):
            asked = [o for o in offers if not o.reason.startswith("not requested")]
            raise Infeasible(f"no backend can serve {spec.name} on {hw.name}: "
                             + "; ".join(f"{o.backend}: {o.reason}" for o in asked),
                             "pick a target that has the runtime (--target), or --backend gguf")
        use_gguf = GGUF in offered(offers)
        limits = budgets.memory_limits(targets)
        reference = estimate(spec, plan_for_format(spec, "Q8_0"), hw, wl)

    with clock.stage("plan space"), stages.step("building the plan space"):
        space, floored, budget, floor = budgets.fit_space(spec, reference, targets,
                                                          cfg.imatrix)
    presets = cands.preset_options(spec, cfg.presets, hw, wl, targets.max_size_bytes, limits,
                                   cfg.imatrix) if use_gguf else []
    run = plans.SearchRun(model, source_spec, targets, plans.study_storage(cfg, out), cfg,
                          stages, clock, on_trial)
    hf_todo: list[cands.Candidate] = []
    hf_info: dict[str, Any] = {}
    if offered(offers) - {GGUF}:
        # its own stages ("hf sensitivity", "hf search") are timed inside plans.hf_search
        with stages.step("HF checkpoint candidates"):
            hf_todo, hf_info = hf_candidates(
                hf_spec, cfg.backend, offers, hw, wl, targets.max_size_bytes, limits,
                lambda s, b: plans.hf_search(run, spec, s, b), cfg.group_size)
    if use_gguf and budget.below_smallest(space) and not any(p.fits for p in presets) \
            and not hf_todo:
        budgets.raise_below_smallest(budget, spec, targets, [(p.label, p.size) for p in presets],
                                     cfg.flag("max-size", targets.max_size_bytes))

    with clock.stage("sensitivity"):
        table = gguf_sensitivity(spec, space, imatrix=cfg.imatrix, threads=cfg.threads,
                                 anchors=cfg.sensitivity_anchors, device=cfg.device,
                                 stages=stages) if use_gguf else None

    found = plans.Found()
    with clock.stage("search"):
        search_bytes = budget.search_bytes(space)
        if table is not None and search_bytes >= space.min_size():
            found = plans.gguf_search(run, spec, space, table, search_bytes, hw, host,
                                      floored=floored)
        elif use_gguf:
            found.info.update(budgets.skipped_search(budget, space))
        if use_gguf:
            found.info["floor"] = floor
    todo = [*found.candidates,
            *cands.nearest_presets(presets, cfg.presets_measured, plans.surrogate_of(table)),
            *hf_todo]
    todo = cands.with_gguf_quantizer(todo, cfg.gguf_quantizer)
    if not todo:
        raise Infeasible("no preset fits the targets and the search found no plan",
                         "relax --max-size or the memory limits")

    calib, eval_text = default_calibration_text(), default_evaluation_text()
    work = out.with_name(out.name + ".candidates")
    options = QuantizeOptions(calib_text=calib, imatrix=cfg.imatrix, threads=cfg.threads,
                              seed=cfg.seed, imatrix_file=cfg.imatrix_file,
                              context=cfg.serve_context,
                              memory_limit=min((v for _, v in limits), default=None))
    # pre-flight: every candidate's file, plus the pick's copy at --out
    check_disk(work, int(sum(estimate(spec, c.plan, hw, wl).file_size.value for c in todo))
               + budget.largest_plan_bytes, f"{len(todo)} candidates and the pick")
    with clock.stage("realize"):
        realized = cands.realize_all(todo, work, spec, hf_spec, hw, wl, options, stages)

    with clock.stage("measure"):
        measured = results.measure_candidates(
            realized,
            lambda r: evaluate(spec, r.directory, eval_text, cfg.eval_windows, EVAL_WINDOW,
                               stages, cfg.threads, report=r.report, device=cfg.device),
            lambda r: bench(r.directory, wl.prompt_tokens, wl.new_tokens, wl.concurrency,
                            cfg.bench_requests, cfg.bench_warmup, eval_text, stages,
                            cfg.threads, report=r.report),
            host, targets, cfg)

    with clock.stage("pick"):
        summary = emit.Summary.of(measured)
        emit.write_summary(work, summary, found.info, clock)
        best, reason, versus = pick_one(measured)
        reason += search_notes(found.info)

    t_emit = time.perf_counter()
    with clock.stage("emit"), stages.step(f"writing the artifact to {out}"):
        rep = emit.recommendation(
            best, reason, summary, model=model_summary(source_spec), targets=targets, cfg=cfg,
            hw=hw, host=host, budget=budget, presets=presets, search=found.info, offers=offers,
            hf_info=hf_info, clock=clock, versus=versus,
            provenance=provenance(cfg.seed, {"calibration": calib, "evaluation": eval_text}))
        emit.write_artifact(out, best, rep, clock, t_emit, cfg.force)
    rep["stage_seconds"] = dict(clock.seconds)
    return rep
