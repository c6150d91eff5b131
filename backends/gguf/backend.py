"""The GGUF backend: llama.cpp's own quantizer writes the plan, llama.cpp runs and serves it.

Quantize: `llama_model_quantize` with one exact-name type override per tensor (quantize.py), an
importance matrix computed in llama.cpp from calibration text where a planned type reads one
(imatrix.py), and the written file read back so the returned plan is what is really on disk;
or, with plan option `quantizer: "autoround"`, AutoRound's GGUF export (autoround.py).
Load: `GgufRunner` (runtime.py). Serve: `serve.sh` and an Ollama `Modelfile` (serve.py).
"""

from __future__ import annotations

import logging
import time
from pathlib import Path

from advisor.artifact.serving import Serving
from advisor.errors import AdvisorError, BadInput
from advisor.hardware import HardwareProfile, Vendor
from advisor.modelspec import ModelSpec, SourceFormat
from advisor.plan import AUTOROUND, LLAMA_CPP, QuantPlan, gguf_quantizer
from advisor.textdata import default_calibration_text
from backends.base import QuantizeOptions, Runner, Support
from backends.gguf.imatrix import Imatrix, imatrix_for, values_digest
from backends.gguf.quantize import QuantJob, plan_job, run_job, written_types
from backends.gguf.runtime import GgufRunner
from backends.gguf.serve import serve_files
from backends.registry import register

log = logging.getLogger(__name__)

MODEL_FILE = "model.gguf"
# Importance-matrix chunks (512 tokens each) by default: llama.cpp's eval callback makes each
# chunk ~4x slower than a plain prefill (12 s per chunk on the 2-core CI machine), and on the
# embedded model 1 chunk already gave Q2_K KL 0.34 vs 0.36 for all 11 (0.50 without).
# QuantizeOptions.extra["imatrix_chunks"] = 0 uses the whole calibration text.
IMATRIX_CHUNKS = 4
_RUNTIME_BY_VENDOR = {Vendor.NVIDIA: "CUDA", Vendor.AMD: "ROCm/HIP", Vendor.APPLE: "Metal"}


def _gguf_source(spec: ModelSpec) -> tuple[Path, ModelSpec]:
    """The GGUF to quantize and its spec: the source itself, or the cached F16 conversion of an
    HF directory (converted on first use)."""
    if spec.format is SourceFormat.GGUF:
        return Path(spec.path), spec
    from advisor.inspect.gguf_source import read_gguf
    from backends.gguf.convert import cached_f16

    converted = cached_f16(spec)
    return converted, read_gguf(converted)


def gguf_file(path: str | Path) -> Path:
    """The model file of a GGUF artifact: the file itself, `model.gguf` in a directory, or the
    directory's only `.gguf` file."""
    p = Path(path)
    if p.is_file():
        return p
    if p.is_dir():
        if (p / "model.gguf").is_file():
            return p / "model.gguf"
        found = sorted(p.glob("*.gguf"))
        if len(found) == 1:
            return found[0]
        raise BadInput(f"{p} holds {len(found)} .gguf files; expected model.gguf or exactly one",
                       "pass the model file itself")
    raise BadInput(f"GGUF model {p} does not exist", "pass a .gguf file or an artifact directory")


@register("gguf")
class GgufBackend:
    """llama.cpp GGUF files: every GGML type and preset, CPU, CUDA, ROCm and Metal."""

    name = "gguf"

    def available(self) -> Support:
        try:
            import gguf  # noqa: F401
            import llama_cpp
        except ImportError as e:
            return Support(False, f"llama-cpp-python or gguf not installed: {e}; "
                                  "pip install llama-cpp-python gguf")
        return Support(True, f"llama-cpp-python {getattr(llama_cpp, '__version__', '?')}")

    def serves_on(self, hw: HardwareProfile) -> Support:
        acc = hw.primary
        if acc is None:
            return Support(True, "llama.cpp serves GGUF on the CPU")
        runtime = _RUNTIME_BY_VENDOR.get(acc.vendor, acc.vendor.value)
        return Support(True, f"llama.cpp serves GGUF on {acc.name} ({runtime}) and the CPU")

    def quantize(self, spec: ModelSpec, plan: QuantPlan, out_dir: Path,
                 options: QuantizeOptions) -> QuantPlan:
        if plan.backend != self.name:
            raise BadInput(f"plan {plan.label or plan.digest()} is for backend {plan.backend!r}",
                           "give the gguf backend a plan of GGML types")
        quantizer = gguf_quantizer(plan)
        if quantizer == AUTOROUND:
            return self._quantize_autoround(spec, plan, Path(out_dir), options)
        if quantizer != LLAMA_CPP:
            raise BadInput(f"GGUF quantizer {quantizer!r}",
                           f"use {LLAMA_CPP!r} (the default) or {AUTOROUND!r}")
        out_dir = Path(out_dir)
        out_dir.mkdir(parents=True, exist_ok=True)
        dst = out_dir / MODEL_FILE
        src, src_spec = _gguf_source(spec)
        job = plan_job(src_spec, plan)
        imatrix = self._imatrix(spec, src, job, options)
        t0 = time.perf_counter()
        run_job(src, dst, job, imatrix, options.threads)
        log.info("wrote %s (%s, %.1f MiB) in %.1f s", dst, plan.label or job.ftype.name,
                 dst.stat().st_size / 2**20, time.perf_counter() - t0)
        written = written_types(dst)
        surprises = {t.name: (t.expected, written.get(t.name)) for t in job.targets
                     if written.get(t.name) != t.expected}
        if surprises:  # our port of llama.cpp's rules disagrees with llama.cpp: say so loudly
            log.warning("llama.cpp wrote other types than predicted: %s", surprises)
        fallbacks = {t.name: [t.planned, written[t.name]] for t in job.targets
                     if written.get(t.name, t.planned) != t.planned}
        opts = {**plan.options, "imatrix": imatrix is not None, "fallbacks": fallbacks,
                "ftype": job.file_type_name}
        if imatrix is not None:
            opts["calibration_sha256"] = imatrix.text_sha256
            opts["imatrix_sha256"] = values_digest(imatrix.values)
        return QuantPlan(self.name, written, options=opts, label=plan.label)

    def _quantize_autoround(self, spec: ModelSpec, plan: QuantPlan, out_dir: Path,
                            options: QuantizeOptions) -> QuantPlan:
        """The plan written by AutoRound's GGUF export (backends.gguf.autoround); the tensors it
        wrote in other types than planned are the plan's `fallbacks`."""
        from backends.gguf import autoround

        ok = autoround.available()
        if not ok:
            raise BadInput(f"the autoround GGUF quantizer cannot run here: {ok.reason}",
                           "install it, or use --gguf-quantizer llama.cpp")
        autoround.check_plan(plan)
        out_dir.mkdir(parents=True, exist_ok=True)
        dst = out_dir / MODEL_FILE
        info = autoround.quantize(spec, plan, dst, options)
        written = written_types(dst)
        fallbacks = {n: [f, written[n]] for n, f in plan.tensor_formats.items()
                     if n in written and written[n] != f}
        missing = sorted(set(plan.tensor_formats) - set(written))
        if missing:
            raise AdvisorError(f"AutoRound's GGUF has no tensor {missing[0]} (and "
                               f"{len(missing) - 1} more)", "use --gguf-quantizer llama.cpp")
        if fallbacks:
            log.info("AutoRound wrote %d tensors in other types than planned", len(fallbacks))
        opts = {**plan.options, **info, "imatrix": False, "fallbacks": fallbacks}
        return QuantPlan(self.name, written, options=opts, label=plan.label)

    @staticmethod
    def _imatrix(spec: ModelSpec, src: Path, job: QuantJob,
                 options: QuantizeOptions) -> Imatrix | None:
        """The importance matrix when a planned type reads it (and the user allows it)."""
        required = job.requires_imatrix()
        if required and not options.imatrix:
            raise BadInput(f"{len(required)} tensors ({required[0]}, ...) are planned in types "
                           "llama.cpp writes only with an importance matrix",
                           "turn --imatrix on, or plan other types (IQ1/IQ2/IQ3_XXS need one)")
        if not (options.imatrix and job.benefits_from_imatrix()):
            return None
        if options.imatrix_file:  # the user's own (llama.cpp's formats), checked against us
            from backends.gguf.imatrix_file import check_covers, imatrix_sizes, load_imatrix_file

            given = load_imatrix_file(options.imatrix_file)
            sizes = imatrix_sizes({t.canonical: t.shape for t in spec.tensors})
            check_covers(given, sizes, required, options.imatrix_file)
            return given
        text = options.calib_text or default_calibration_text()
        chunks = int(options.extra.get("imatrix_chunks", IMATRIX_CHUNKS))
        imatrix = imatrix_for(src, text, key_path=Path(spec.path), threads=options.threads,
                              max_chunks=chunks)
        missing = [n for n in required if n not in imatrix.values]
        if missing:
            raise AdvisorError(f"the importance matrix has no data for {missing[0]} "
                               f"(and {len(missing) - 1} more)", "use a longer calibration text")
        return imatrix

    def load(self, artifact_dir: Path, n_ctx: int = 2048, threads: int = 0) -> Runner:
        import llama_cpp

        gpu = -1 if llama_cpp.llama_supports_gpu_offload() else 0
        return GgufRunner(gguf_file(artifact_dir), n_ctx=n_ctx, threads=threads,
                          gpu_layers=gpu)

    def serve_files(self, artifact_dir: Path, plan: QuantPlan, hw: HardwareProfile,
                    serving: Serving) -> dict[str, str]:
        return serve_files(gguf_file(artifact_dir), plan, hw, serving)
