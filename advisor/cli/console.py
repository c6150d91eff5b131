"""Human output of the CLI (rich tables). JSON output lives beside each value type."""

from __future__ import annotations

import io
import shlex
import sys
from typing import IO, Any, cast

from rich.console import Console
from rich.markup import escape
from rich.table import Table

from advisor.errors import printable
from advisor.estimate import Estimate, Workload
from advisor.figures import Figure, fig, human_bytes, human_seconds
from advisor.hardware import HardwareProfile
from advisor.modelspec import ModelSpec
from advisor.plan import QuantPlan


class _PlainLines(io.TextIOBase):
    """A file that writes whole lines to `sys.stdout` without their trailing blanks (rich pads
    table rows to the console width)."""

    def __init__(self) -> None:
        self._tail = ""

    def write(self, text: str) -> int:
        *lines, self._tail = (self._tail + text).split("\n")
        for line in lines:
            sys.stdout.write(line.rstrip() + "\n")
        return len(text)

    def flush(self) -> None:
        if self._tail:
            sys.stdout.write(self._tail.rstrip())
            self._tail = ""
        sys.stdout.flush()


def shown(value: object) -> str:
    """`value` as rich markup that prints it literally: control characters and escape sequences
    removed (advisor.errors.printable), markup such as `[bold]` or a path's `[v2]` escaped. Every
    string of a model file, a path, a probe or a report goes through this (or is a Text)."""
    return escape(printable(value))


# Wide enough that no path or note is wrapped when stdout is a file or a pipe
_PIPE_WIDTH = 1000


def console() -> Console:
    """A terminal gets rich's layout; a file or a pipe gets the same tables unwrapped, without
    padding or control codes."""
    if sys.stdout.isatty():
        return Console(highlight=False)
    return Console(highlight=False, file=cast(IO[str], _PlainLines()), width=_PIPE_WIDTH,
                   color_system=None)


def show_hardware(hw: HardwareProfile) -> None:
    c = console()
    c.print(f"[bold]{shown(hw.name)}[/bold]  [dim]source: {shown(hw.source)}[/dim]")
    t = Table(show_header=False, box=None, pad_edge=False)
    cpu = hw.cpu
    t.add_row("CPU", f"{shown(cpu.model)} - {cpu.physical_cores} physical / "
                     f"{cpu.logical_cores} logical")
    t.add_row("ISA", shown(", ".join(cpu.isa)) or "-")
    t.add_row("RAM", f"{fig(cpu.ram_total)} total, {fig(cpu.ram_available)} available")
    t.add_row("RAM bandwidth", fig(cpu.memory_bandwidth))
    if hw.disk_free is not None:
        t.add_row("Free disk", fig(hw.disk_free))
    if not hw.accelerators:
        t.add_row("Accelerators", "none (CPU runtimes only)")
    for i, a in enumerate(hw.accelerators):
        rates = ", ".join(f"{k} {v.value:g}" for k, v in a.peak_tflops.items())
        t.add_row(f"GPU {i}", shown(f"{a.name} ({a.vendor.value}, {a.arch or '?'})"))
        t.add_row("  memory", f"{fig(a.memory)}{' unified' if a.unified_memory else ''}")
        t.add_row("  bandwidth", fig(a.memory_bandwidth))
        t.add_row("  peak TFLOP/s", shown(rates) or "-")
        t.add_row("  supports", ", ".join(c.value for c in a.capabilities) or "-")
    for rt, fmts in hw.runtimes.items():
        t.add_row(f"serves ({shown(rt)})", shown(", ".join(fmts)))
    for n in hw.notes:
        t.add_row("note", shown(n))
    c.print(t)


def show_profiles(targets: list[HardwareProfile]) -> None:
    from advisor.probe.catalogue import aliases_of

    t = Table(title="Device catalogue (dense peak rates, TFLOP/s or TOPS)")
    for col in ("--target", "arch", "memory", "GB/s", "fp16", "int8", "fp8", "HF formats"):
        t.add_column(col, no_wrap=True)
    t.add_column("also accepted as", overflow="fold")
    for hw in targets:
        name = hw.source.removeprefix("profile:")
        aliases = ", ".join(aliases_of(name)) if hw.source.startswith("profile:") else ""
        a = hw.primary
        mem = a.memory if a else hw.cpu.ram_total
        bw = a.memory_bandwidth if a else hw.cpu.memory_bandwidth
        rates = a.peak_tflops if a else hw.cpu.peak_tflops

        def rate(k: str, rates: dict[str, Figure] = rates) -> str:
            v = rates[k].value if k in rates else None
            return "-" if v is None else f"{v:.0f}" if v >= 10 else f"{v:.2g}"

        kind = (a.arch or a.vendor.value) if a else "cpu"
        serves = ", ".join(f for rt, fs in hw.runtimes.items() if rt != "llama.cpp" for f in fs)
        hf = "fp8" if "W8A8-FP8" in serves else "int4/8" if serves else "-"
        t.add_row(shown(name), shown(kind),
                  f"{mem.value / 2**30:.0f} GiB",
                  f"{bw.value / 1e9:,.0f}" if bw else "-", rate("fp16"), rate("int8"),
                  rate("fp8"), hf, shown(aliases) or "-")
    console().print(t)
    console().print("[dim]every target serves GGUF via llama.cpp; names and aliases match "
                    "ignoring case, spaces and dashes; `advisor probe --target NAME` shows one "
                    "entry[/dim]")


def show_model(spec: ModelSpec, tensors: bool = False) -> None:
    c = console()
    c.print(f"[bold]{shown(spec.name)}[/bold]  [dim]{spec.format.value}: {shown(spec.path)}[/dim]")
    if spec.extra.get("weights") == "config-only":
        c.print("[yellow]config.json only, no weights: the tensors and bytes below are "
                "predicted from it[/yellow]")
    t = Table(show_header=False, box=None, pad_edge=False)
    t.add_row("architecture", shown(spec.architecture))
    t.add_row("parameters", f"{spec.n_params:,}")
    t.add_row("layers", str(spec.n_layers))
    t.add_row("hidden / ffn", f"{spec.hidden_size} / {spec.intermediate_size}")
    t.add_row("heads (kv)", f"{spec.n_heads} ({spec.n_kv_heads}), head dim {spec.head_dim}")
    t.add_row("vocab", f"{spec.vocab_size:,}")
    t.add_row("context", f"{spec.context_length:,}")
    t.add_row("tied embeddings", "yes" if spec.tied_embeddings else "no")
    t.add_row("tensor bytes", human_bytes(spec.source_bytes))
    dtypes = ", ".join(f"{k} {v / spec.n_params:.1%}" for k, v in spec.dtype_counts().items())
    t.add_row("stored as", shown(dtypes))
    roles = ", ".join(f"{k} {v:,}" for k, v in spec.role_counts().items())
    t.add_row("params by role", shown(roles))
    q = shown(spec.source_quantization or "")
    if q:
        t.add_row("[yellow]already quantized[/yellow]",
                  f"[yellow]source is {q}: its reference is the dequantized {q} weights, so "
                  f"re-quantizing to {q} looks nearly free[/yellow]")
    c.print(t)
    if tensors:
        tt = Table(title=f"{len(spec.tensors)} tensors")
        for col in ("name", "role", "layer", "shape", "type", "params"):
            tt.add_column(col)
        for x in spec.tensors:
            tt.add_row(shown(x.canonical), x.role.value, "" if x.layer is None else str(x.layer),
                       "x".join(map(str, x.shape)), shown(x.dtype), f"{x.n_params:,}")
        c.print(tt)


def show_estimate(spec: ModelSpec, plan: QuantPlan, hw: HardwareProfile, wl: Workload,
                  est: Estimate) -> None:
    c = console()
    c.print(f"[bold]{shown(spec.name)}[/bold] as [bold]{shown(plan.label)}[/bold] on "
            f"[bold]{shown(est.device)}[/bold] via {shown(est.runtime)}  "
            "[dim](every figure predicted)[/dim]")
    t = Table(show_header=False, box=None, pad_edge=False)
    t.add_row("formats", shown(", ".join(f"{k} x{v}" for k, v in plan.format_counts().items())))
    t.add_row("bits per weight", f"{est.bits_per_weight:.3f}")
    t.add_row("weights", fig(est.weights))
    t.add_row("file size", fig(est.file_size))
    t.add_row("KV cache", fig(est.kv_cache))
    t.add_row("runtime overhead", fig(est.overhead))
    t.add_row("total memory", fig(est.total_memory))
    if est.device_memory is not None:
        verdict = "[green]fits[/green]" if est.fits else "[red]does not fit[/red]"
        t.add_row("device memory", f"{fig(est.device_memory)} - {verdict}")
    t.add_row("workload", f"{wl.prompt_tokens} prompt + {wl.new_tokens} new tokens, "
                          f"{wl.concurrency} concurrent, context {wl.context_tokens}")
    t.add_row("time to first token", fig(est.ttft))
    t.add_row("per-token latency", fig(est.per_token))
    t.add_row("request latency", fig(est.request_latency))
    for a in est.assumptions:
        t.add_row("assumes", f"[dim]{shown(a)}[/dim]")
    c.print(t)


def show_artifact(out: object, report: dict) -> None:  # type: ignore[type-arg]
    c = console()
    plan = report["plan"]
    counts: dict[str, int] = {}
    for f in plan["tensor_formats"].values():
        counts[f] = counts.get(f, 0) + 1
    c.print(f"[bold green]wrote[/bold green] {shown(out)}  [dim]({shown(report['label'])}, "
            f"{human_bytes(report['size']['value'])} measured)[/dim]")
    t = Table(show_header=False, box=None, pad_edge=False)
    t.add_row("types", shown(", ".join(f"{k} x{v}" for k, v in sorted(counts.items(),
                                                                        key=lambda kv: -kv[1]))))
    fb = plan["options"].get("fallbacks") or {}
    if fb:
        t.add_row("fallbacks", f"{len(fb)} tensors written in another type than planned "
                               "(rows that do not split into the planned blocks)")
    t.add_row("imatrix", "yes" if plan["options"].get("imatrix") else "no")
    note = report["model"].get("source_note")
    if note:
        t.add_row("[yellow]note[/yellow]", f"[yellow]{shown(note)}[/yellow]")
    t.add_row("serve", shown(f"cd {shlex.quote(str(out))} && {report['serve']['command']}"))
    c.print(t)


def show_quality(spec: ModelSpec, q: Any) -> None:
    c = console()
    c.print(f"[bold]quality[/bold] vs the F16 reference of {shown(spec.name)}  [dim]({q.n_windows} "
            f"windows of {q.window} tokens, {q.n_tokens} scored, every figure measured)[/dim]")
    t = Table(show_header=False, box=None, pad_edge=False)
    ci = q.mean_kl.ci95
    t.add_row("mean KL divergence", f"{q.mean_kl.value:.5f}" + (
        f" (95% CI {ci[0]:.5f}-{ci[1]:.5f} over windows)" if ci else " (one window: no interval)"))
    t.add_row("p99 KL divergence", f"{q.p99_kl.value:.5f}")
    t.add_row("top-1 agreement", f"{q.top1_agreement.value:.2%}")
    t.add_row("perplexity",
              f"{q.perplexity.value:.3f} (reference {q.reference_perplexity.value:.3f})")
    t.add_row("time", human_seconds(q.eval_seconds.value))
    if spec.source_quantization:
        t.add_row("[yellow]note[/yellow]", f"[yellow]the reference is the dequantized "
                  f"{shown(spec.source_quantization)} source[/yellow]")
    c.print(t)


def show_bench(b: Any) -> None:
    c = console()
    w = b.workload
    c.print(f"[bold]bench[/bold]  [dim]{b.n_requests} requests of {w.prompt_tokens} prompt + "
            f"{w.new_tokens} new tokens, {w.concurrency} concurrent, {b.threads} threads; every "
            "figure measured[/dim]")
    t = Table(show_header=False, box=None, pad_edge=False)
    t.add_row("time to first token", fig(b.ttft))
    t.add_row("per-token latency", fig(b.per_token))
    t.add_row("request latency", f"p50 {human_seconds(b.latency_p50.value)}, p95 "
              f"{human_seconds(b.latency_p95.value)}, p99 {human_seconds(b.latency_p99.value)}")
    t.add_row("decode throughput", f"{b.decode_tokens_per_s.value:.1f} tokens/s")
    t.add_row("peak resident memory", fig(b.peak_rss))
    c.print(t)
