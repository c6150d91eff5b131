"""What the HF checkpoint backends share (rtn, gptq, awq, fp8, smoothquant, nf4), as a private
package; this face re-exports only what needs no torch, so `import backends.hf` stays light.

    base.py     `HfQuantBackend` (the lifecycle: plan, stream layers, write) and `HfIntBackend`
    stream.py   one decoder layer of float weights at a time, with its captured inputs
    writer.py   compressed-tensors checkpoints (packing, quantization_config)
    llmc.py     llm-compressor's oneshot as a backend's quantizer (gptq): plan -> config_groups
    source.py   the float HF source of a GGUF model (dequantized once, cached)
    runner.py   a written checkpoint loaded with transformers, for measurement
    serve.py    vLLM's serve.sh, the transformers snippet, and which targets serve a scheme
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

from backends.hf.serve import serves_scheme

__all__ = ["DEVICES", "resolve_device", "serves_scheme", "torch_threads"]

DEVICES = ("auto", "cpu", "cuda", "mps")
"""`--device` values: where the torch stages run (ROCm builds of torch answer to "cuda")."""


def resolve_device(name: str) -> str:
    """The torch device `name` stands for: "auto" is cuda (CUDA or ROCm) when torch sees one,
    else mps (Apple), else cpu; an accelerator named but absent is bad input."""
    import torch

    from advisor.errors import BadInput

    have = {"cpu": True, "cuda": torch.cuda.is_available(),
            "mps": bool(getattr(torch.backends, "mps", None)) and torch.backends.mps.is_available()}
    if name == "auto":
        return next(d for d in ("cuda", "mps", "cpu") if have[d])
    if name not in have:
        raise BadInput(f"--device {name!r} is not a device", f"use one of {', '.join(DEVICES)}")
    if not have[name]:
        raise BadInput(f"--device {name}: torch sees no {name} device on this host",
                       "use --device auto or cpu, or install a torch build for it")
    return name


@contextmanager
def torch_threads(n: int) -> Iterator[None]:
    """Run the block with `n` torch intra-op threads (0: leave as is), restoring the previous
    count: the one way the project sets torch's threads (a loaded HfRunner keeps its own)."""
    import torch

    prev = torch.get_num_threads()
    if n > 0:
        torch.set_num_threads(n)
    try:
        yield
    finally:
        torch.set_num_threads(prev)
