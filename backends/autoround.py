"""AutoRound integer weights (W4A16/W8A16) by Intel's auto-round: SignRound tunes each decoder
block's rounding and clipping by signed gradient descent on the block's output error, then
saves a compressed-tensors checkpoint (its `llm_compressor` format), which transformers and
vLLM load.

The plan's per-module formats become AutoRound's `layer_config` (bits, group size, symmetry;
16 bits for a linear left in float). Calibration: the project's own token windows, passed as
tensors (AutoRound's default dataset would be downloaded).

Plan options: `iters` (default 50 with learning rate 5e-3: AutoRound's "light" recipe, whose
50 iterations took 694-745 s for a 135M model on this project's 2-core CPU machine; AutoRound's
own default is 200), `lr` (default 5e-3), `batch_size` (default 8).

AutoRound stores the tensors it leaves unquantized in bfloat16; they are rewritten in float16 as
the project's other checkpoints (the float source is float16: no value changes) and config.json
says so.
"""

from __future__ import annotations

import os
import shutil
import tempfile
import time
from pathlib import Path
from typing import Any

import torch

from backends.base import QuantizeOptions, Support, library_support
from backends.hf import llmc
from backends.hf.base import HfIntBackend, IntJob
from backends.registry import register
from kernels.affine import IntSpec

ITERS = 50
LR = 5e-3
BATCH = 8


def layer_config(job: IntJob) -> dict[str, dict[str, Any]]:
    """AutoRound's per-module settings of a plan: bits / group size / symmetry, 16 bits for a
    linear kept in float."""
    out: dict[str, dict[str, Any]] = {}
    for i, layer in enumerate(job.layers):
        for path, spec in layer.items():
            name = f"model.layers.{i}.{path}"
            if spec is None:
                out[name] = {"bits": 16}
            elif isinstance(spec, IntSpec):
                out[name] = {"bits": spec.bits, "group_size": spec.group_size,
                             "sym": spec.symmetric}
            else:
                raise TypeError(f"{name}: autoround writes integer weights, got {spec}")
    return out


def _to_float16(out_dir: Path) -> None:
    """bfloat16 tensors of the written shards as float16; config.json's dtype float16."""
    import json

    from safetensors.torch import load_file, save_file

    for f in sorted(out_dir.glob("*.safetensors")):
        state = load_file(str(f))
        if any(t.dtype == torch.bfloat16 for t in state.values()):
            state = {k: t.to(torch.float16) if t.dtype == torch.bfloat16 else t
                     for k, t in state.items()}
            tmp = f.with_name(f.name + ".tmp")
            save_file(state, str(tmp), metadata={"format": "pt"})
            os.replace(tmp, f)
    cfg_path = out_dir / "config.json"
    cfg = json.loads(cfg_path.read_text())
    cfg["dtype"] = "float16"
    cfg.pop("torch_dtype", None)
    cfg_path.write_text(json.dumps(cfg, indent=2, sort_keys=True) + "\n")


@register("autoround")
class AutoRoundBackend(HfIntBackend):
    """compressed-tensors W4A16/W8A16 checkpoints by AutoRound (SignRound)."""

    name = "autoround"
    needs_calibration = True

    def available(self) -> Support:
        base = super().available()
        if not base:
            return base
        from backends.gguf.autoround import QUIET

        return library_support("auto-round", ("auto_round",), "pip install auto-round", QUIET)

    def write(self, src: Path, job: IntJob, tokens: torch.Tensor | None, out_dir: Path,
              options: QuantizeOptions) -> tuple[float, dict[str, Any], dict[str, Any]]:
        import transformers

        from backends.hf import resolve_device, torch_threads
        from backends.hf.stream import track_peak_rss
        from backends.hf.writer import copy_tokenizer_files

        self.available()  # AutoRound's environment defaults, before its import
        from auto_round import AutoRound

        assert tokens is not None
        extra = options.extra
        t0 = time.perf_counter()
        with torch_threads(options.threads), track_peak_rss() as mem, \
                tempfile.TemporaryDirectory(prefix=".autoround-", dir=out_dir) as tmp:
            model = transformers.AutoModelForCausalLM.from_pretrained(
                str(src), dtype=torch.float32, trust_remote_code=False)
            tok = transformers.AutoTokenizer.from_pretrained(str(src), trust_remote_code=False)
            ar = AutoRound(model, tokenizer=tok, scheme="W4A16", layer_config=layer_config(job),
                           dataset=[row.unsqueeze(0) for row in tokens],
                           iters=int(extra.get("iters", ITERS)), lr=float(extra.get("lr", LR)),
                           nsamples=int(tokens.shape[0]), seqlen=int(tokens.shape[1]),
                           batch_size=min(int(extra.get("batch_size", BATCH)),
                                          int(tokens.shape[0])),
                           device_map=resolve_device("auto"), seed=options.seed)
            ar.quantize_and_save(tmp, format="llm_compressor")
            written = next(p.parent for p in Path(tmp).rglob("config.json"))
            for f in written.iterdir():
                shutil.move(str(f), str(out_dir / f.name))
        _to_float16(out_dir)
        copy_tokenizer_files(src, out_dir, keep=True)
        seconds = time.perf_counter() - t0
        return (seconds, mem.figure("peak RSS while AutoRound ran"),
                llmc.written_config(out_dir))

    def written_options(self, plan: Any, job: IntJob, options: QuantizeOptions) -> dict[str, Any]:
        import auto_round

        extra = options.extra
        return {**super().written_options(plan, job, options),
                "quantizer": f"auto-round {auto_round.__version__} (SignRound)",
                "iters": int(extra.get("iters", ITERS)), "lr": float(extra.get("lr", LR))}
