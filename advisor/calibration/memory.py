"""Memory as llama.cpp accounts it when it loads a model and creates a context; every figure
predicted, each term checked against what llama.cpp reports here (tests/calibration/test_memory.py).

- KV cache: llama.cpp pads the context to a multiple of 256 cells; K and V per layer, F16.
- Compute buffer: reserved for the worst micro-batch, dominated by its logits (n_ubatch x n_vocab
  float32) plus two hidden-size activations per token. A GPU holds all of it; on a CPU only the
  pages a request touches count in the resident set: a prompt that asks for one logit row touches
  the activations of one micro-batch, measured here at 3.8 x n_ubatch x 4 x (hidden + ffn) bytes
  (SmolLM2-135M, Gemma-3-270M and a 360M model: within 5%).
- CPU weights: the whole GGUF is mapped and read once at load (resident), and the tensors of the
  types ggml's CPU backend repacks for its interleaved kernels get a second, anonymous copy (on
  x86 with AVX2: Q4_0, Q4_K and IQ4_NL with a multiple of 8 rows, as this llama.cpp build logs
  them; the embedding only when it doubles as the LM head).
- Base: the library, the vocabulary's tables and the process around them, measured here above
  the interpreter's baseline: 30 MiB plus 125 bytes per vocabulary entry (SmolLM2's 49,152 and
  Gemma 3's 262,144 entries).
"""

from __future__ import annotations

from dataclasses import dataclass

from advisor.modelspec import ModelSpec, Role

KV_PAD_CELLS = 256
CPU_TOUCHED_ACTIVATIONS = 3.8
BASE_BYTES = 30 << 20
BASE_BYTES_PER_VOCAB_ENTRY = 125
# GGML types the CPU backend repacks (x86 AVX2 builds; ggml-cpu/repack.cpp), and the row multiple
X86_REPACKED = frozenset({"Q4_0", "Q4_K", "IQ4_NL"})
REPACK_ROWS = 8


def kv_cells(context: int) -> int:
    """The cells llama.cpp allocates for a context of `context` tokens."""
    return -(-context // KV_PAD_CELLS) * KV_PAD_CELLS


def kv_bytes(spec: ModelSpec, context: int, sequences: int = 1, bytes_per_value: int = 2) -> int:
    return (2 * spec.n_layers * spec.n_kv_heads * spec.head_dim * bytes_per_value
            * kv_cells(context) * sequences)


def compute_buffer(spec: ModelSpec, ubatch: int) -> int:
    """The compute buffer llama.cpp reserves for micro-batches of `ubatch` tokens."""
    return 4 * ubatch * (spec.vocab_size + 2 * spec.hidden_size)


def cpu_touched(spec: ModelSpec, ubatch: int) -> int:
    """The part of the compute buffer a CPU prompt with one output row makes resident."""
    return int(CPU_TOUCHED_ACTIVATIONS * 4 * ubatch * (spec.hidden_size
                                                       + spec.intermediate_size))


def repacked_bytes(spec: ModelSpec, per_tensor: dict[str, int], formats: dict[str, str],
                   isa: tuple[str, ...]) -> int:
    """Bytes of the anonymous copies ggml's CPU backend makes of repackable tensors."""
    if "avx2" not in isa:
        return 0
    total = 0
    for t in spec.tensors:
        fmt = formats.get(t.canonical, t.dtype)
        rows = t.shape[0] if len(t.shape) == 2 else 0
        matmul = t.role is not Role.EMBEDDING or spec.tied_embeddings
        if fmt in X86_REPACKED and matmul and rows and rows % REPACK_ROWS == 0:
            total += per_tensor[t.canonical]
    return total


@dataclass(frozen=True)
class LlamaCppMemory:
    """What a llama.cpp deployment holds besides its weights, term by term (bytes)."""

    kv: int
    compute: int
    repacked: int
    mapped_extra: int  # file bytes beyond the weights (metadata, padding): mapped on a CPU
    base: int

    @property
    def overhead(self) -> int:
        return self.compute + self.repacked + self.mapped_extra + self.base


def llama_cpp_memory(spec: ModelSpec, per_tensor: dict[str, int], formats: dict[str, str],
                     file_size: int, context: int, sequences: int, prompt_tokens: int,
                     on_cpu: bool, isa: tuple[str, ...], n_ubatch: int = 512) -> LlamaCppMemory:
    """The resident memory (CPU) or device memory (GPU) of a GGUF served by llama.cpp."""
    ubatch = min(n_ubatch, max(1, prompt_tokens * sequences))
    weights = sum(per_tensor.values())
    base = BASE_BYTES + BASE_BYTES_PER_VOCAB_ENTRY * spec.vocab_size
    if on_cpu:
        return LlamaCppMemory(kv=kv_bytes(spec, context, sequences),
                              compute=cpu_touched(spec, ubatch) + 4 * spec.vocab_size * sequences,
                              repacked=repacked_bytes(spec, per_tensor, formats, isa),
                              mapped_extra=max(0, file_size - weights), base=base)
    return LlamaCppMemory(kv=kv_bytes(spec, context, sequences),
                          compute=compute_buffer(spec, ubatch), repacked=0, mapped_extra=0,
                          base=base)


# vLLM's defaults (vllm/config: CacheConfig): the fraction of the GPU it takes, and the tokens of
# one KV block; the profile run's batch (max_num_batched_tokens) and its sequences (max_num_seqs)
VLLM_GPU_MEMORY_UTILIZATION = 0.9
VLLM_BLOCK_TOKENS = 16
VLLM_PROFILE_TOKENS = 8192
VLLM_PROFILE_SEQS = 256
VLLM_NON_TORCH_BYTES = 1 << 30  # CUDA context, NCCL, CUDA graphs: stated, not calibrated


@dataclass(frozen=True)
class VllmMemory:
    """What vLLM needs on the GPU besides its weights, and what it takes (bytes)."""

    kv: int  # the blocks the requested context x sequences occupy
    activations: int  # the profile run's peak
    base: int
    reserved: int  # gpu_memory_utilization x the device: vLLM holds all of it

    @property
    def overhead(self) -> int:
        return self.activations + self.base


def vllm_memory(spec: ModelSpec, context: int, sequences: int, device_memory: float,
                kv_bytes_per_value: int = 2) -> VllmMemory:
    """vLLM's accounting: weights, then a profile run's activation peak, then non-torch memory;
    the rest of gpu_memory_utilization x the device becomes KV blocks of 16 tokens. A plan fits
    when the blocks for `context` tokens x `sequences` remain (vLLM refuses to start otherwise)."""
    blocks = -(-context // VLLM_BLOCK_TOKENS) * sequences
    per_token = 2 * spec.n_layers * spec.n_kv_heads * spec.head_dim * kv_bytes_per_value
    tokens = min(VLLM_PROFILE_TOKENS, max(context, 1) * sequences)
    activations = (2 * tokens * (4 * spec.hidden_size + 2 * spec.intermediate_size)
                   + 4 * min(VLLM_PROFILE_SEQS, tokens) * spec.vocab_size)
    return VllmMemory(kv=blocks * VLLM_BLOCK_TOKENS * per_token, activations=activations,
                      base=VLLM_NON_TORCH_BYTES,
                      reserved=int(VLLM_GPU_MEMORY_UTILIZATION * device_memory))
