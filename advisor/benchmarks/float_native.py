"""Float-native test models: exact function-preserving transforms of an installed GGUF whose
weights then lie on no GGML grid, written as an F16 GGUF (and, for the llama family, an F16
Hugging Face safetensors directory).

Why: the installed models are quantized (SmolLM2 Q4_1, Gemma 3 Q4_K_M). Measured against their
own dequantized weights, keeping a tensor at the source type is nearly free, which flatters any
search. Users bring float checkpoints; these transforms make such checkpoints here, offline,
from the same trained function.

Two transforms, both exact in real arithmetic (the only change is the final F16 rounding of the
weights, 2^-11 relative):

- `rotate_residual` (llama family; QuaRot/SpinQuant's rotation): the residual stream is turned
  by a random orthogonal R. RMSNorm is invariant under R once its weight is folded into the
  linears that read it, so W_in' = W_in diag(g) R^T (q, k, v, gate, up, the head), the norms
  become ones, W_out' = R W_out (attn_output, ffn_down) and the embedding E' = E R^T. Every
  matrix, the embedding and the (now untied) head leave their grids.
- `rescale_channels` (any of the llama layout, Gemma 3 included, whose QK-norm and sandwich norms
  rule out a rotation): per-channel scales between paired linears. Input columns of q/k/v and
  gate/up times c, the norm that feeds them divided by c; rows of `up` times s, columns of `down`
  divided by s; rows of `v` times t, the matching columns of `attn_output` (every query head of
  that kv head) divided by t. The scales are powers of two (1/2, 1 or 2 per channel), so every
  product is exact in F16 and F32 and the transformed model computes what the source computes
  (log-uniform scales cost Gemma 3 a KL of 1.8e-4 from F16 rounding alone, measured on two
  windows); within a quantization block the channels still differ in scale, which puts the block
  off every grid. The embedding (and a tied head) keep their values: no exact per-channel
  transform reaches them through the sandwich norms.

Tensors are in gguf-py's numpy layout: a weight is [out_features, in_features]. Nothing here is
committed: `build_float_native` writes into a directory the caller owns (the suite's bench-out,
a test's tmp_path) and reuses a file already written.
"""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np

Tensors = dict[str, np.ndarray]

TRANSFORMS = ("rotate", "rescale")


def _layers(t: Tensors) -> list[str]:
    """The `blk.N.` prefixes of the model, in order."""
    n = 1 + max(int(k.split(".")[1]) for k in t if k.startswith("blk."))
    return [f"blk.{i}." for i in range(n)]


def random_orthogonal(d: int, rng: np.random.Generator) -> np.ndarray:
    """A Haar-random d x d orthogonal matrix (QR of a Gaussian, signs fixed by R's diagonal)."""
    q, r = np.linalg.qr(rng.standard_normal((d, d)))
    return q * np.sign(np.diag(r))


def rotate_residual(t: Tensors, seed: int = 0) -> Tensors:
    """The llama-family model `t` with its residual stream rotated (see the module docstring).
    Refuses tensors it does not know how to carry through the rotation (biases, QK-norms)."""
    unknown = [k for k in t if k.endswith(".bias") or "_norm" in k and k.split(".")[-2] not in
               ("attn_norm", "ffn_norm", "output_norm")]
    if unknown:
        raise ValueError(f"rotate_residual handles the plain llama layout; {unknown[0]} is not "
                         "part of it: use rescale_channels")
    embd = t["token_embd.weight"].astype(np.float64)
    rot = random_orthogonal(embd.shape[1], np.random.default_rng(seed))
    out: Tensors = {}

    def reader(w: np.ndarray, g: np.ndarray) -> np.ndarray:
        return (w.astype(np.float64) * g.astype(np.float64)[None, :]) @ rot.T

    ones = np.ones(embd.shape[1], dtype=np.float32)
    for b in _layers(t):
        for name in ("attn_q", "attn_k", "attn_v"):
            out[b + name + ".weight"] = reader(t[b + name + ".weight"], t[b + "attn_norm.weight"])
        for name in ("ffn_gate", "ffn_up"):
            out[b + name + ".weight"] = reader(t[b + name + ".weight"], t[b + "ffn_norm.weight"])
        for name in ("attn_output", "ffn_down"):
            out[b + name + ".weight"] = rot @ t[b + name + ".weight"].astype(np.float64)
        out[b + "attn_norm.weight"] = ones
        out[b + "ffn_norm.weight"] = ones
    head = t.get("output.weight", t["token_embd.weight"])
    out["output.weight"] = reader(head, t["output_norm.weight"])
    out["output_norm.weight"] = ones
    out["token_embd.weight"] = embd @ rot.T
    missing = set(t) - set(out)
    if missing:
        raise ValueError(f"rotate_residual does not know {sorted(missing)[0]}")
    return out


def rescale_channels(t: Tensors, n_head: int, n_head_kv: int, seed: int = 0) -> Tensors:
    """The model `t` with per-channel scales moved between paired tensors (see the module
    docstring); `n_head`/`n_head_kv` map attn_output's columns to their kv head."""
    rng = np.random.default_rng(seed)
    out = dict(t)

    def scales(n: int) -> np.ndarray:
        return 2.0 ** rng.integers(-1, 2, n)

    for b in _layers(t):
        for norm, readers in (("attn_norm", ("attn_q", "attn_k", "attn_v")),
                              ("ffn_norm", ("ffn_gate", "ffn_up"))):
            c = scales(t[b + norm + ".weight"].shape[0])
            out[b + norm + ".weight"] = t[b + norm + ".weight"] / c
            for name in readers:
                out[b + name + ".weight"] = out[b + name + ".weight"] * c[None, :]
        up, down = out[b + "ffn_up.weight"], out[b + "ffn_down.weight"]
        s = scales(up.shape[0])
        out[b + "ffn_up.weight"], out[b + "ffn_down.weight"] = up * s[:, None], down / s[None, :]
        v, o = out[b + "attn_v.weight"], out[b + "attn_output.weight"]
        head_dim = v.shape[0] // n_head_kv
        tv = scales(v.shape[0])
        # attn_output's column h*head_dim + i reads query head h, which uses kv head h // group
        group = n_head // n_head_kv
        cols = np.concatenate([tv[(h // group) * head_dim:(h // group + 1) * head_dim]
                               for h in range(n_head)])
        out[b + "attn_v.weight"], out[b + "attn_output.weight"] = v * tv[:, None], o / cols[None, :]
    return out


def read_weights(path: Path) -> tuple[object, Tensors]:
    """gguf-py's reader of `path` and every tensor as float32 (dequantized when quantized)."""
    import gguf

    reader = gguf.GGUFReader(str(path))
    tensors = {t.name: gguf.quants.dequantize(t.data, t.tensor_type).astype(np.float32)
               for t in reader.tensors}
    return reader, tensors


def write_gguf(reader: object, tensors: Tensors, dst: Path, name_suffix: str) -> None:
    """`tensors` (2-D as F16, 1-D as F32) with every metadata field of `reader`'s file, the file
    type set to F16; written under a temporary name and renamed when complete."""
    import gguf

    fields = reader.fields  # type: ignore[attr-defined]
    arch = fields["general.architecture"].contents()
    tmp = dst.with_name(f".{dst.name}.tmp")
    try:
        w = gguf.GGUFWriter(str(tmp), arch)
        for key, field in fields.items():
            if key.startswith("GGUF.") or key == "general.architecture":
                continue
            value = field.contents()
            if key == "general.file_type":
                value = int(gguf.LlamaFileType.MOSTLY_F16)
            elif key == "general.name":
                value = f"{value} {name_suffix}"
            sub = field.types[-1] if field.types[0] == gguf.GGUFValueType.ARRAY else None
            w.add_key_value(key, value, field.types[0], sub_type=sub)
        for name in sorted(tensors, key=lambda n: (not n.startswith("token_embd"), n)):
            arr = tensors[name]
            w.add_tensor(name, arr.astype(np.float32 if arr.ndim == 1 else np.float16))
        w.write_header_to_file()
        w.write_kv_data_to_file()
        w.write_tensors_to_file()
        w.close()
    except BaseException:
        tmp.unlink(missing_ok=True)  # no half-written model beside the finished ones
        raise
    os.replace(tmp, dst)


def build_float_native(src: Path, dst_dir: Path, transform: str, seed: int = 0) -> Path:
    """An F16 GGUF of `src`'s function with `transform` applied, in `dst_dir` (reused when there).
    """
    if transform not in TRANSFORMS:
        raise ValueError(f"transform {transform!r}; expected one of {', '.join(TRANSFORMS)}")
    dst = dst_dir / f"{src.stem.split('.')[0]}-{transform}{seed}.F16.gguf"
    if dst.is_file():
        return dst
    dst_dir.mkdir(parents=True, exist_ok=True)
    reader, tensors = read_weights(src)
    if transform == "rotate":
        out = rotate_residual(tensors, seed)
    else:
        fields = reader.fields  # type: ignore[attr-defined]
        arch = fields["general.architecture"].contents()
        n_head = int(fields[f"{arch}.attention.head_count"].contents())
        kv_key = f"{arch}.attention.head_count_kv"
        n_kv = int(fields[kv_key].contents()) if kv_key in fields else n_head
        out = rescale_channels(tensors, n_head, n_kv, seed)
    write_gguf(reader, out, dst, f"float-native ({transform}, seed {seed})")
    return dst


def hf_directory(gguf_path: Path, dst: Path) -> Path:
    """An F16 Hugging Face safetensors directory (config, weights, tokenizer) of a GGUF, through
    the sensitivity stage's loader (transformers' own GGUF config and weight processing; a model
    transformers loads from GGUF is marked not serializable); reused when there."""
    import torch
    import transformers

    from advisor.sensitivity.loader import load_gguf_model

    if (dst / "config.json").is_file() and any(dst.glob("*.safetensors")):
        return dst
    model = load_gguf_model(gguf_path).model.to(torch.float16)
    tok = transformers.AutoTokenizer.from_pretrained(str(gguf_path.parent),
                                                     gguf_file=gguf_path.name,
                                                     trust_remote_code=False)
    tmp = dst.with_name(dst.name + ".tmp")
    model.save_pretrained(tmp, safe_serialization=True)
    tok.save_pretrained(tmp)
    os.replace(tmp, dst)
    return dst
