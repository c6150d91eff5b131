"""The flags of every `advisor` sub-command. Defaults are read from the dataclasses that own them
(RecommendConfig, QuantizeOptions, Workload, BenchWorkload, the formats' group size), never typed
here a second time; `--backend` choices come from the backend registry."""

from __future__ import annotations

import argparse
import sys
from typing import Any, NoReturn


class _Formatter(argparse.RawDescriptionHelpFormatter):
    """Help that shows every flag's default (as ArgumentDefaultsHelpFormatter does), except
    where there is none to show (None, a plain switch) or the help already names it."""

    def _get_help_string(self, action: argparse.Action) -> str | None:
        text = action.help or ""
        if (action.default in (None, False, argparse.SUPPRESS) or "default" in text
                or not action.option_strings or action.help == argparse.SUPPRESS):
            return text
        return text + " (default: %(default)s)"


class _Parser(argparse.ArgumentParser):
    """argparse that reports bad usage as one line with exit code 2, and shows defaults."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        kwargs.setdefault("formatter_class", _Formatter)
        super().__init__(*args, **kwargs)

    def error(self, message: str) -> NoReturn:
        sys.stderr.write(f"advisor: error: {message} (see `{self.prog} --help`)\n")
        raise SystemExit(2)


_EPILOG = """exit codes:
  0  ok
  1  any other failure (an internal error: rerun with --verbose for the traceback)
  2  bad input: one line on stderr naming the problem and the fix
  3  infeasible targets: no candidate meets them; the nearest feasible alternative is named

--json (before or after the command) prints only JSON on stdout; progress, warnings and errors
go to stderr. -q/--quiet hides progress bars and warnings; -v/--verbose adds debug logs.

sizes (--vram, --mem, --max-size): {units}, e.g. 24G, 512MiB, 1.5GB.
durations (--p95): s, ms, us or min; a bare number is seconds."""

_CONTEXT_HELP = ("tokens per request the serving files allow; 0: the model's trained context, "
                 "capped so the predicted memory fits --vram/--mem or the target")


def _version() -> str:
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version("quant-advisor")
    except PackageNotFoundError:  # run from a source tree that was never installed
        return "unknown (not installed)"


def build_parser() -> argparse.ArgumentParser:
    """Every sub-command and flag; defaults come from the dataclasses that own them."""
    import backends
    from advisor.estimate import Workload
    from advisor.formats import DEFAULT_GROUP_SIZE
    from advisor.inspect import DEFAULT_MODEL
    from advisor.measure.latency.config import BenchWorkload
    from advisor.measure.stage import DEFAULT_EVAL_WINDOWS
    from advisor.plan import GGUF_QUANTIZERS, LLAMA_CPP
    from advisor.recommend.config import EVAL_WINDOW, GGUF_QUANTIZER_CHOICES, RecommendConfig
    from advisor.recommend.offers import backend_choices
    from backends.base import QuantizeOptions
    from backends.hf import DEVICES

    defaults, rec, qopt = Workload(), RecommendConfig(), QuantizeOptions()
    hf = ", ".join(backends.hf_backends())
    from advisor.targets import UNITS

    p = _Parser(prog="advisor", description="Hardware-aware deployment advisor for quantized LLMs.",
                epilog=_EPILOG.format(units=UNITS))
    p.add_argument("--version", action="version", version=f"advisor {_version()}")
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

    def requests(sp: argparse.ArgumentParser, prompt: int, new: int,
                 concurrency: int | None = None) -> None:
        """The workload's request shape (defaults from Workload or BenchWorkload)."""
        sp.add_argument("--prompt-tokens", type=int, default=prompt,
                        help="prompt tokens of each request")
        sp.add_argument("--max-new-tokens", type=int, default=new,
                        help="tokens generated per request")
        if concurrency is not None:
            sp.add_argument("--concurrency", type=int, default=concurrency,
                            help="requests in flight at once")

    def imatrix(sp: argparse.ArgumentParser, default: bool) -> None:
        """llama.cpp's meaning: `--imatrix FILE` uses that file; bare `--imatrix` computes one
        from the calibration text; `--no-imatrix` uses none."""
        sp.add_argument("--imatrix", nargs="?", const=True, default=default, metavar="FILE",
                        help="importance matrix where the types use one: FILE (llama-imatrix's "
                             "GGUF or legacy .dat), or computed from the calibration text when "
                             "no FILE is given (default: "
                             + ("computed" if default else "none") + ")")
        sp.add_argument("--no-imatrix", dest="imatrix", action="store_false",
                        default=argparse.SUPPRESS, help="quantize without an importance matrix")

    sp = sub.add_parser("probe", help="describe this host (or --target) as a HardwareProfile")
    common(sp, target=True)
    sp.add_argument("--out", default=".", help="output directory whose free disk is reported")

    sp = sub.add_parser("profiles", help="list the device catalogue")
    common(sp)

    sp = sub.add_parser("inspect", help="read a model's tensors and roles from its headers")
    common(sp, model=True)
    sp.add_argument("--tensors", action="store_true", help="list every tensor")

    sp = sub.add_parser("estimate", help="predicted memory and roofline latency of a format")
    common(sp, model=True, target=True)
    sp.add_argument("--format", required=True,
                    help="llama.cpp preset/type (Q4_K_M, Q8_0, F16, ...) or W4A16/W8A16/"
                         "W8A8-INT8/W8A8-FP8/NF4 (aliases int4, int8, fp8, nf4)")
    sp.add_argument("--group-size", type=int, default=DEFAULT_GROUP_SIZE,
                    help="for int4/int8 (-1: per channel)")
    sp.add_argument("--context", type=int, default=defaults.context,
                    help="context tokens held in the KV cache (default prompt + new tokens)")
    sp.add_argument("--batch", type=int, default=defaults.concurrency,
                    help="concurrent sequences")
    requests(sp, defaults.prompt_tokens, defaults.new_tokens)

    sp = sub.add_parser("quantize", help="quantize with one plan into an artifact directory")
    common(sp, model=True, target=True)
    sp.add_argument("--backend", default="gguf",
                    help=f"gguf (default), or an HF checkpoint writer: {hf}")
    sp.add_argument("--bits", type=int, choices=(4, 8),
                    help="without --preset: rtn/gptq/awq 4 (W4A16, default) or 8 (W8A16); "
                         "fp8 and smoothquant 8 (W8A8); nf4 4")
    sp.add_argument("--preset", help="a format: llama.cpp preset or type (Q4_K_M, Q8_0, ...)")
    sp.add_argument("--plan", help="a plan.json (tensor name -> type)")
    imatrix(sp, qopt.imatrix)
    sp.add_argument("--gguf-quantizer", choices=GGUF_QUANTIZERS, default=LLAMA_CPP,
                    help="who writes a GGUF plan: llama.cpp (default) or AutoRound's GGUF export")
    sp.add_argument("--calib-text", help="calibration text file (default data/calibration.txt)")
    sp.add_argument("--group-size", type=int, default=DEFAULT_GROUP_SIZE,
                    help="for int4/int8 schemes")
    sp.add_argument("--context", type=int, default=0, help=_CONTEXT_HELP)
    sp.add_argument("--concurrency", type=int, default=defaults.concurrency,
                    help="requests the serving files serve at once (llama-server -np, vLLM "
                         "--max-num-seqs)")
    sp.add_argument("--threads", type=int, default=qopt.threads, help="0 = all cores")
    sp.add_argument("--seed", type=int, default=qopt.seed,
                    help="seed of every random choice (calibration sampling)")
    sp.add_argument("--out", required=True, help="artifact directory (new or empty)")
    sp.add_argument("--force", action="store_true",
                    help="replace an artifact of the advisor already at --out (never other files)")

    sp = sub.add_parser("eval", help="measure an artifact's quality against the reference")
    common(sp, model=True)
    sp.add_argument("--artifact", required=True, help="directory written by `advisor quantize`")
    sp.add_argument("--eval-text", help="evaluation text file (default data/evaluation.txt)")
    sp.add_argument("--max-windows", type=int, default=DEFAULT_EVAL_WINDOWS,
                    help="windows scored, 0 = all the text allows")
    sp.add_argument("--window", type=int, default=EVAL_WINDOW,
                    help="tokens per window (second half scored)")
    sp.add_argument("--threads", type=int, default=qopt.threads, help="0 = all cores")

    bench_defaults = BenchWorkload()
    sp = sub.add_parser("bench", help="measure an artifact's latency and memory")
    common(sp)
    sp.add_argument("--artifact", required=True, help="directory written by `advisor quantize`")
    requests(sp, bench_defaults.prompt_tokens, bench_defaults.new_tokens,
             bench_defaults.concurrency)
    sp.add_argument("--requests", type=int, default=bench_defaults.n_requests,
                    help="measured requests (after the warm-up)")
    sp.add_argument("--warmup", type=int, default=bench_defaults.warmup,
                    help="warm-up requests per stream, not counted")
    sp.add_argument("--eval-text", help="text the prompts are cut from")
    sp.add_argument("--threads", type=int, default=qopt.threads, help="0 = all cores")

    sp = sub.add_parser("recommend", help="search, realize, measure and pick what to deploy")
    common(sp, model=True, target=True)
    sp.add_argument("--vram", help="accelerator memory budget, e.g. 24G (G = GiB, GB = 10^9 "
                                   "bytes)")
    sp.add_argument("--mem", help="host memory budget (CPU serving), e.g. 8G (GiB)")
    sp.add_argument("--max-size", help="artifact size limit, e.g. 4G, 512MiB, 1.5GB (bytes when "
                                       "bare)")
    sp.add_argument("--p95", help="p95 request latency limit, e.g. 3s, 250ms")
    sp.add_argument("--max-kld", help="mean KL divergence limit vs the F16 reference (nats)")
    requests(sp, defaults.prompt_tokens, defaults.new_tokens, defaults.concurrency)
    sp.add_argument("--context", type=int, default=0, help=_CONTEXT_HELP)
    sp.add_argument("--candidates", type=int, default=rec.candidates,
                    help="search plans realized and measured (half of them, rounded down, from "
                         "the subspace that keeps the LM head at the Q6_K floor)")
    sp.add_argument("--presets", type=int, default=rec.presets_measured,
                    help="fitting llama.cpp presets realized (those nearest the budget)")
    sp.add_argument("--trials", type=int, default=rec.trials,
                    help="Optuna trials of the plan search")
    sp.add_argument("--measured-trials", type=int, default=rec.measured_trials,
                    help="then this many trials quantized and measured inside the search loop "
                         "(measured KL; p95 and memory limits on this host); 0 = off")
    sp.add_argument("--backend", default=rec.backend,
                    help="auto (default): llama.cpp GGUF plus every HF checkpoint scheme the "
                         "target can serve (vLLM/bitsandbytes on its GPU); or one of "
                         f"{', '.join(backend_choices()[1:])}")
    sp.add_argument("--gguf-quantizer", choices=GGUF_QUANTIZER_CHOICES,
                    default=rec.gguf_quantizer,
                    help="who writes the GGUF candidates: llama.cpp (default), AutoRound's GGUF "
                         "export, or both (each candidate twice, measured, the pick chooses)")
    sp.add_argument("--group-size", type=int, default=rec.group_size,
                    help="group size of the HF int4/int8 schemes (-1 = per channel)")
    sp.add_argument("--seed", type=int, default=rec.seed,
                    help="seed of the search (the same seed gives the same trials)")
    sp.add_argument("--storage", help="Optuna storage URL (default: SQLite <out>.study.db)")
    sp.add_argument("--eval-windows", type=int, default=rec.eval_windows,
                    help=f"{EVAL_WINDOW}-token windows scored")
    sp.add_argument("--bench-requests", type=int, default=rec.bench_requests,
                    help="measured bench requests")
    sp.add_argument("--bench-all", action="store_true",
                    help="bench every candidate (default: in pick order until one meets every "
                         "target; the others' memory and p95 are predicted)")
    imatrix(sp, rec.imatrix)
    sp.add_argument("--sensitivity-anchors", type=int, default=rec.sensitivity_anchors,
                    metavar="N",
                    help="decoder layers whose tensors are measured end to end in the "
                         "sensitivity stage, the others scaled from them (time linear in the "
                         "model's size); 0 measures every layer (time grows with depth x size)")
    sp.add_argument("--device", choices=DEVICES, default=rec.device,
                    help="where the sensitivity stage's torch passes run: auto = cuda (CUDA or "
                         "ROCm), else mps, else cpu")
    sp.add_argument("--threads", type=int, default=rec.threads, help="0 = all cores")
    sp.add_argument("--out", required=True, help="artifact directory of the pick (new or empty)")
    sp.add_argument("--force", action="store_true",
                    help="replace an artifact of the advisor already at --out (never other files)")

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
    sp.add_argument("--threads", type=int, default=qopt.threads, help="0 = all cores")

    sp = sub.add_parser("schema", help="print the JSON Schema of report.json")
    common(sp)

    sp = sub.add_parser("report", help="re-render report.md, pareto.png, candidates.csv of an "
                                       "artifact from its report.json")
    common(sp)
    sp.add_argument("dir", help="artifact directory (advisor quantize or recommend)")

    sp = sub.add_parser("tui", help="the interactive wizard: hardware, model, targets, run, "
                                    "results")
    common(sp, model=True, target=True)
    sp.add_argument("--out", default="advisor-out", help="artifact directory of the pick")
    return p
