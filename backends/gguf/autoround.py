"""AutoRound's GGUF export as a second way to realize a GGUF plan (plan option
`quantizer: "autoround"`, `advisor quantize --gguf-quantizer autoround`): Intel's auto-round
quantizes the float model into llama.cpp's own types (its port of llama.cpp's K-quant search,
and with `iters` > 0 SignRound's tuned rounding per decoder block on the calibration windows)
and writes the .gguf; llama.cpp loads and serves it as any other.

The plan's per-tensor GGML types become AutoRound's `layer_config` (one entry per linear and for
the embedding / LM head), under an AutoRound format (a stock preset's own; a searched plan's
commonest type's). AutoRound applies its own rules on top: its port of llama.cpp's preset
mixing bumps some attn_v / ffn_down tensors, a requested type takes the family of the format's
main type (q4_0 becomes q4_k inside a K-quant format), and its fallbacks where 256-value blocks
do not divide a row differ from llama.cpp's (q5_0 where llama.cpp writes q5_1). The file is
read back and every tensor written in another type than planned is recorded in the plan's
`fallbacks`; the recommend pipeline judges the candidate on its measured size and quality.
Types AutoRound does not write (the IQ family, TQ, ...) are refused before any work.

Memory: AutoRound holds the whole float32 model (as llm-compressor's oneshot does, see
backends.hf.llmc), so on a CPU host this path is for models whose float32 copy fits in memory;
llama.cpp's quantizer, the default, streams tensors from the file.

AutoRound runs in float32 (`amp=False`): with its default mixed precision the weights went
through bfloat16 before the export quantized them, and the embedded model's Q4_K_M measured
KL 0.0221 against 0.0215 in float32 (0.98x, 0.96-0.99; `advisor eval`, 5 windows, same plan
and file size).

Measured by `make bench SECTION=gguf-quantizers` (2026-12-07, 5 held-out windows, KL against
llama.cpp's own with its importance matrix, same plan): Q4_K_M on the embedded SmolLM2-135M
0.84x (0.76-0.91), same file size; on its rotated float-native copy 0.98x (0.93-1.03, not
resolved). At Q3_K_M AutoRound retyped 122-123 of the tensors llama.cpp writes as Q4_0 (its
fallback where 256-value blocks do not divide a row) to Q5_0, 9-11% larger files: the table
shows it, and recommend judges such a candidate on its measured size. 80-88 s per file on 2
cores, against llama.cpp's 4-6 s.
"""

from __future__ import annotations

import logging
import shutil
import tempfile
import time
from collections import Counter
from pathlib import Path
from typing import Any

from advisor.errors import BadInput
from advisor.modelspec import ModelSpec
from advisor.plan import QuantPlan
from backends.base import QuantizeOptions, Support, library_support

log = logging.getLogger(__name__)

ITERS = 0  # AutoRound's RTN mode (its K-quant search, no tuning): seconds, not minutes
FLOAT_TYPES = ("F16", "BF16", "F32")
# AutoRound's names of the GGML types it writes (auto_round.export.export_to_gguf.config)
TYPES = {"Q2_K": "gguf:q2_k", "Q3_K": "gguf:q3_k", "Q4_0": "gguf:q4_0", "Q4_1": "gguf:q4_1",
         "Q4_K": "gguf:q4_k", "Q5_0": "gguf:q5_0", "Q5_1": "gguf:q5_1", "Q5_K": "gguf:q5_k",
         "Q6_K": "gguf:q6_k", "Q8_0": "gguf:q8_0"}
# the AutoRound export format of a plan of mostly one type (K-quants: the "_s" variants, whose
# own mixing rules bump the fewest tensors above the plan)
FORMATS = {"Q2_K": "gguf:q2_k_s", "Q3_K": "gguf:q3_k_s", "Q4_0": "gguf:q4_0",
           "Q4_1": "gguf:q4_1", "Q4_K": "gguf:q4_k_s", "Q5_0": "gguf:q5_0", "Q5_1": "gguf:q5_1",
           "Q5_K": "gguf:q5_k_s", "Q6_K": "gguf:q6_k", "Q8_0": "gguf:q8_0"}
# llama.cpp presets AutoRound writes by its own port of their rules
PRESETS = ("Q2_K_S", "Q3_K_S", "Q3_K_M", "Q3_K_L", "Q4_K_S", "Q4_K_M", "Q5_K_S", "Q5_K_M",
           "Q4_0", "Q4_1", "Q5_0", "Q5_1", "Q6_K", "Q8_0")


# AutoRound's INFO lines (one per tensor written) bury the progress: WARNING and above, unless
# the user set AR_LOG_LEVEL (read when auto_round is first imported)
QUIET = {"AR_LOG_LEVEL": "WARNING"}


def available() -> Support:
    # sentencepiece: AutoRound's GGUF vocabulary writer imports it
    return library_support("auto-round", ("auto_round", "sentencepiece"),
                           "pip install auto-round sentencepiece", QUIET)


def check_plan(plan: QuantPlan) -> None:
    """Refuse, before any work, a plan with types AutoRound does not write."""
    bad = sorted({f for f in plan.tensor_formats.values()
                  if f not in TYPES and f not in FLOAT_TYPES})
    if bad:
        raise BadInput(f"AutoRound's GGUF export does not write {', '.join(bad)}",
                       f"plan only {', '.join(TYPES)} and float types for it, or use "
                       "--gguf-quantizer llama.cpp")


def module_names(model: Any, architecture: str, n_layers: int) -> dict[str, str]:
    """llama.cpp tensor name (blk.3.attn_q.weight) -> the HF module holding it."""
    import torch
    from gguf import get_tensor_name_map

    from backends.gguf.layers import gguf_arch

    tmap = get_tensor_name_map(gguf_arch(architecture), n_layers)
    out: dict[str, str] = {}
    for name, module in model.named_modules():
        if not isinstance(module, (torch.nn.Linear, torch.nn.Embedding)):
            continue
        found = tmap.get_type_and_name(f"{name}.weight", try_suffixes=(".weight",))
        if found is not None:
            out[found[1]] = name
    return out


def layer_config(plan: QuantPlan, names: dict[str, str]) -> dict[str, dict[str, Any]]:
    """AutoRound's per-module settings of the plan's GGML types (16 bits: kept in float)."""
    from auto_round.export.export_to_gguf.config import GGUF_INNER_CONFIG

    out: dict[str, dict[str, Any]] = {}
    for tensor, fmt in plan.tensor_formats.items():
        module = names.get(tensor)
        if module is None:
            continue
        if fmt in FLOAT_TYPES:
            out[module] = {"bits": 16, "data_type": "fp"}
        else:
            cfg = GGUF_INNER_CONFIG[TYPES[fmt]]
            out[module] = {k: cfg[k] for k in ("bits", "group_size", "sym", "data_type",
                                               "super_bits", "super_group_size") if k in cfg}
    return out


def export_format(plan: QuantPlan) -> str:
    """AutoRound's export format for the plan: a stock preset's own, else the one named by the
    plan's commonest K-quant type, else by its commonest type (AutoRound moves a module's
    requested bits into the family of its format's main type: under a q5_0 format a requested
    q4_k would become q4_0)."""
    if plan.label.upper() in PRESETS:
        return f"gguf:{plan.label.lower()}"
    counts = Counter(f for f in plan.tensor_formats.values() if f in TYPES)
    if not counts:
        raise BadInput("the plan quantizes no tensor", "plan at least one GGML type for it")
    k_quants = Counter({f: n for f, n in counts.items() if f.endswith("_K")})
    return FORMATS[(k_quants or counts).most_common(1)[0][0]]


def quantize(spec: ModelSpec, plan: QuantPlan, dst: Path,
             options: QuantizeOptions) -> dict[str, Any]:
    """Write `plan` into the GGUF `dst` with AutoRound; return what goes into the plan's options
    (quantizer, iters, seconds)."""
    import torch
    import transformers

    from backends.hf import resolve_device, torch_threads
    from backends.hf.base import calibration_windows
    from backends.hf.source import float_source

    check_plan(plan)
    available()  # its environment defaults, before the import
    import auto_round
    from auto_round import AutoRound

    src = float_source(spec)
    iters = int(plan.options.get("iters", ITERS))
    tokens = calibration_windows(src, options)
    fmt = export_format(plan)
    t0 = time.perf_counter()
    with torch_threads(options.threads), \
            tempfile.TemporaryDirectory(prefix=".autoround-", dir=dst.parent) as tmp:
        model = transformers.AutoModelForCausalLM.from_pretrained(
            str(src), dtype=torch.float32, trust_remote_code=False)
        tok = transformers.AutoTokenizer.from_pretrained(str(src), trust_remote_code=False)
        names = module_names(model, spec.architecture, spec.n_layers)
        ar = AutoRound(model, tokenizer=tok, scheme=fmt, layer_config=layer_config(plan, names),
                       dataset=[row.unsqueeze(0) for row in tokens], iters=iters,
                       nsamples=int(tokens.shape[0]), seqlen=int(tokens.shape[1]),
                       batch_size=min(8, int(tokens.shape[0])),
                       device_map=resolve_device("auto"), seed=options.seed, amp=False)
        try:
            ar.quantize_and_save(tmp, format=fmt)
        except (ValueError, KeyError, NotImplementedError, AssertionError) as e:
            # its converter knows fewer architectures than llama.cpp's (it raises ValueError
            # "Failed to detect model architecture", KeyError on an unknown tensor, ...)
            raise BadInput(f"AutoRound cannot write {spec.architecture} as GGUF "
                           f"({type(e).__name__}: {str(e)[:200]})",
                           "use --gguf-quantizer llama.cpp") from None
        written = sorted(Path(tmp).rglob("*.gguf"))
        if len(written) != 1:
            raise RuntimeError(f"AutoRound wrote {len(written)} .gguf files; expected one")
        shutil.move(str(written[0]), str(dst))
    seconds = time.perf_counter() - t0
    log.info("AutoRound wrote %s (%s, iters %d) in %.1f s", dst.name, fmt, iters, seconds)
    return {"quantizer": "autoround", "quantizer_version": f"auto-round {auto_round.__version__}",
            "autoround_format": fmt, "iters": iters, "calibration": True,
            "quantize_seconds": round(seconds, 1)}
