"""From a QuantPlan to llama.cpp's own quantizer, `llama_model_quantize`, one type per tensor.

How the plan gets through (src/llama-quant.cpp of the vendored llama.cpp, "l. N" below):
- every tensor llama.cpp may quantize gets an anchored exact-name pattern in `tt_overrides`
  (`^blk\\.0\\.attn_q\\.weight$`; std::regex_search, first match wins, l. 746-761). Patterns are
  only consulted when the file type's default type is quantized (l. 744), so the ftype always is;
- `pure` is set, so the preset mixture (llama_tensor_get_type_impl) never touches a tensor;
- token_embd / output types go through `token_embedding_type` / `output_tensor_type`, which win
  before the patterns (l. 721-740) and skip the shape fallback: we pass them already fallen back;
- a row that does not split into the type's blocks falls back (tensor_type_fallback, l. 395-441),
  ported as advisor.formats.fallback; 1-D tensors, norms and the like are never quantized
  (tensor_allows_quantization, l. 291) and keep the source type;
- the importance matrix is read by name with ne[0] * ne[2] values (l. 1276-1296).
"""

from __future__ import annotations

import ctypes
import logging
import re
from collections import Counter
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from advisor.errors import AdvisorError, BadInput
from advisor.formats import fallback, ggml_type, is_preset, preset, preset_names
from advisor.formats.presets import Preset, _allows_quantization, _n_dims
from advisor.inspect.gguf_header import read_header
from advisor.modelspec import ModelSpec
from advisor.plan import QuantPlan
from backends.gguf.imatrix import Imatrix
from backends.gguf.runtime import llama_log_routed

log = logging.getLogger(__name__)

# What ggml_quantize_chunk can write: the default types of llama.cpp's file types, and floats.
QUANTIZE_TARGETS = frozenset(
    {preset(n).default_type for n in preset_names()} | {"F32", "F16", "BF16"}
)
# tensor_requires_imatrix (l. 856-875): these tensors never need one.
_IMATRIX_EXEMPT = ("token_embd.weight", "per_layer_token_embd.weight", "output.weight")


@dataclass(frozen=True)
class TensorTarget:
    """One tensor of the GGUF being quantized: its type there, in the plan, and as written."""

    name: str
    source: str
    planned: str
    expected: str  # what llama.cpp writes: fallback or kept type applied
    quantizable: bool  # tensor_allows_quantization()
    row_size: int  # ne[0]
    n_params: int

    @property
    def requantized(self) -> bool:
        return self.quantizable and self.expected != self.source


@dataclass(frozen=True)
class QuantJob:
    """Everything llama_model_quantize is told for one plan."""

    ftype: Preset
    file_type: int  # general.file_type written to the file
    targets: tuple[TensorTarget, ...]

    @property
    def file_type_name(self) -> str:
        """The llama.cpp file type the written file declares (Q4_K_M, F16, ...)."""
        return next((n for n in preset_names() if preset(n).ftype == self.file_type),
                    self.ftype.name)

    def requires_imatrix(self) -> list[str]:
        """Tensors llama.cpp refuses to write without importance data (l. 856-875, 1298)."""
        return [t.name for t in self.targets
                if t.requantized and t.name not in _IMATRIX_EXEMPT
                and (ggml_type(t.expected).requires_imatrix
                     or (t.expected == "Q2_K" and self.ftype.name == "Q2_K_S"))]

    def benefits_from_imatrix(self) -> bool:
        """Some tensor is quantized by a quantizer that reads the importance (formats.ggml)."""
        return any(t.requantized and ggml_type(t.expected).uses_imatrix for t in self.targets)


def _choose_ftype(plan: QuantPlan, targets: list[TensorTarget]) -> tuple[Preset, int]:
    """A file type whose default is quantized (so the overrides apply), and general.file_type."""
    label = plan.label.upper()
    file_type: int | None = None
    if is_preset(label):
        p = preset(label)
        if ggml_type(p.default_type).is_quantized:
            return p, p.ftype
        file_type = p.ftype
    weights: Counter[str] = Counter()
    for t in targets:
        if t.quantizable:
            weights[t.expected] += t.n_params
    quantized = {k: v for k, v in weights.items() if ggml_type(k).is_quantized}
    if quantized:
        dominant = max(quantized, key=lambda k: quantized[k])
        # Q2_K_S is left out: it makes every Q2_K tensor require an imatrix (l. 869)
        candidates = [preset(n) for n in preset_names()
                      if preset(n).default_type == dominant and n != "Q2_K_S"]
        by_name = {c.name: c for c in candidates}
        chosen = by_name.get(dominant) or by_name.get(f"{dominant}_M") or (
            candidates[0] if candidates else preset("Q8_0"))
        return chosen, chosen.ftype if file_type is None else file_type
    if file_type is None and weights:
        top = max(weights, key=lambda k: weights[k])
        file_type = preset(top).ftype if is_preset(top) else None
    q8 = preset("Q8_0")
    return q8, q8.ftype if file_type is None else file_type


def plan_job(src: ModelSpec, plan: QuantPlan) -> QuantJob:
    """Check the plan against the GGUF to quantize and predict what llama.cpp writes."""
    names = {t.canonical for t in src.tensors}
    unknown = sorted(set(plan.tensor_formats) - names)
    if unknown:
        raise BadInput(f"the plan names {len(unknown)} tensors the model does not have: "
                       f"{', '.join(unknown[:4])}", "build the plan from this model's ModelSpec")
    targets = []
    for t in src.tensors:
        planned = ggml_type(plan.tensor_formats.get(t.canonical, t.dtype)).name
        quantizable = _allows_quantization(t.canonical, _n_dims(t.shape), src.architecture, True)
        if not quantizable:
            expected = t.dtype
        elif planned == t.dtype:
            expected = planned  # l. 1215: same type, the data is copied
        else:
            if planned not in QUANTIZE_TARGETS:
                raise BadInput(f"llama.cpp cannot quantize to {planned} ({t.canonical})",
                               f"use one of {', '.join(sorted(QUANTIZE_TARGETS))}")
            expected = fallback(planned, t.row_size)
        targets.append(TensorTarget(
            name=t.canonical, source=t.dtype, planned=planned, expected=expected,
            quantizable=quantizable, row_size=t.row_size, n_params=t.n_params))
    ftype, file_type = _choose_ftype(plan, targets)
    return QuantJob(ftype=ftype, file_type=file_type, targets=tuple(targets))


def _imatrix_array(src: Path, imatrix: Imatrix, keep: list[Any]) -> Any:
    """llama_model_imatrix_data[] terminated by a null name; arrays appended to `keep`.

    Only entries of the size llama.cpp checks (ne[0] * ne[2], l. 1283) are passed: a mismatch
    would abort the whole quantization."""
    import llama_cpp

    entries = []
    for t in read_header(src).tensors:
        values = imatrix.values.get(t.name)
        if values is None:
            continue
        need = t.shape[-1] * (t.shape[-3] if len(t.shape) >= 3 else 1)
        if values.size != need:
            log.warning("imatrix entry %s has %d values, the tensor needs %d: not used",
                        t.name, values.size, need)
            continue
        arr = np.ascontiguousarray(values, dtype=np.float32)
        keep.append(arr)
        entries.append((t.name.encode(), arr))
    out = (llama_cpp.llama_model_imatrix_data * (len(entries) + 1))()
    for i, (name, arr) in enumerate(entries):
        keep.append(name)
        out[i].name = name
        out[i].data = arr.ctypes.data_as(ctypes.POINTER(ctypes.c_float))
        out[i].size = arr.size
    out[len(entries)].name = None
    keep.append(out)
    return ctypes.cast(out, ctypes.POINTER(llama_cpp.llama_model_imatrix_data))


def quantize_file(src: Path, dst: Path, *, ftype: int, overrides: dict[str, str] | None = None,
                  output_type: str | None = None, token_embd_type: str | None = None,
                  imatrix: Imatrix | None = None, pure: bool = False,
                  file_type: int | None = None, threads: int = 0) -> None:
    """One llama_model_quantize call. `overrides` maps exact tensor names to GGML types; with
    none, this is `llama-quantize [--imatrix] src dst FTYPE` (the preset path)."""
    import llama_cpp

    keep: list[Any] = []  # every buffer the C side points to stays referenced until it returns
    params = llama_cpp.llama_model_quantize_default_params()
    params.nthread = threads
    params.ftype = ftype
    params.allow_requantize = True  # sources may be quantized already (the embedded one is Q4_1)
    params.quantize_output_tensor = True
    params.pure = pure
    if output_type is not None:
        params.output_tensor_type = ggml_type(output_type).type_id
    if token_embd_type is not None:
        params.token_embedding_type = ggml_type(token_embd_type).type_id
    if overrides:
        arr = (llama_cpp.llama_model_tensor_override * (len(overrides) + 1))()
        for i, (name, tt) in enumerate(overrides.items()):
            pattern = f"^{re.escape(name)}$".encode()
            keep.append(pattern)
            arr[i].pattern = pattern
            arr[i].type = ggml_type(tt).type_id
        arr[len(overrides)].pattern = None
        keep.append(arr)
        ptr_type = ctypes.POINTER(llama_cpp.llama_model_tensor_override)
        params.tt_overrides = ctypes.cast(arr, ptr_type)
    if imatrix is not None:
        params.imatrix = _imatrix_array(src, imatrix, keep)
    if file_type is not None and file_type != ftype:
        kv = (llama_cpp.llama_model_kv_override * 2)()  # zeroed: kv[1].key[0] == 0 ends it
        kv[0].tag = llama_cpp.LLAMA_KV_OVERRIDE_TYPE_INT
        kv[0].key = b"general.file_type"
        kv[0].value.val_i64 = file_type  # type: ignore[union-attr]  # a ctypes union
        keep.append(kv)
        params.kv_overrides = ctypes.cast(kv, ctypes.POINTER(llama_cpp.llama_model_kv_override))
    with llama_log_routed() as msgs:
        rc = llama_cpp.llama_model_quantize(str(src).encode(), str(dst).encode(),
                                            ctypes.byref(params))
    if rc != 0:
        Path(dst).unlink(missing_ok=True)
        why = next((m for m in reversed(msgs) if "failed to quantize" in m),
                   msgs[-1] if msgs else f"code {rc}")
        raise AdvisorError(f"llama.cpp could not quantize {src}: {why}")


def run_job(src: Path, dst: Path, job: QuantJob, imatrix: Imatrix | None,
            threads: int = 0) -> None:
    """Write `job` with per-tensor overrides (and the importance matrix, if any)."""
    by_name = {t.name: t for t in job.targets if t.quantizable}
    special = {n: by_name[n].expected for n in ("output.weight", "token_embd.weight")
               if n in by_name}
    quantize_file(
        src, dst, ftype=job.ftype.ftype,
        overrides={n: t.expected for n, t in by_name.items()},
        output_type=special.get("output.weight"), token_embd_type=special.get("token_embd.weight"),
        imatrix=imatrix, pure=True, file_type=job.file_type,
        threads=threads)


def written_types(path: Path) -> dict[str, str]:
    """Tensor name -> GGML type name, read back from a GGUF file."""
    return read_header(path).types()
