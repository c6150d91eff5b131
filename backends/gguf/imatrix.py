"""Importance matrix: per weight matrix, the mean over calibration tokens of x_j^2 for each input
column j, computed the way llama.cpp's `llama-imatrix` does, and cached.

It runs inside llama.cpp itself, with the same eval callback as tools/imatrix/imatrix.cpp
(`IMatrixCollector::collect_imatrix`, l. 234-380): every MUL_MAT whose weight is named `blk.*`
(the output matmul only with --process-output, off by default; a tied LM head multiplies by
`token_embd.weight`, which the tool never collects either) and every MUL_MAT_ID (experts) hands its
F32 activations to us; we sum x^2 per column and count rows. Values are sums / counts as
`load_imatrix` in tools/quantize/quantize.cpp (l. 195-215) hands them to the quantizer. Names are
llama.cpp's own, so no name mapping is needed, and the activations are those of the runtime that
will serve the model. Chunks follow `compute_imatrix` (l. 791-900): 512 tokens, KV cache cleared
per chunk, the first token of a chunk replaced by BOS when the vocabulary adds one, logits
requested for every token (otherwise the last layer skips rows).
"""

from __future__ import annotations

import ctypes
import hashlib
import json
import logging
import os
import time
from collections.abc import Mapping
from dataclasses import dataclass
from functools import cached_property
from pathlib import Path
from typing import Any

import numpy as np

from advisor.errors import AdvisorError, BadInput
from advisor.textdata import text_sha256
from backends.gguf.runtime import LlamaSession, llama_log_routed

log = logging.getLogger(__name__)

CHUNK_TOKENS = 512  # llama-imatrix's default -c 512 (imatrix.cpp main, l. 1082)
MIN_ROWS = 16  # "why are small batches ignored (<16 tokens)?" (collect_imatrix, l. 248)
ALGORITHM_VERSION = 1  # part of the cache key: bump when the numbers would change
_GGML_TYPE_F32 = 0
_GGML_MAX_DIMS, _GGML_MAX_SRC, _GGML_MAX_OP_PARAMS, _GGML_MAX_NAME = 4, 10, 64, 64


class _GgmlTensor(ctypes.Structure):
    """struct ggml_tensor (ggml.h of the vendored llama.cpp, l. 685-717)."""


_GgmlTensor._fields_ = [
    ("type", ctypes.c_int),
    ("buffer", ctypes.c_void_p),
    ("ne", ctypes.c_int64 * _GGML_MAX_DIMS),
    ("nb", ctypes.c_size_t * _GGML_MAX_DIMS),
    ("op", ctypes.c_int),
    ("op_params", ctypes.c_int32 * (_GGML_MAX_OP_PARAMS // 4)),
    ("flags", ctypes.c_int32),
    ("src", ctypes.POINTER(_GgmlTensor) * _GGML_MAX_SRC),
    ("view_src", ctypes.POINTER(_GgmlTensor)),
    ("view_offs", ctypes.c_size_t),
    ("data", ctypes.c_void_p),
    ("name", ctypes.c_char * _GGML_MAX_NAME),
    ("extra", ctypes.c_void_p),
    ("padding", ctypes.c_char * 8),
]


@dataclass(frozen=True)
class Imatrix:
    """llama.cpp tensor name -> float32 importance, ne[0] values per matrix (x n_expert)."""

    values: dict[str, np.ndarray]
    n_tokens: int
    n_chunks: int
    text_sha256: str

    def save(self, path: Path) -> None:
        meta = json.dumps({"n_tokens": self.n_tokens, "n_chunks": self.n_chunks,
                           "text_sha256": self.text_sha256, "version": ALGORITHM_VERSION})
        tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp.npz")
        arrays: dict[str, Any] = {"__meta__": np.array(meta), **self.values}
        np.savez(tmp, **arrays)
        os.replace(tmp, path)

    @classmethod
    def load(cls, path: Path) -> Imatrix:
        with np.load(path, allow_pickle=False) as z:
            meta = json.loads(str(z["__meta__"]))
            values = {k: z[k].astype(np.float32) for k in z.files if k != "__meta__"}
        return cls(values, int(meta["n_tokens"]), int(meta["n_chunks"]), meta["text_sha256"])


class _Ggml:
    """The few libggml-base functions the collector needs, and the op ids by name."""

    def __init__(self) -> None:
        import llama_cpp

        default = Path(llama_cpp.__file__).parent / "lib"
        libdir = Path(os.environ.get("LLAMA_CPP_LIB_PATH") or default)
        libs = sorted(libdir.glob("libggml-base.*")) + sorted(libdir.glob("ggml-base.*"))
        if not libs:
            raise AdvisorError(f"libggml-base not found in {libdir}",
                               "reinstall llama-cpp-python")
        lib = ctypes.CDLL(str(libs[0]))  # already loaded by libllama: same handle
        lib.ggml_op_name.restype = ctypes.c_char_p
        lib.ggml_op_name.argtypes = [ctypes.c_int]
        lib.ggml_nbytes.restype = ctypes.c_size_t
        lib.ggml_nbytes.argtypes = [ctypes.c_void_p]
        lib.ggml_backend_buffer_is_host.restype = ctypes.c_bool
        lib.ggml_backend_buffer_is_host.argtypes = [ctypes.c_void_p]
        lib.ggml_backend_tensor_get.restype = None
        lib.ggml_backend_tensor_get.argtypes = [ctypes.c_void_p, ctypes.c_void_p,
                                                ctypes.c_size_t, ctypes.c_size_t]
        self.lib = lib
        ops: dict[str, int] = {}
        for i in range(1024):  # enum ggml_op: ask the library, do not hard-code the numbering
            name = lib.ggml_op_name(i)
            if name is None or name == b"COUNT" or name in ops:
                break
            ops[name.decode()] = i
        self.mul_mat, self.mul_mat_id = ops["MUL_MAT"], ops["MUL_MAT_ID"]

    def read(self, t: _GgmlTensor, ptr: int, dtype: type) -> np.ndarray:
        """The tensor's elements as an array of shape (ne3, ne2, ne1, ne0), strides from nb."""
        nbytes = int(self.lib.ggml_nbytes(ptr))
        if t.buffer and not self.lib.ggml_backend_buffer_is_host(t.buffer):
            raw = np.empty(nbytes, dtype=np.uint8)  # device memory: copy out (imatrix.cpp l. 258)
            self.lib.ggml_backend_tensor_get(ptr, raw.ctypes.data, 0, nbytes)
        else:
            view = memoryview((ctypes.c_char * nbytes).from_address(t.data)).cast("B")
            raw = np.frombuffer(view, dtype=np.uint8)
        ne, nb = list(t.ne), list(t.nb)
        return np.lib.stride_tricks.as_strided(
            raw.view(np.uint8)[: nbytes - nbytes % np.dtype(dtype).itemsize].view(dtype),
            shape=(ne[3], ne[2], ne[1], ne[0]), strides=(nb[3], nb[2], nb[1], nb[0]),
            writeable=False)


class _Collector:
    """The eval callback: IMatrixCollector::collect_imatrix, sums in float64."""

    def __init__(self, process_output: bool = False) -> None:
        self.ggml = _Ggml()
        self.process_output = process_output
        self.sums: dict[str, np.ndarray] = {}  # name -> [n_mat, ne0]
        self.counts: dict[str, np.ndarray] = {}  # name -> [n_mat]
        self.error: BaseException | None = None

    @cached_property
    def callback(self) -> Any:
        import llama_cpp

        return llama_cpp.ggml_backend_sched_eval_callback(self._on_eval)

    def _on_eval(self, t_ptr: int, ask: bool, user_data: Any) -> bool:
        # an exception cannot cross the C boundary: keep it, stop collecting, raise it afterwards
        if self.error is not None:
            return False
        try:
            return self._collect(t_ptr, ask)
        except Exception as e:  # noqa: BLE001 - re-raised by compute_imatrix
            self.error = e
            return False

    def _collect(self, t_ptr: int, ask: bool) -> bool:
        t = _GgmlTensor.from_address(t_ptr)
        if t.op not in (self.ggml.mul_mat, self.ggml.mul_mat_id):
            return False
        src0, src1 = t.src[0].contents, t.src[1].contents
        name = src0.name.decode(errors="replace")
        name = name.split("#")[1] if "#" in name else name  # filter_tensor_name (l. 79-94)
        if ask:  # l. 245-252
            if t.op == self.ggml.mul_mat_id:
                return True
            return (src1.ne[1] >= MIN_ROWS and src1.type == _GGML_TYPE_F32
                    and (name.startswith("blk.")
                         or (self.process_output and name == "output.weight")))
        x = self.ggml.read(src1, ctypes.addressof(src1), np.float32)
        if t.op == self.ggml.mul_mat_id:
            ids_t = t.src[2].contents
            ids = self.ggml.read(ids_t, ctypes.addressof(ids_t), np.int32)[0, 0]  # [tok, n_ids]
            self._add_experts(name, x[0], ids, int(src0.ne[2]))
        else:
            self._add_dense(name, x, int(src0.ne[2]), int(src0.ne[3]))
        return True

    def _slot(self, name: str, n_mat: int, ne0: int) -> tuple[np.ndarray, np.ndarray]:
        if name not in self.sums:
            self.sums[name] = np.zeros((n_mat, ne0))
            self.counts[name] = np.zeros(n_mat, dtype=np.int64)
        if self.sums[name].shape != (n_mat, ne0):  # "inconsistent size for %s" (l. 300, 345)
            raise AdvisorError(f"imatrix: inconsistent size for {name}: "
                               f"{self.sums[name].shape} vs {(n_mat, ne0)}")
        return self.sums[name], self.counts[name]

    def _add_dense(self, name: str, x: np.ndarray, ne2: int, ne3: int) -> None:
        """l. 330-376: a 2-D weight (or a stack of them) times F32 rows; one count per matrix."""
        n_mat = ne2 * ne3
        sums, counts = self._slot(name, n_mat, x.shape[3])
        sq = np.einsum("abrj,abrj->abj", x, x, dtype=np.float64)  # sum over rows of x^2
        for i3 in range(x.shape[0]):
            for i2 in range(x.shape[1]):
                sums[(i3 % ne3) * ne2 + (i2 % ne2)] += sq[i3, i2]
        counts += x.shape[0] * x.shape[1] * x.shape[2] // n_mat
        if not np.isfinite(sums).all():
            raise AdvisorError(f"imatrix: non-finite activations in {name}")

    def _add_experts(self, name: str, x: np.ndarray, ids: np.ndarray, n_as: int) -> None:
        """l. 267-327: x is [n_tokens, ne1, ne0], ids [n_tokens, n_ids] (the routed experts)."""
        sums, counts = self._slot(name, n_as, x.shape[2])
        for idx in range(ids.shape[1]):
            ex = ids[:, idx]
            if ex.min() < 0 or ex.max() >= n_as:
                raise AdvisorError(f"imatrix: expert id out of range in {name}")
            rows = np.asarray(x[:, idx % x.shape[1], :], dtype=np.float64)
            np.add.at(sums, ex, rows * rows)
            counts += np.bincount(ex, minlength=n_as)
        if not np.isfinite(sums).all():
            raise AdvisorError(f"imatrix: non-finite activations in {name}")

    def result(self) -> dict[str, np.ndarray]:
        out = {}
        for name, sums in self.sums.items():
            c = self.counts[name][:, None].astype(np.float64)
            # quantize.cpp load_imatrix: sums / count, 1 where a matrix saw no token
            out[name] = np.where(c > 0, sums / np.maximum(c, 1), 1.0).astype(np.float32).ravel()
        return out


def _chunks(session: LlamaSession, text: str, chunk_tokens: int,
            max_chunks: int) -> list[list[int]]:
    """compute_imatrix's chunks (l. 791-900): `chunk_tokens` each, the first token replaced by
    BOS when the vocabulary adds one; a text shorter than one chunk is used whole."""
    tokens = session.tokenize(text)
    n_chunks = len(tokens) // chunk_tokens
    if n_chunks == 0:
        # llama-imatrix wants 2 chunks at least; a short text is used whole instead
        if len(tokens) < MIN_ROWS:
            raise BadInput(f"the calibration text has {len(tokens)} tokens",
                           f"give at least {MIN_ROWS} (better several thousand)")
        chunks = [tokens]
    else:
        n_chunks = min(n_chunks, max_chunks) if max_chunks > 0 else n_chunks
        chunks = [tokens[i * chunk_tokens:(i + 1) * chunk_tokens] for i in range(n_chunks)]
    return [[session.bos, *c[1:]] if session.add_bos else c for c in chunks]


def streamed(gguf_path: Path) -> bool:
    """Whether the importance matrix of `gguf_path` comes from the streamed sweep
    (backends.gguf.importance: a float model of the llama layout from 400M parameters)
    rather than from llama.cpp, which maps the whole file."""
    from backends.gguf.layers import streams

    return streams(gguf_path)


def compute_imatrix(gguf_path: Path, text: str, *, threads: int = 0,
                    chunk_tokens: int = CHUNK_TOKENS, max_chunks: int = 0,
                    process_output: bool = False, device: str = "cpu") -> Imatrix:
    """Run the model over `text` in chunks and collect the importance matrix (no cache): in
    llama.cpp, or streamed on `device` (a torch device) when `streamed(gguf_path)` and the head
    is not asked for."""
    t0 = time.perf_counter()
    if not process_output and streamed(gguf_path):
        from backends.gguf.importance import streamed_imatrix
        from backends.hf import torch_threads

        with LlamaSession(gguf_path, n_ctx=chunk_tokens, n_batch=chunk_tokens, threads=1,
                          vocab_only=True) as session:
            chunks = _chunks(session, text, chunk_tokens, max_chunks)
        import torch

        with torch_threads(threads), torch.no_grad():
            values = streamed_imatrix(gguf_path, chunks, device=device)
    else:
        collector = _Collector(process_output=process_output)
        with LlamaSession(gguf_path, n_ctx=chunk_tokens, n_batch=chunk_tokens, threads=threads,
                          gpu_layers=0, cb_eval=collector.callback) as session:
            chunks = _chunks(session, text, chunk_tokens, max_chunks)
            with llama_log_routed():
                for chunk in chunks:
                    session.clear()
                    session.decode_all(chunk)  # every position an output (imatrix.cpp l. 886)
                    if collector.error is not None:
                        raise collector.error
        values = collector.result()
    if not values:
        raise AdvisorError(f"imatrix: no matrix multiplication of {gguf_path} was collected")
    if not all(np.isfinite(v).all() for v in values.values()):
        raise AdvisorError(f"imatrix: non-finite activations in {gguf_path}")
    n_tok = sum(len(c) for c in chunks)
    log.info("importance matrix: %d tensors from %d tokens in %d chunks (%.1f s)",
             len(values), n_tok, len(chunks), time.perf_counter() - t0)
    return Imatrix(values, n_tok, len(chunks), text_sha256(text))


def values_digest(values: Mapping[str, np.ndarray]) -> str:
    """Content digest of importance values (names and float32 bytes), as reports record it."""
    h = hashlib.sha256()
    for name in sorted(values):
        h.update(name.encode())
        h.update(np.ascontiguousarray(values[name], dtype=np.float32).tobytes())
    return h.hexdigest()[:32]


def imatrix_for(gguf_path: Path, text: str, *, key_path: Path | None = None, threads: int = 0,
                max_chunks: int = 0, use_cache: bool = True, device: str = "cpu") -> Imatrix:
    """The importance matrix of `gguf_path` on `text`, from the cache when computed before.

    `key_path` names the model in the cache key when `gguf_path` is a temporary conversion (the
    Hugging Face directory it came from). `device`: where a streamed one runs (a torch device;
    the key does not depend on it).
    """
    from advisor.artifact.cache import cache_root, file_identity

    # the model by its full content digest (issue 22: a key of path, size and mtime gave a
    # changed source the original's cached values)
    key = (f"{file_identity(key_path or gguf_path)[:20]}-{text_sha256(text)[:20]}"
           f"-c{CHUNK_TOKENS}-m{max_chunks}-v{ALGORITHM_VERSION}"
           + ("-stream" if streamed(gguf_path) else ""))
    path = cache_root() / "imatrix" / f"{key}.npz"
    if use_cache and path.is_file():
        try:
            cached = Imatrix.load(path)
            log.info("importance matrix from cache %s", path)
            return cached
        except (OSError, ValueError, KeyError) as e:
            log.warning("ignoring unreadable imatrix cache %s: %s", path, e)
    result = compute_imatrix(gguf_path, text, threads=threads, max_chunks=max_chunks,
                             device=device)
    if use_cache:
        try:
            path.parent.mkdir(parents=True, exist_ok=True)
            result.save(path)
        except OSError as e:
            log.warning("cannot cache the importance matrix in %s: %s", path, e)
    return result
