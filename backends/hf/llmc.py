"""llm-compressor's `oneshot` as the quantizer of an HF int backend: the plan's per-module
weight formats become compressed-tensors `config_groups`, the project's calibration windows a
local `datasets.Dataset` (nothing from the hub), and the result is saved compressed by
llm-compressor itself (its `save_pretrained(save_compressed=True)`), the checkpoint vLLM expects.

Versions: llm-compressor 0.14.0.1 declares transformers<=5.17 and compressed-tensors==0.19.0;
this project runs it beside transformers 5.24 and compressed-tensors 0.20.1, installed with
`pip install --no-deps` (the Makefile does; pyproject cannot declare it without pip refusing
the set). Its imports and the backends' tests pass there; `available()` says how to install it.

On CPU-only torch (this project's CI has no GPU) the model is calibrated in float32 (float16
matmuls are slow or missing on CPU) and cast to float16 before it is saved, as the project's
other HF checkpoints are stored.

Memory: `oneshot` holds the whole float32 model in memory on CPU (the sequential pipeline
onloads one layer at a time only onto an accelerator), so on a CPU host this path is for models
whose float32 copy fits in memory; the peak is measured and written into the plan.
"""

from __future__ import annotations

import logging
import os
import re
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch

from backends.base import QuantizeOptions, Support, library_support
from backends.hf.writer import CHECKPOINT_DTYPE
from kernels.affine import IntSpec

log = logging.getLogger(__name__)

PIN = "llmcompressor==0.14.0.1"
INSTALL = f"pip install datasets 'auto-round<=0.15.1' && pip install --no-deps {PIN}"


def quiet() -> None:
    """llm-compressor's logger writes to stdout (where `--json` output goes) from its import
    on: no console handler unless the user set LLM_COMPRESSOR_LOG_LEVEL. (Its
    LLM_COMPRESSOR_LOG_DISABLED would also skip registering the METRIC level GPTQ logs at, which
    then raises.) Call before importing it."""
    os.environ.setdefault("LLM_COMPRESSOR_LOG_LEVEL", "")


def available() -> Support:
    quiet()
    return library_support("llm-compressor", ("llmcompressor", "datasets"), INSTALL)


def weights_args(spec: IntSpec) -> dict[str, Any]:
    """compressed-tensors QuantizationArgs (as a dict) of an integer weight format."""
    grouped = spec.group_size > 0
    return {"num_bits": spec.bits, "type": "int", "symmetric": spec.symmetric,
            "strategy": "group" if grouped else "channel",
            "group_size": spec.group_size if grouped else None}


def config_groups(layers: tuple[dict[str, Any], ...]) -> tuple[dict[str, Any], list[str]]:
    """(config_groups, ignore) of a plan: one group per distinct weight format, its modules by
    exact name (anchored regexes: compressed-tensors matches `re:` targets from the start only),
    or every Linear when one format covers all decoder linears; the LM head and the linears
    left in float are ignored. Fused groups (q/k/v, gate/up) share a format already:
    backends.hf.base.plan_job refuses a plan that splits one."""
    by_spec: dict[IntSpec, list[str]] = {}
    floats: list[str] = []
    for i, layer in enumerate(layers):
        for path, spec in layer.items():
            name = f"model.layers.{i}.{path}"
            if spec is None:
                floats.append(name)
            elif not isinstance(spec, IntSpec):
                raise TypeError(f"{name}: llm-compressor path takes integer weights, got {spec}")
            else:
                by_spec.setdefault(spec, []).append(name)
    one = len(by_spec) == 1 and not floats
    groups = {}
    for k, (spec, names) in enumerate(sorted(by_spec.items(), key=lambda kv: kv[1][0])):
        targets = ["Linear"] if one else [f"re:^{re.escape(n)}$" for n in names]
        groups[f"group_{k}"] = {"targets": targets, "weights": weights_args(spec)}
    return groups, ["lm_head", *floats]


def dataset(tokens: torch.Tensor) -> Any:
    """The calibration windows [n, seq] as the `datasets.Dataset` oneshot tokenizes no further."""
    from datasets import Dataset

    ids = tokens.tolist()
    return Dataset.from_dict({"input_ids": ids, "attention_mask": [[1] * len(r) for r in ids]})


def run(src: Path, out_dir: Path, recipe: Callable[[dict[str, Any], list[str]], list[Any]],
        layers: tuple[dict[str, Any], ...], tokens: torch.Tensor | None,
        options: QuantizeOptions) -> tuple[float, dict[str, Any]]:
    """Quantize `src` with the modifiers `recipe(config_groups, ignore)` returns, calibrated on
    `tokens` (None: a calibration-free recipe), and save the compressed checkpoint and the
    tokenizer into `out_dir`. Returns the seconds it took and the measured peak memory."""
    import transformers

    quiet()
    from llmcompressor import oneshot

    from backends.hf import torch_threads
    from backends.hf.stream import track_peak_rss
    from backends.hf.writer import copy_tokenizer_files

    groups, ignore = config_groups(layers)
    t0 = time.perf_counter()
    with torch_threads(options.threads), track_peak_rss() as mem:
        torch.manual_seed(options.seed)
        model: Any = transformers.AutoModelForCausalLM.from_pretrained(
            str(src), dtype=torch.float32, trust_remote_code=False)
        kw: dict[str, Any] = {}
        if tokens is not None:
            kw = {"dataset": dataset(tokens), "max_seq_length": int(tokens.shape[1]),
                  "num_calibration_samples": int(tokens.shape[0]),
                  "shuffle_calibration_samples": False}
        model = oneshot(model=model, recipe=recipe(groups, ignore), **kw)
        model.to(CHECKPOINT_DTYPE)
        model.save_pretrained(str(out_dir), save_compressed=True)
    seconds = time.perf_counter() - t0
    copy_tokenizer_files(src, out_dir, keep=True)
    log.info("llm-compressor wrote %s in %.1f s (peak RSS +%.0f MiB)", out_dir.name, seconds,
             mem.added / 2**20)
    return seconds, mem.figure("peak RSS while llm-compressor ran")


def written_config(out_dir: Path) -> dict[str, Any]:
    """The quantization_config llm-compressor wrote into `out_dir`'s config.json."""
    import json

    cfg: dict[str, Any] = json.loads((out_dir / "config.json").read_text())["quantization_config"]
    return cfg
