"""`advisor` command line: one function per sub-command, errors as one line and an exit code.

Exit codes: 0 ok, 1 unexpected failure, 2 bad input, 3 infeasible targets.
"""

from __future__ import annotations

import argparse
import json
import logging
import shlex
import sys
from pathlib import Path
from typing import Any

from advisor.errors import AdvisorError, BadInput, printable, redact
from advisor.progress import interrupt

log = logging.getLogger("advisor")


def _emit_json(data: Any) -> None:
    sys.stdout.write(json.dumps(data, indent=2, default=str) + "\n")


def _write_lines(*lines: str) -> None:
    """Plain lines on stdout, each printable (no escape codes of a model's or a path's text)."""
    sys.stdout.write("".join(printable(line) + "\n" for line in lines))


class _SafeFormatter(logging.Formatter):
    """Log lines without terminal escape codes and without the secrets of any URL in them."""

    def format(self, record: logging.LogRecord) -> str:
        return redact(printable(super().format(record), newlines=True))


def cmd_probe(args: argparse.Namespace) -> int:
    from advisor.cli.console import show_hardware
    from advisor.probe import get_hardware

    hw = get_hardware(args.target, Path(args.out))
    if args.json:
        _emit_json(hw.to_dict())
    else:
        show_hardware(hw)
    return 0


def cmd_profiles(args: argparse.Namespace) -> int:
    from advisor.cli.console import show_profiles
    from advisor.probe import list_targets

    if args.json:  # each profile with the aliases --target accepts for it
        from advisor.probe.catalogue import catalogue_listing

        _emit_json(catalogue_listing())
    else:
        show_profiles(list_targets())
    return 0


def cmd_inspect(args: argparse.Namespace) -> int:
    from advisor.cli.console import show_model
    from advisor.inspect import inspect_model

    spec = inspect_model(args.model, weights=False)
    if args.json:
        _emit_json(spec.to_dict())
    else:
        show_model(spec, tensors=args.tensors)
    return 0


def cmd_estimate(args: argparse.Namespace) -> int:
    from advisor.cli.console import show_estimate
    from advisor.estimate import Workload, estimate
    from advisor.inspect import inspect_model
    from advisor.probe import get_hardware
    from advisor.space.named import plan_for_format

    try:
        workload = Workload(prompt_tokens=args.prompt_tokens, new_tokens=args.max_new_tokens,
                            concurrency=args.batch, context=args.context)
    except ValueError as e:
        raise BadInput(str(e), "pass positive integers") from None
    spec = inspect_model(args.model, weights=False)
    plan = plan_for_format(spec, args.format, group_size=args.group_size)
    hw = get_hardware(args.target, None)
    est = estimate(spec, plan, hw, workload)
    warnings = _estimate_warnings(spec, plan, hw, workload)
    for w in warnings:
        logging.getLogger("advisor").warning(w)
    if args.json:
        _emit_json({"model": spec.name, "hardware": hw.name, "workload": workload.to_dict(),
                    "plan": plan.to_dict(), "estimate": est.to_dict(), "warnings": warnings})
    else:
        show_estimate(spec, plan, hw, workload, est)
    if not est.fits:
        from advisor.errors import Infeasible

        assert est.device_memory is not None
        raise Infeasible(f"{plan.label or args.format} of {spec.name} is predicted at "
                         f"{est.total_memory.value / 2**30:.2f} GiB, over {hw.name}'s "
                         f"{est.device_memory.value / 2**30:.2f} GiB",
                         "pick a smaller format, a shorter --context or fewer --batch sequences")
    return 0


def _estimate_warnings(spec: Any, plan: Any, hw: Any, workload: Any) -> list[str]:
    """Setups the target cannot run as estimated: a scheme no runtime of it serves (FP8 before
    sm_89, ...), a context past the model's trained length."""
    out = []
    if plan.backend != "gguf":
        from advisor.formats import QUANT_SCHEMES
        from backends.hf import serves_scheme

        schemes = sorted({f for f in plan.tensor_formats.values() if f in QUANT_SCHEMES})
        for scheme in schemes:
            if (ok := serves_scheme(scheme, hw)):
                continue
            out.append(f"{hw.name} cannot serve {scheme}: {ok.reason}; the figures are what it "
                       "would take if it could")
    if workload.context_tokens > spec.context_length:
        out.append(f"context {workload.context_tokens} tokens is past the {spec.context_length} "
                   f"{spec.name} was trained for: quality degrades beyond it")
    return out


def _stages(args: argparse.Namespace) -> Any:
    from advisor.progress import Stages

    return Stages(enabled=not (args.json or args.quiet))


def imatrix_args(value: bool | str) -> tuple[bool, str | None]:
    """`--imatrix [FILE]` / `--no-imatrix` as (use one, the user's file or None)."""
    if isinstance(value, str):
        if not Path(value).expanduser().is_file():
            raise BadInput(f"--imatrix {value} is not a file", "pass an importance matrix "
                           "written by llama-imatrix, or --imatrix alone to compute one")
        return True, str(Path(value).expanduser())
    return bool(value), None


def cmd_quantize(args: argparse.Namespace) -> int:
    from advisor.cli.console import show_artifact
    from advisor.estimate import Workload
    from advisor.inspect import inspect_model
    from advisor.plan import LLAMA_CPP, written_by
    from advisor.probe import get_hardware
    from advisor.realize import quantize_artifact, resolve_plan
    from advisor.textdata import load_text
    from backends.base import QuantizeOptions

    out = Path(args.out)
    use_imatrix, imatrix_file = imatrix_args(args.imatrix)
    if args.context < 0 or args.concurrency < 1:
        raise BadInput(f"--context {args.context} --concurrency {args.concurrency}",
                       "pass --context >= 0 (0: the trained context) and --concurrency >= 1")
    spec = inspect_model(args.model)
    plan = resolve_plan(spec, args.preset, args.plan, use_imatrix, args.group_size,
                        backend=args.backend, bits=args.bits)
    if plan.backend != args.backend:
        raise BadInput(f"--preset/--plan gives a {plan.backend} plan but --backend is "
                       f"{args.backend}", f"pass --backend {plan.backend}")
    if args.gguf_quantizer != LLAMA_CPP:
        if plan.backend != "gguf":
            raise BadInput(f"--gguf-quantizer {args.gguf_quantizer} with a {plan.backend} plan",
                           "use it with GGUF presets and plans (--backend gguf)")
        plan = written_by(plan, args.gguf_quantizer)
    hw = get_hardware(args.target, out.parent)
    calib = load_text(args.calib_text, "calibration")
    _preflight_quantize(spec, plan, hw, out)
    options = QuantizeOptions(calib_text=calib, imatrix=use_imatrix, threads=args.threads,
                              seed=args.seed, imatrix_file=imatrix_file, context=args.context)
    workload = Workload(concurrency=args.concurrency, context=args.context)
    with _stages(args) as stages:
        report = quantize_artifact(spec, plan, hw, out, options, workload, stages, calib,
                                   force=args.force)
    if args.json:
        _emit_json(report)
    else:
        show_artifact(out, report)
    return 0


def _preflight_quantize(spec: Any, plan: Any, hw: Any, out: Path) -> None:
    """Free disk for the estimated file (the staging directory sits beside --out) and RAM for
    the source's largest tensor in F32 plus its quantized copy, before any work."""
    from advisor.artifact.preflight import check_disk, check_memory
    from advisor.estimate import Workload, estimate

    size = int(estimate(spec, plan, hw, Workload()).file_size.value)
    check_disk(out.absolute().parent, size, f"the quantized model at {out}")
    largest = max((t.n_params for t in spec.tensors), default=0)
    check_memory(largest * 8, "quantizing the largest tensor")


def cmd_eval(args: argparse.Namespace) -> int:
    from advisor.cli.console import show_quality
    from advisor.inspect import inspect_model
    from advisor.measure.stage import evaluate
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
    from advisor.cli.console import show_bench
    from advisor.measure.stage import bench
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

    use_imatrix, imatrix_file = imatrix_args(args.imatrix)
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
                          bench_requests=args.bench_requests, imatrix=use_imatrix,
                          imatrix_file=imatrix_file, bench_all=args.bench_all,
                          threads=args.threads, storage=args.storage, flags=flags,
                          backend=args.backend, group_size=args.group_size,
                          serve_context=args.context, force=args.force,
                          sensitivity_anchors=args.sensitivity_anchors, device=args.device,
                          gguf_quantizer=args.gguf_quantizer)
    with _stages(args) as stages:
        report = recommend(args.model, targets, args.target, Path(args.out), cfg, stages)
    if args.json:
        _emit_json(report)
    else:
        pick = next(c for c in report["candidates"] if c["label"] == report["pick"]["label"])
        _write_lines(
            f"deploy {pick['label']} ({pick['kind']}) from {args.out}: "
            f"{pick['size_measured']:,} bytes, mean KL {pick['kl_measured']:.4f} nats "
            f"(measured), p95 {pick['p95']['value'] * 1e3:.0f} ms ({pick['p95']['origin']})",
            f"serve: cd {shlex.quote(args.out)} && {report['serve']['command']}",
            f"why: {report['pick']['reason']}",
            f"details: {Path(args.out) / 'report.md'}")
    return 0


def cmd_worker(args: argparse.Namespace) -> int:
    import optuna

    from advisor.recommend.worker import run_worker

    optuna.logging.set_verbosity(optuna.logging.INFO if args.verbose else optuna.logging.WARNING)
    with _stages(args) as stages:
        summary = run_worker(args.study, args.storage, model=args.model, trials=args.trials,
                             threads=args.threads,
                             scratch=Path(args.scratch) if args.scratch else None,
                             target=args.target, stages=stages)
    if args.json:
        _emit_json(summary)
    else:
        _write_lines(f"study {summary['study']}: {summary['finished']} of "
                     f"{summary['n_trials']} trials finished, {summary['failed']} failed; "
                     f"this worker measured {summary['evaluations']} plans")
    return 0


def cmd_schema(args: argparse.Namespace) -> int:
    from advisor.report import SCHEMA

    _emit_json(SCHEMA)
    return 0


def cmd_report(args: argparse.Namespace) -> int:
    from advisor.artifact import load_report
    from advisor.report import render_files

    written = render_files(load_report(Path(args.dir)), Path(args.dir))
    if args.json:
        _emit_json({"directory": args.dir, "written": [str(p) for p in written]})
    else:
        _write_lines(*(f"wrote {p}" for p in written))
    return 0


def cmd_tui(args: argparse.Namespace) -> int:
    from advisor.tui import run_tui

    return run_tui(model=args.model, target=args.target, out=Path(args.out))


COMMANDS = {"probe": cmd_probe, "profiles": cmd_profiles, "inspect": cmd_inspect,
            "estimate": cmd_estimate, "quantize": cmd_quantize, "eval": cmd_eval,
            "bench": cmd_bench, "recommend": cmd_recommend, "worker": cmd_worker,
            "schema": cmd_schema, "report": cmd_report, "tui": cmd_tui}


def main(argv: list[str] | None = None) -> int:
    from advisor.cli.parser import build_parser

    parser = build_parser()
    args = parser.parse_args(argv)
    args.json = bool(getattr(args, "json", False) or args.json_global)
    level = logging.DEBUG if args.verbose else logging.ERROR if args.quiet else logging.WARNING
    handler = logging.StreamHandler()  # stderr; basicConfig keeps a root that has handlers
    handler.setFormatter(_SafeFormatter("%(levelname)s %(name)s: %(message)s"))
    logging.basicConfig(level=level, handlers=[handler])
    interrupt.install()
    try:
        return int(COMMANDS[args.command](args))
    except AdvisorError as e:
        sys.stderr.write(f"advisor: error: {e.one_line()}\n")
        return e.exit_code
    except KeyboardInterrupt:
        sys.stderr.write("advisor: interrupted\n")
        return 130
    except Exception as e:  # noqa: BLE001 - last resort: one line, traceback only with --verbose
        if isinstance(e, RuntimeError) and str(e) == "Could not determine home directory.":
            # Path.expanduser of `~nosuchuser/...`, which the shell leaves as typed
            sys.stderr.write("advisor: error: a path of the command line or of "
                             "QUANT_ADVISOR_CACHE starts with ~user for a user this host does "
                             "not have; write the path out in full\n")
            return 2
        if args.verbose:
            raise
        # the message may quote a model's strings or a database URL (SQLAlchemy echoes it)
        sys.stderr.write(f"advisor: internal error: {type(e).__name__}: "
                         f"{redact(printable(e))} (rerun with --verbose for the traceback)\n")
        return 1


if __name__ == "__main__":
    raise SystemExit(main())
