"""A written Hugging Face checkpoint loaded by plain transformers on the CPU, as a `Runner`.

`AutoModelForCausalLM.from_pretrained(dir)` reads the compressed-tensors `quantization_config`
and decompresses the packed integers with the stored scales; the float32 compute dtype keeps the
CPU measurement free of float16 rounding (vLLM on a GPU computes in float16 with the same
integers and scales). The directory is checked first (no `auto_map`, no pickle-only weights), and
transformers is told never to run its code nor to read anything but safetensors.
"""

from __future__ import annotations

import time
from pathlib import Path

import numpy as np
import torch

from advisor.inspect.untrusted import check_hf_dir


class HfRunner:
    """Logits and greedy decoding of a transformers model directory on the CPU."""

    def __init__(self, model_dir: Path, threads: int = 0) -> None:
        import transformers

        check_hf_dir(model_dir)
        if threads:
            torch.set_num_threads(threads)
        self.model = transformers.AutoModelForCausalLM.from_pretrained(
            str(model_dir), dtype=torch.float32, use_safetensors=True, trust_remote_code=False)
        self.model.eval()
        self.tokenizer = transformers.AutoTokenizer.from_pretrained(str(model_dir),
                                                                    trust_remote_code=False)
        bos = self.tokenizer.bos_token_id
        self.bos_token: int | None = int(bos) if bos is not None else None

    def tokenize(self, text: str) -> list[int]:
        ids: list[int] = self.tokenizer(text, add_special_tokens=False)["input_ids"]
        return ids

    def logits(self, tokens: list[int]) -> np.ndarray:
        with torch.inference_mode():
            out = self.model(input_ids=torch.tensor([tokens]), use_cache=False)
        arr: np.ndarray = out.logits[0].float().numpy()
        return arr

    def generate(self, tokens: list[int], max_new_tokens: int) -> tuple[list[int], list[float]]:
        new: list[int] = []
        times: list[float] = []
        t0 = time.perf_counter()
        with torch.inference_mode():
            out = self.model(input_ids=torch.tensor([tokens]), use_cache=True)
            for _ in range(max_new_tokens):
                nxt = int(out.logits[0, -1].argmax())
                new.append(nxt)
                times.append(time.perf_counter() - t0)
                if len(new) == max_new_tokens:
                    break
                out = self.model(input_ids=torch.tensor([[nxt]]),
                                 past_key_values=out.past_key_values, use_cache=True)
        return new, times

    def close(self) -> None:
        del self.model
