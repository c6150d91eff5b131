"""`advisor` command line: one function per sub-command, errors as one line and an exit code.

Exit codes: 0 ok, 1 unexpected failure, 2 bad input, 3 infeasible targets.
"""

from __future__ import annotations

import argparse
import json
import logging
import sys
from pathlib import Path
from typing import Any, NoReturn

from advisor import interrupt
from advisor.errors import AdvisorError, BadInput

log = logging.getLogger("advisor")


class _Parser(argparse.ArgumentParser):
    """argparse that reports bad usage as one line with exit code 2."""

    def error(self, message: str) -> NoReturn:
        sys.stderr.write(f"advisor: error: {message} (see `{self.prog} --help`)\n")
        raise SystemExit(2)


def _emit_json(data: Any) -> None:
    sys.stdout.write(json.dumps(data, indent=2, default=str) + "\n")


def cmd_probe(args: argparse.Namespace) -> int:
    from advisor.probe import get_hardware
    from advisor.render import show_hardware

    hw = get_hardware(args.target, Path(args.out))
    if args.json:
        _emit_json(hw.to_dict())
    else:
        show_hardware(hw)
    return 0


def cmd_profiles(args: argparse.Namespace) -> int:
    from advisor.probe import list_targets
    from advisor.render import show_profiles

    targets = list_targets()
    if args.json:
        _emit_json([t.to_dict() for t in targets])
    else:
        show_profiles(targets)
    return 0


def cmd_inspect(args: argparse.Namespace) -> int:
    from advisor.inspect import inspect_model
    from advisor.render import show_model

    spec = inspect_model(args.model)
    if args.json:
        _emit_json(spec.to_dict())
    else:
        show_model(spec, tensors=args.tensors)
    return 0


def cmd_estimate(args: argparse.Namespace) -> int:
    from advisor.estimate import Workload, estimate
    from advisor.inspect import inspect_model
    from advisor.probe import get_hardware
    from advisor.render import show_estimate
    from advisor.space import plan_for_format

    try:
        workload = Workload(prompt_tokens=args.prompt_tokens, new_tokens=args.max_new_tokens,
                            concurrency=args.batch, context=args.context)
    except ValueError as e:
        raise BadInput(str(e), "pass positive integers") from None
    spec = inspect_model(args.model)
    plan = plan_for_format(spec, args.format, group_size=args.group_size)
    hw = get_hardware(args.target, None)
    est = estimate(spec, plan, hw, workload)
    if args.json:
        _emit_json({"model": spec.name, "hardware": hw.name, "workload": workload.to_dict(),
                    "plan": plan.to_dict(), "estimate": est.to_dict()})
    else:
        show_estimate(spec, plan, hw, workload, est)
    return 0


def _stages(args: argparse.Namespace) -> Any:
    from advisor.progress import Stages

    return Stages(enabled=not (args.json or args.quiet))


def cmd_quantize(args: argparse.Namespace) -> int:
    from advisor.commands.quantize import quantize_artifact, resolve_plan
    from advisor.estimate import Workload
    from advisor.inspect import inspect_model
    from advisor.probe import get_hardware
    from advisor.render import show_artifact
    from advisor.textdata import load_text
    from backends.base import QuantizeOptions

    out = Path(args.out)
    spec = inspect_model(args.model)
    plan = resolve_plan(spec, args.preset, args.plan, args.imatrix, args.group_size,
                        backend=args.backend, bits=args.bits)
    if plan.backend != args.backend:
        raise BadInput(f"--preset/--plan gives a {plan.backend} plan but --backend is "
                       f"{args.backend}", f"pass --backend {plan.backend}")
    hw = get_hardware(args.target, out.parent)
    calib = load_text(args.calib_text, "calibration")
    _preflight_quantize(spec, plan, hw, out)
    options = QuantizeOptions(calib_text=calib, imatrix=args.imatrix, threads=args.threads,
                              seed=args.seed)
    with _stages(args) as stages:
        report = quantize_artifact(spec, plan, hw, out, options,
                                   Workload(context=args.context or 0) if args.context
                                   else Workload(), stages, calib)
    if args.json:
        _emit_json(report)
    else:
        show_artifact(out, report)
    return 0


def _preflight_quantize(spec: Any, plan: Any, hw: Any, out: Path) -> None:
    """Free disk for the estimated file (the staging directory sits beside --out) and RAM for
    the source's largest tensor in F32 plus its quantized copy, before any work."""
    from advisor.estimate import Workload, estimate
    from advisor.preflight import check_disk, check_memory

    size = int(estimate(spec, plan, hw, Workload()).file_size.value)
    check_disk(out.absolute().parent, size, f"the quantized model at {out}")
    largest = max((t.n_params for t in spec.tensors), default=0)
    check_memory(largest * 8, "quantizing the largest tensor")


def cmd_eval(args: argparse.Namespace) -> int:
    from advisor.commands.measure import evaluate
    from advisor.inspect import inspect_model
    from advisor.render import show_quality
    from advisor.textdata import load_text

    spec = inspect_model(args.model)
    text = load_text(args.eval_text, "evaluation")
    with _stages(args) as stages:
        result = evaluate(spec, Path(args.artifact), text, args.max_windows, args.window, stages,
                          args.threads)
    if args.json:
        _emit_json(result.to_dict())
    else:
        show_quality(spec, result)
    return 0


def cmd_bench(args: argparse.Namespace) -> int:
    from advisor.commands.measure import bench
    from advisor.render import show_bench
    from advisor.textdata import load_text

    text = load_text(args.eval_text, "evaluation")
    with _stages(args) as stages:
        result = bench(Path(args.artifact), args.prompt_tokens, args.max_new_tokens,
                       args.concurrency, args.requests, args.warmup, text, stages, args.threads)
    if args.json:
        _emit_json(result.to_dict())
    else:
        show_bench(result)
    return 0


def cmd_recommend(args: argparse.Namespace) -> int:
    import optuna

    from advisor.recommend import RecommendConfig, recommend, targets_from_args

    # Optuna logs every trial at INFO on its own handler; the progress bar already shows them.
    optuna.logging.set_verbosity(optuna.logging.INFO if args.verbose else optuna.logging.WARNING)

    targets = targets_from_args(prompt_tokens=args.prompt_tokens,
                                new_tokens=args.max_new_tokens, concurrency=args.concurrency,
                                context=args.context, vram=args.vram, mem=args.mem,
                                max_size=args.max_size, p95=args.p95, max_kld=args.max_kld)
    flags = {k.replace("_", "-"): v for k, v in (("vram", args.vram), ("mem", args.mem),
             ("max_size", args.max_size), ("p95", args.p95), ("max_kld", args.max_kld))
             if v is not None}
    cfg = RecommendConfig(candidates=args.candidates, presets_measured=args.presets,
                          trials=args.trials, measured_trials=args.measured_trials,
                          seed=args.seed, eval_windows=args.eval_windows,
                          bench_requests=args.bench_requests, imatrix=args.imatrix,
                          bench_all=args.bench_all,
                          threads=args.threads, storage=args.storage, flags=flags,
                          backend=args.backend, group_size=args.group_size)
    with _stages(args) as stages:
        report = recommend(args.model, targets, args.target, Path(args.out), cfg, stages)
    if args.json:
        _emit_json(report)
    else:
        pick = next(c for c in report["candidates"] if c["label"] == report["pick"]["label"])
        sys.stdout.write(
            f"deploy {pick['label']} ({pick['kind']}) from {args.out}: "
            f"{pick['size_measured']:,} bytes, mean KL {pick['kl_measured']:.4f} nats "
            f"(measured), p95 {pick['p95']['value'] * 1e3:.0f} ms ({pick['p95']['origin']})\n"
            f"serve: cd {args.out} && {report['serve']['command']}\n"
            f"why: {report['pick']['reason']}\n"
            f"details: {Path(args.out) / 'report.md'}\n")
    return 0


def cmd_worker(args: argparse.Namespace) -> int:
    import optuna

    from advisor.commands.worker import run_worker

    optuna.logging.set_verbosity(optuna.logging.INFO if args.verbose else optuna.logging.WARNING)
    with _stages(args) as stages:
        summary = run_worker(args.study, args.storage, model=args.model, trials=args.trials,
                             threads=args.threads,
                             scratch=Path(args.scratch) if args.scratch else None,
                             target=args.target, stages=stages)
    if args.json:
        _emit_json(summary)
    else:
        sys.stdout.write(f"study {summary['study']}: {summary['finished']} of "
                         f"{summary['n_trials']} trials finished, {summary['failed']} failed; "
                         f"this worker measured {summary['evaluations']} plans\n")
    return 0


def cmd_schema(args: argparse.Namespace) -> int:
    from advisor.report import SCHEMA

    _emit_json(SCHEMA)
    return 0


def cmd_report(args: argparse.Namespace) -> int:
    from advisor.report import rerender

    written = rerender(Path(args.dir))
    if args.json:
        _emit_json({"directory": args.dir, "written": [str(p) for p in written]})
    else:
        sys.stdout.write("".join(f"wrote {p}\n" for p in written))
    return 0


def cmd_tui(args: argparse.Namespace) -> int:
    from advisor.tui import run_tui

    return run_tui(model=args.model, target=args.target, out=Path(args.out))


_EPILOG = """exit codes:
  0  ok
  1  any other failure (an internal error: rerun with --verbose for the traceback)
  2  bad input: one line on stderr naming the problem and the fix
  3  infeasible targets: no candidate meets them; the nearest feasible alternative is named

--json (before or after the command) prints only JSON on stdout; progress, warnings and errors
go to stderr. -q/--quiet hides progress bars and warnings; -v/--verbose adds debug logs."""


def build_parser() -> argparse.ArgumentParser:
    from advisor.bench.config import BenchWorkload
    from advisor.commands.measure import DEFAULT_EVAL_WINDOWS
    from advisor.estimate import Workload
    from advisor.inspect import DEFAULT_MODEL

    defaults = Workload()
    p = _Parser(prog="advisor", description="Hardware-aware deployment advisor for quantized LLMs.",
                epilog=_EPILOG, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--json", dest="json_global", action="store_true",
                   help="print only JSON on stdout (as the command's own --json)")
    p.add_argument("-v", "--verbose", action="store_true", help="debug logging, tracebacks")
    p.add_argument("-q", "--quiet", action="store_true", help="only errors and results")
    sub = p.add_subparsers(dest="command", required=True, parser_class=_Parser)

    def common(sp: argparse.ArgumentParser, model: bool = False, target: bool = False) -> None:
        sp.add_argument("--json", action="store_true", help="print only JSON on stdout")
        if model:
            sp.add_argument("--model", default=DEFAULT_MODEL,
                            help=f"alias, .gguf file or HF directory (default {DEFAULT_MODEL})")
        if target:
            sp.add_argument("--target", default=None,
                            help="a catalogue device (see `advisor profiles`) instead of this host")

    sp = sub.add_parser("probe", help="describe this host (or --target) as a HardwareProfile")
    common(sp, target=True)
    sp.add_argument("--out", default=".", help="output directory whose free disk is reported")
    sp.set_defaults(func=cmd_probe)

    sp = sub.add_parser("profiles", help="list the device catalogue")
    common(sp)
    sp.set_defaults(func=cmd_profiles)

    sp = sub.add_parser("inspect", help="read a model's tensors and roles from its headers")
    common(sp, model=True)
    sp.add_argument("--tensors", action="store_true", help="list every tensor")
    sp.set_defaults(func=cmd_inspect)

    sp = sub.add_parser("estimate", help="predicted memory and roofline latency of a format")
    common(sp, model=True, target=True)
    sp.add_argument("--format", required=True,
                    help="llama.cpp preset/type (Q4_K_M, Q8_0, F16, ...) or W4A16/W8A16/"
                         "W8A8-INT8/W8A8-FP8/NF4 (aliases int4, int8, fp8, nf4)")
    sp.add_argument("--group-size", type=int, default=128, help="for int4/int8 (-1: per channel)")
    sp.add_argument("--context", type=int, default=defaults.context,
                    help="context tokens held in the KV cache (default prompt + new tokens)")
    sp.add_argument("--batch", type=int, default=defaults.concurrency,
                    help="concurrent sequences")
    sp.add_argument("--prompt-tokens", type=int, default=defaults.prompt_tokens)
    sp.add_argument("--max-new-tokens", type=int, default=defaults.new_tokens)
    sp.set_defaults(func=cmd_estimate)

    sp = sub.add_parser("quantize", help="quantize with one plan into an artifact directory")
    common(sp, model=True, target=True)
    sp.add_argument("--backend", default="gguf",
                    help="gguf (default); rtn, gptq, awq, fp8, smoothquant (compressed-tensors "
                         "checkpoints); nf4 (bitsandbytes checkpoint)")
    sp.add_argument("--bits", type=int, choices=(4, 8),
                    help="without --preset: rtn/gptq/awq 4 (W4A16, default) or 8 (W8A16); "
                         "fp8 and smoothquant 8 (W8A8); nf4 4")
    sp.add_argument("--preset", help="a format: llama.cpp preset or type (Q4_K_M, Q8_0, ...)")
    sp.add_argument("--plan", help="a plan.json (tensor name -> type)")
    sp.add_argument("--imatrix", action=argparse.BooleanOptionalAction, default=True,
                    help="importance matrix from calibration text where the types use it")
    sp.add_argument("--calib-text", help="calibration text file (default data/calibration.txt)")
    sp.add_argument("--group-size", type=int, default=128, help="for int4/int8 schemes")
    sp.add_argument("--context", type=int, default=0, help="context the serving command sets")
    sp.add_argument("--threads", type=int, default=0, help="0 = all cores")
    sp.add_argument("--seed", type=int, default=0)
    sp.add_argument("--out", required=True, help="artifact directory (new, empty, or an artifact)")
    sp.set_defaults(func=cmd_quantize)

    sp = sub.add_parser("eval", help="measure an artifact's quality against the reference")
    common(sp, model=True)
    sp.add_argument("--artifact", required=True, help="directory written by `advisor quantize`")
    sp.add_argument("--eval-text", help="evaluation text file (default data/evaluation.txt)")
    sp.add_argument("--max-windows", type=int, default=DEFAULT_EVAL_WINDOWS,
                    help="windows scored, 0 = all the text allows")
    sp.add_argument("--window", type=int, default=512, help="tokens per window (second half "
                                                            "scored)")
    sp.add_argument("--threads", type=int, default=0, help="0 = all cores")
    sp.set_defaults(func=cmd_eval)

    bench_defaults = BenchWorkload()
    sp = sub.add_parser("bench", help="measure an artifact's latency and memory")
    common(sp)
    sp.add_argument("--artifact", required=True, help="directory written by `advisor quantize`")
    sp.add_argument("--prompt-tokens", type=int, default=bench_defaults.prompt_tokens)
    sp.add_argument("--max-new-tokens", type=int, default=bench_defaults.new_tokens)
    sp.add_argument("--concurrency", type=int, default=bench_defaults.concurrency)
    sp.add_argument("--requests", type=int, default=bench_defaults.n_requests,
                    help="measured requests (after the warm-up)")
    sp.add_argument("--warmup", type=int, default=bench_defaults.warmup,
                    help="warm-up requests per stream, not counted")
    sp.add_argument("--eval-text", help="text the prompts are cut from")
    sp.add_argument("--threads", type=int, default=0, help="0 = all cores")
    sp.set_defaults(func=cmd_bench)

    sp = sub.add_parser("recommend", help="search, realize, measure and pick what to deploy")
    common(sp, model=True, target=True)
    sp.add_argument("--vram", help="accelerator memory budget, e.g. 24G")
    sp.add_argument("--mem", help="host memory budget (CPU serving), e.g. 8G")
    sp.add_argument("--max-size", help="artifact size limit, e.g. 4G, 512MiB")
    sp.add_argument("--p95", help="p95 request latency limit, e.g. 3s, 250ms")
    sp.add_argument("--max-kld", help="mean KL divergence limit vs the F16 reference (nats)")
    sp.add_argument("--prompt-tokens", type=int, default=defaults.prompt_tokens)
    sp.add_argument("--max-new-tokens", type=int, default=defaults.new_tokens)
    sp.add_argument("--concurrency", type=int, default=defaults.concurrency)
    sp.add_argument("--context", type=int, default=0, help="context tokens (0: prompt + new)")
    sp.add_argument("--candidates", type=int, default=2, help="search plans realized and measured")
    sp.add_argument("--presets", type=int, default=2,
                    help="fitting llama.cpp presets realized (those nearest the budget)")
    sp.add_argument("--trials", type=int, default=30, help="Optuna trials of the plan search")
    sp.add_argument("--measured-trials", type=int, default=0,
                    help="then this many trials quantized and measured inside the search loop "
                         "(measured KL; p95 and memory limits on this host); 0 = off")
    sp.add_argument("--backend", default="auto",
                    help="auto (default): llama.cpp GGUF plus every HF checkpoint scheme the "
                         "target can serve (vLLM/bitsandbytes on its GPU); or one of gguf, "
                         "rtn, gptq, awq, fp8, smoothquant, nf4")
    sp.add_argument("--group-size", type=int, default=128,
                    help="group size of the HF int4/int8 schemes (-1 = per channel)")
    sp.add_argument("--seed", type=int, default=0)
    sp.add_argument("--storage", help="Optuna storage URL (default: SQLite <out>.study.db)")
    sp.add_argument("--eval-windows", type=int, default=2, help="512-token windows scored")
    sp.add_argument("--bench-requests", type=int, default=3, help="measured bench requests")
    sp.add_argument("--bench-all", action="store_true",
                    help="bench every candidate (default: in pick order until one meets every "
                         "target; the others' memory and p95 are predicted)")
    sp.add_argument("--imatrix", action=argparse.BooleanOptionalAction, default=True,
                    help="importance matrix from calibration text where the types use it")
    sp.add_argument("--threads", type=int, default=0, help="0 = all cores")
    sp.add_argument("--out", required=True, help="artifact directory of the pick")
    sp.set_defaults(func=cmd_recommend)

    sp = sub.add_parser("worker", help="run trials of a study in a shared database (any host)")
    common(sp, target=True)
    sp.add_argument("--study", required=True, help="study name (`advisor recommend` prints it)")
    sp.add_argument("--storage", required=True,
                    help="the study's database, e.g. postgresql://user@host:5432/db")
    sp.add_argument("--model", default=None,
                    help="this host's copy of the study's model (default: as the study names it)")
    sp.add_argument("--trials", type=int, default=None,
                    help="stop after this many trials (default: until the study is finished)")
    sp.add_argument("--scratch", default=None,
                    help="directory for the candidates measured (default: the system's temp)")
    sp.add_argument("--threads", type=int, default=0, help="0 = all cores")
    sp.set_defaults(func=cmd_worker)

    sp = sub.add_parser("schema", help="print the JSON Schema of report.json")
    common(sp)
    sp.set_defaults(func=cmd_schema)

    sp = sub.add_parser("report", help="re-render report.md, pareto.png, candidates.csv of an "
                                       "artifact from its report.json")
    common(sp)
    sp.add_argument("dir", help="artifact directory (advisor quantize or recommend)")
    sp.set_defaults(func=cmd_report)

    sp = sub.add_parser("tui", help="the interactive wizard: hardware, model, targets, run, "
                                    "results")
    common(sp, model=True, target=True)
    sp.add_argument("--out", default="advisor-out", help="artifact directory of the pick")
    sp.set_defaults(func=cmd_tui)
    return p


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    args.json = bool(getattr(args, "json", False) or args.json_global)
    level = logging.DEBUG if args.verbose else logging.ERROR if args.quiet else logging.WARNING
    logging.basicConfig(level=level, format="%(levelname)s %(name)s: %(message)s")
    interrupt.install()
    try:
        return int(args.func(args))
    except AdvisorError as e:
        sys.stderr.write(f"advisor: error: {e.one_line()}\n")
        return e.exit_code
    except KeyboardInterrupt:
        sys.stderr.write("advisor: interrupted\n")
        return 130
    except Exception as e:  # noqa: BLE001 - last resort: one line, traceback only with --verbose
        if args.verbose:
            raise
        sys.stderr.write(f"advisor: internal error: {type(e).__name__}: {e} "
                         "(rerun with --verbose for the traceback)\n")
        return 1


if __name__ == "__main__":
    raise SystemExit(main())
