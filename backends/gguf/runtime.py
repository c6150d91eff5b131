"""llama.cpp through its C API (llama-cpp-python's ctypes bindings): one loaded GGUF and the Runner.

`LlamaSession` owns a model, a context and a batch, and decodes token batches choosing which
positions produce logits; the importance matrix (imatrix.py) and `GgufRunner` share it.
`llama_log_routed()` sends llama.cpp's log into Python logging and keeps its warnings and errors,
so a failing C call can say why.
"""

from __future__ import annotations

import ctypes
import logging
import os
import time
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import numpy as np

from advisor.errors import AdvisorError, BadInput

log = logging.getLogger(__name__)

# enum ggml_log_level (ggml.h): NONE 0, DEBUG 1, INFO 2, WARN 3, ERROR 4, CONT 5 (continue).
_WARN, _CONT = 3, 5


@contextmanager
def llama_log_routed() -> Iterator[list[str]]:
    """Route llama.cpp's log to this module's logger (DEBUG) while the block runs; yield the list
    that collects its warning and error lines. The previous callback is restored afterwards."""
    import llama_cpp

    lines: list[str] = []
    last_level = [0]

    def on_log(level: int, text: bytes | None, user_data: Any) -> None:
        msg = (text or b"").decode("utf-8", errors="replace")
        level = last_level[0] if level == _CONT else level
        last_level[0] = level
        if level >= _WARN and msg.strip():
            lines.append(msg.strip())
        log.debug("llama.cpp: %s", msg.rstrip())

    callback = llama_cpp.llama_log_callback(on_log)  # referenced until restored below
    prev_cb = llama_cpp.llama_log_callback()
    prev_ud = ctypes.c_void_p()
    llama_cpp.llama_log_get(ctypes.byref(prev_cb), ctypes.byref(prev_ud))
    llama_cpp.llama_log_set(callback, ctypes.c_void_p(0))
    try:
        yield lines
    finally:
        llama_cpp.llama_log_set(prev_cb, prev_ud)


def default_threads() -> int:
    """Cores this process may run on."""
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # macOS, Windows
        return os.cpu_count() or 1


class LlamaSession:
    """A GGUF loaded in llama.cpp with one context of `n_ctx` tokens (one sequence).
    `vocab_only`: the vocabulary alone (tokenize), no weights mapped and no context: the
    sensitivity stage's tokenizer must not map a whole float model (issue 17)."""

    def __init__(self, path: Path, *, n_ctx: int = 2048, threads: int = 0, n_batch: int = 512,
                 gpu_layers: int = 0, cb_eval: Any = None, vocab_only: bool = False) -> None:
        import llama_cpp

        self._llama = llama_cpp
        self.path = Path(path)
        if not self.path.is_file():
            raise BadInput(f"{self.path} does not exist", "quantize the model first")
        # llama.cpp aborts the process on some headers it cannot handle (a block count of 2^31:
        # exit 134, issue 22): the header is validated and bounded here first (~50 ms)
        from advisor.inspect.bounds import check_spec
        from advisor.inspect.gguf_source import read_gguf

        check_spec(read_gguf(self.path))
        llama_cpp.llama_backend_init()
        self._cb_eval = cb_eval  # the C side keeps only a pointer: keep the callback alive
        self.n_ctx = int(n_ctx)
        self.n_batch = max(1, min(int(n_batch), self.n_ctx))
        n_threads = threads or default_threads()
        self._model: Any = None
        self._ctx: Any = None
        self._batch: Any = None
        mparams = llama_cpp.llama_model_default_params()
        mparams.n_gpu_layers = gpu_layers
        mparams.vocab_only = vocab_only
        with llama_log_routed() as msgs:
            self._model = llama_cpp.llama_model_load_from_file(str(self.path).encode(), mparams)
            if not self._model:
                why = " ".join(msgs[-3:])[-240:] or "no message"
                raise BadInput(f"llama.cpp cannot load {self.path}: {why}",
                               "check that the file is a complete GGUF model of an architecture "
                               "this llama.cpp build supports; convert or download it again")
            cparams = llama_cpp.llama_context_default_params()
            cparams.n_ctx = 0 if vocab_only else self.n_ctx
            cparams.n_batch = cparams.n_ubatch = self.n_batch
            cparams.n_threads = cparams.n_threads_batch = n_threads
            if cb_eval is not None:
                cparams.cb_eval = cb_eval
                cparams.cb_eval_user_data = None
                # keep every matmul on the host, where the callback reads its inputs
                cparams.op_offload = False
            self._ctx = None if vocab_only else llama_cpp.llama_init_from_model(self._model,
                                                                                 cparams)
            if not self._ctx and not vocab_only:
                self.close()
                raise AdvisorError(f"llama.cpp cannot create a context for {self.path}: "
                                   f"{' '.join(msgs[-3:])}")
        self._vocab = llama_cpp.llama_model_get_vocab(self._model)
        self.n_vocab = int(llama_cpp.llama_vocab_n_tokens(self._vocab))
        self.add_bos = bool(llama_cpp.llama_vocab_get_add_bos(self._vocab))
        self.bos = int(llama_cpp.llama_vocab_bos(self._vocab))
        if not vocab_only:
            self._batch = llama_cpp.llama_batch_init(self.n_batch, 0, 1)

    def tokenize(self, text: str, add_special: bool = True) -> list[int]:
        """llama_tokenize: BOS added when the vocabulary asks for it; special tokens as text."""
        data = text.encode("utf-8")
        n = self._llama.llama_tokenize(self._vocab, data, len(data), None, 0, add_special, False)
        buf = (self._llama.llama_token * max(-n, n, 1))()
        n = self._llama.llama_tokenize(self._vocab, data, len(data), buf, len(buf), add_special,
                                       False)
        if n < 0:
            raise AdvisorError(f"llama_tokenize failed ({n}) on {len(data)} bytes")
        return list(buf[:n])

    def is_eog(self, token: int) -> bool:
        return bool(self._llama.llama_vocab_is_eog(self._vocab, token))

    def clear(self) -> None:
        """Empty the KV cache: the next decode starts a new sequence at position 0."""
        self._llama.llama_memory_clear(self._llama.llama_get_memory(self._ctx), True)

    def _decode(self, tokens: Sequence[int], pos0: int, all_outputs: bool) -> int:
        """One llama_decode of at most n_batch tokens; returns the number of output rows."""
        b = self._batch
        n = len(tokens)
        b.n_tokens = n
        for i, tok in enumerate(tokens):
            b.token[i] = tok
            b.pos[i] = pos0 + i
            b.n_seq_id[i] = 1
            b.seq_id[i][0] = 0
            b.logits[i] = all_outputs or i == n - 1
        rc = self._llama.llama_decode(self._ctx, b)
        if rc != 0:
            raise AdvisorError(f"llama_decode failed with code {rc} at position {pos0}")
        return n if all_outputs else 1

    def _check_fits(self, n: int) -> None:
        if n > self.n_ctx:
            raise BadInput(f"{n} tokens do not fit a context of {self.n_ctx}",
                           "load with a larger n_ctx or pass fewer tokens")

    def logits(self, tokens: Sequence[int], pos0: int = 0) -> np.ndarray:
        """Float32 logits [len(tokens), n_vocab] for every position, continuing at `pos0`."""
        self._check_fits(pos0 + len(tokens))
        out = np.empty((len(tokens), self.n_vocab), dtype=np.float32)
        for start in range(0, len(tokens), self.n_batch):
            part = tokens[start:start + self.n_batch]
            rows = self._decode(part, pos0 + start, all_outputs=True)
            ptr = self._llama.llama_get_logits(self._ctx)
            out[start:start + rows] = np.ctypeslib.as_array(ptr, shape=(rows, self.n_vocab))
        return out

    def decode_all(self, tokens: Sequence[int], pos0: int = 0) -> None:
        """Decode with every position an output (its logits left unread): what the importance
        matrix needs, since with fewer outputs the last layer skips the other rows."""
        self._check_fits(pos0 + len(tokens))
        for start in range(0, len(tokens), self.n_batch):
            self._decode(tokens[start:start + self.n_batch], pos0 + start, all_outputs=True)

    def last_logits(self, tokens: Sequence[int], pos0: int = 0) -> np.ndarray:
        """Logits [n_vocab] of the last position only (prompt processing, decode steps)."""
        self._check_fits(pos0 + len(tokens))
        if not tokens:
            raise ValueError("last_logits() needs at least one token")
        for start in range(0, len(tokens), self.n_batch):
            self._decode(tokens[start:start + self.n_batch], pos0 + start, all_outputs=False)
        ptr = self._llama.llama_get_logits_ith(self._ctx, -1)
        return np.ctypeslib.as_array(ptr, shape=(self.n_vocab,)).copy()

    def close(self) -> None:
        with llama_log_routed():  # freeing a context logs its buffer sizes
            if self._batch is not None:
                self._llama.llama_batch_free(self._batch)
                self._batch = None
            if self._ctx:
                self._llama.llama_free(self._ctx)
                self._ctx = None
            if self._model:
                self._llama.llama_model_free(self._model)
                self._model = None

    def __enter__(self) -> LlamaSession:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


class GgufRunner:
    """backends.base.Runner over llama.cpp: exact per-position logits and greedy decoding."""

    def __init__(self, path: Path, n_ctx: int = 2048, threads: int = 0,
                 gpu_layers: int = 0) -> None:
        self.session = LlamaSession(path, n_ctx=n_ctx, threads=threads, gpu_layers=gpu_layers)
        # The token llama.cpp's tokenizer puts first (None when the model adds no BOS); quality
        # windows start with it, as llama-perplexity's chunks do.
        self.bos_token: int | None = self.session.bos if self.session.add_bos else None

    def tokenize(self, text: str) -> list[int]:
        return self.session.tokenize(text)

    def logits(self, tokens: list[int]) -> np.ndarray:
        self.session.clear()
        return self.session.logits(tokens)

    def generate(self, tokens: list[int], max_new_tokens: int) -> tuple[list[int], list[float]]:
        """Greedy decode of exactly `max_new_tokens` (end-of-generation tokens do not stop it, as
        in llama-bench, so latency samples have the requested length)."""
        s = self.session
        s._check_fits(len(tokens) + max_new_tokens)
        s.clear()
        t0 = time.perf_counter()
        new: list[int] = []
        times: list[float] = []
        logits = s.last_logits(tokens)
        for i in range(max_new_tokens):
            tok = int(np.argmax(logits))
            new.append(tok)
            times.append(time.perf_counter() - t0)
            if i + 1 < max_new_tokens:
                logits = s.last_logits([tok], pos0=len(tokens) + i)
        return new, times

    def close(self) -> None:
        self.session.close()
