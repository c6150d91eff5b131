"""`advisor quantize`: one plan, one backend, one atomic artifact directory."""

from __future__ import annotations

import json
import platform
import shlex
import sys
from datetime import datetime, timezone
from importlib import metadata
from pathlib import Path
from typing import Any

from advisor import formats
from advisor.artifact import check_out_dir, staging, write_report
from advisor.artifact.serving import serving_for
from advisor.errors import BadInput, redact
from advisor.estimate import Workload, estimate
from advisor.figures import BYTES, Figure, Origin
from advisor.hardware import HardwareProfile
from advisor.modelspec import ModelSpec
from advisor.plan import QuantPlan
from advisor.progress import Stages
from advisor.space.named import plan_for_format
from advisor.textdata import text_sha256
from backends import registry
from backends.base import QuantizeOptions

PLAN_FILE = "plan.json"
_VERSIONED = ("quant-advisor", "llama-cpp-python", "gguf", "torch", "transformers", "optuna")


def versions() -> dict[str, str]:
    out = {"python": platform.python_version()}
    for dist in _VERSIONED:
        try:
            out[dist] = metadata.version(dist)
        except metadata.PackageNotFoundError:
            continue
    return out


def provenance(seed: int, texts: dict[str, str]) -> dict[str, Any]:
    """What a reader needs to reproduce a number: versions, seed, text hashes, the command, and
    the llama.cpp build's own system line (the CPU features its kernels were built for and
    found, e.g. `AVX2 = 1 | AVX512 = 0`), since the same GGUF runs other kernels elsewhere."""
    return {
        "created": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        "versions": versions(),
        "seed": seed,
        "text_sha256": {k: text_sha256(v) for k, v in texts.items()},
        # quoted as a shell reads it, with any storage URL's password redacted
        "command": redact(shlex.join(["advisor", *sys.argv[1:]])),
        "platform": platform.platform(),
        "llama_cpp_system_info": _llama_system_info(),
    }


def _llama_system_info() -> str | None:
    try:
        import llama_cpp
    except ImportError:  # an HF-only install: no llama.cpp build to describe
        return None
    info: bytes = llama_cpp.llama_print_system_info()
    return info.decode(errors="replace").strip()


def load_plan_file(path: Path, spec: ModelSpec) -> QuantPlan:
    """A plan.json written by hand or by the advisor; every tensor must exist in the model."""
    try:
        data = json.loads(Path(path).read_text())
        if not isinstance(data, dict):
            raise ValueError(f"a JSON {type(data).__name__}, not an object")
        plan = QuantPlan.from_dict(data)
    except FileNotFoundError:
        raise BadInput(f"plan file {path} does not exist", "pass an existing plan.json") from None
    except RecursionError:  # JSON nested deeper than the interpreter's stack
        raise BadInput(f"plan file {path} is nested too deeply to be a plan",
                       'write {"backend": "gguf", "tensor_formats": {"name": "Q4_K", ...}}') \
            from None
    except (json.JSONDecodeError, UnicodeDecodeError, KeyError, ValueError, TypeError,
            AttributeError) as e:
        raise BadInput(f"plan file {path} is not a valid plan ({e})",
                       'write {"backend": "gguf", "tensor_formats": {"name": "Q4_K", ...}}') \
            from None
    names = {t.canonical for t in spec.tensors}
    unknown = sorted(set(plan.tensor_formats) - names)
    if unknown:
        raise BadInput(f"plan names {len(unknown)} tensors the model lacks ({unknown[0]}, ...)",
                       "use the llama.cpp names `advisor inspect --tensors` lists")
    if plan.backend == "gguf":
        bad = sorted({f for f in plan.tensor_formats.values() if not formats.is_ggml_type(f)})
        if bad:
            raise BadInput(f"plan uses unknown GGML types {', '.join(bad)}",
                           "use GGML type names such as Q4_K, Q6_K, Q8_0, F16")
        # tensors the plan leaves out keep what the source rules give: float ones stay F32/F16
        full = {t.canonical: plan.tensor_formats.get(t.canonical, _keep(t.dtype))
                for t in spec.tensors}
        plan = QuantPlan(plan.backend, full, plan.options, plan.label or Path(path).stem)
    return plan


def _keep(dtype: str) -> str:
    return dtype if dtype in ("F32", "F16", "BF16") else "F16"


def quantize_artifact(spec: ModelSpec, plan: QuantPlan, hw: HardwareProfile, out: Path,
                      options: QuantizeOptions, workload: Workload, stages: Stages,
                      calib_text: str, force: bool = False) -> dict[str, Any]:
    """Write the artifact for `plan` atomically; return its report. An artifact already at
    `out` is replaced only with `force`; `out` may not be or contain the source."""
    from backends import get_backend

    backend = get_backend(plan.backend)
    ok = backend.available()
    if not ok:
        raise BadInput(f"backend {plan.backend} cannot run here: {ok.reason}", "install it")
    check_out_dir(out, force, spec.path)
    with staging(out, force=force) as tmp:
        with stages.step(f"quantizing {spec.name} as {plan.label or plan.backend}"):
            written = backend.quantize(spec, plan, tmp, options)
        (tmp / PLAN_FILE).write_text(json.dumps(written.to_dict(), indent=2) + "\n")
        est = estimate(spec, written, hw, workload)
        served = backend.serves_on(hw)
        serving = serving_for(spec, written, hw, workload, options.context, options.memory_limit)
        files = backend.serve_files(tmp, written, hw, serving)
        for name, text in files.items():
            (tmp / name).write_text(text)
            if name.endswith(".sh"):
                (tmp / name).chmod(0o755)
        weights = sorted(p for p in tmp.iterdir() if p.suffix in (".gguf", ".safetensors"))
        report = {
            "kind": "artifact",
            "backend": written.backend,
            "label": written.label,
            "model": model_summary(spec),
            "hardware": {"name": hw.name, "source": hw.source},
            "serves_on_target": {"ok": served.ok, "reason": served.reason},
            "plan": written.to_dict(),
            "planned": plan.to_dict() if plan.digest() != written.digest() else None,
            "files": {p.name: p.stat().st_size for p in weights},
            # bytes on disk: an integer figure (measured)
            "size": Figure(sum(p.stat().st_size for p in weights), BYTES,
                           Origin.MEASURED).to_dict(),
            "estimate": est.to_dict(),
            "serve": {"files": sorted(files), "command": f"./{next(iter(files), 'serve.sh')}",
                      **serving.to_dict()},
            "measurements": {},
            "provenance": provenance(options.seed, {"calibration": calib_text}
                                     if written.options.get("imatrix")
                                     or written.options.get("calibration") else {}),
        }
        write_report(tmp, report)
    return report


def model_summary(spec: ModelSpec) -> dict[str, Any]:
    """The source as a report names it: `path` relative to the working directory when under it
    (else as given), the file name and a content digest (`sha256:` of a file, the memoised
    `identity:` of a directory), so a report attached to a ticket names the model without this
    machine's layout."""
    from advisor.artifact.cache import file_identity, file_sha256

    q = spec.source_quantization
    src = Path(spec.path)
    try:
        shown = str(src.resolve().relative_to(Path.cwd().resolve()))
    except ValueError:
        shown = spec.path
    digest = f"identity:{file_identity(src)}" if src.is_dir() else f"sha256:{file_sha256(src)}"
    return {
        "name": spec.name, "path": shown, "file": src.name, "digest": digest,
        "format": spec.format.value,
        "architecture": spec.architecture, "n_params": spec.n_params,
        "source_quantization": q,
        "source_note": (f"the source is already quantized ({q}): its reference is the "
                        f"dequantized {q} weights, so re-quantizing to {q} looks nearly free")
        if q else None,
    }


def resolve_plan(spec: ModelSpec, preset: str | None, plan_file: str | None,
                 imatrix: bool, group_size: int, backend: str = "gguf",
                 bits: int | None = None) -> QuantPlan:
    if preset is None and plan_file is None and backend != "gguf":
        # `--backend B --bits N` without --preset: the scheme B writes at N bits (4 first)
        offered = sorted({b for b in (4, 8) if registry.bits_scheme(backend, b)})
        scheme = registry.bits_scheme(backend, bits or (offered or [8])[0])
        if scheme is None:
            raise BadInput(f"--backend {backend} does not write {bits}-bit weights",
                           "pick --bits from: " + (", ".join(map(str, offered)) or "4, 8"))
        preset = scheme
    if (preset is None) == (plan_file is None):
        raise BadInput("give exactly one of --preset and --plan", "e.g. --preset Q4_K_M")
    if plan_file is not None:
        return load_plan_file(Path(plan_file), spec)
    assert preset is not None
    from advisor.space.named import QUANT_SCHEMES, canonical_format

    hf = canonical_format(preset) in QUANT_SCHEMES
    return plan_for_format(spec, preset, group_size=group_size, imatrix=imatrix,
                           backend=backend if hf and backend != "gguf" else None)
