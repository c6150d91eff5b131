"""The float-native test models: each transform preserves the function (numerically on a tiny
random model, end to end through llama.cpp on the trained models) and moves the weights off the
source's quantization grid."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from advisor.benchmarks.float_native import (
    build_float_native,
    hf_directory,
    read_weights,
    rescale_channels,
    rotate_residual,
)


def _tiny(rng: np.random.Generator, d: int = 16, ffn: int = 24, heads: int = 4, kv: int = 2,
          vocab: int = 11, layers: int = 2, tied: bool = True) -> dict[str, np.ndarray]:
    hd = d // heads
    t = {"token_embd.weight": rng.standard_normal((vocab, d)),
         "output_norm.weight": rng.uniform(0.5, 1.5, d)}
    if not tied:
        t["output.weight"] = rng.standard_normal((vocab, d))
    for i in range(layers):
        b = f"blk.{i}."
        t |= {b + "attn_norm.weight": rng.uniform(0.5, 1.5, d),
              b + "ffn_norm.weight": rng.uniform(0.5, 1.5, d),
              b + "attn_q.weight": rng.standard_normal((heads * hd, d)) / d ** .5,
              b + "attn_k.weight": rng.standard_normal((kv * hd, d)) / d ** .5,
              b + "attn_v.weight": rng.standard_normal((kv * hd, d)) / d ** .5,
              b + "attn_output.weight": rng.standard_normal((d, heads * hd)) / d ** .5,
              b + "ffn_gate.weight": rng.standard_normal((ffn, d)) / d ** .5,
              b + "ffn_up.weight": rng.standard_normal((ffn, d)) / d ** .5,
              b + "ffn_down.weight": rng.standard_normal((d, ffn)) / ffn ** .5}
    return t


def _forward(t: dict[str, np.ndarray], tokens: list[int], heads: int = 4,
             kv: int = 2) -> np.ndarray:
    """Logits of a plain llama (RMSNorm, causal GQA attention without rotary, SwiGLU) in float64:
    enough to check that a transform keeps every product the model computes."""
    def norm(x: np.ndarray, g: np.ndarray) -> np.ndarray:
        return x / np.sqrt((x * x).mean(-1, keepdims=True) + 1e-6) * g

    h = t["token_embd.weight"][tokens].astype(np.float64)
    n = len(tokens)
    layers = sorted({k.split(".")[1] for k in t if k.startswith("blk.")}, key=int)
    for i in layers:
        b = f"blk.{i}."
        x = norm(h, t[b + "attn_norm.weight"])
        q, k, v = (x @ t[b + w + ".weight"].T for w in ("attn_q", "attn_k", "attn_v"))
        hd = q.shape[1] // heads
        mask = np.triu(np.full((n, n), -np.inf), 1)
        outs = []
        for head in range(heads):
            g = head // (heads // kv)
            qh, kh, vh = q[:, head * hd:(head + 1) * hd], k[:, g * hd:(g + 1) * hd], \
                v[:, g * hd:(g + 1) * hd]
            s = qh @ kh.T / hd ** .5 + mask
            p = np.exp(s - s.max(-1, keepdims=True))
            outs.append((p / p.sum(-1, keepdims=True)) @ vh)
        h = h + np.concatenate(outs, 1) @ t[b + "attn_output.weight"].T
        x = norm(h, t[b + "ffn_norm.weight"])
        gate, up = x @ t[b + "ffn_gate.weight"].T, x @ t[b + "ffn_up.weight"].T
        h = h + (gate / (1 + np.exp(-gate)) * up) @ t[b + "ffn_down.weight"].T
    head = t.get("output.weight", t["token_embd.weight"])
    out: np.ndarray = norm(h, t["output_norm.weight"]) @ head.T
    return out


@pytest.mark.parametrize("tied", [True, False])
def test_rotation_preserves_the_function_and_unties_the_head(tied: bool) -> None:
    t = _tiny(np.random.default_rng(1), tied=tied)
    r = rotate_residual(t, seed=3)
    tokens = [1, 5, 2, 9, 0, 7]
    np.testing.assert_allclose(_forward(r, tokens), _forward(t, tokens), rtol=1e-9, atol=1e-9)
    assert "output.weight" in r and not np.allclose(r["output.weight"], r["token_embd.weight"])
    assert np.all(r["blk.0.attn_norm.weight"] == 1)
    for name in t:  # every matrix changed
        if t[name].ndim == 2:
            assert not np.allclose(r[name], t[name]), name


def test_rescaling_preserves_the_function_with_grouped_heads() -> None:
    t = _tiny(np.random.default_rng(2), tied=False)
    r = rescale_channels(t, n_head=4, n_head_kv=2, seed=4)
    tokens = [3, 1, 4, 1, 5, 9, 2]
    np.testing.assert_allclose(_forward(r, tokens), _forward(t, tokens), rtol=1e-9, atol=1e-9)
    for role in ("attn_q", "attn_k", "attn_v", "attn_output", "ffn_gate", "ffn_up", "ffn_down"):
        assert not np.allclose(r[f"blk.1.{role}.weight"], t[f"blk.1.{role}.weight"]), role
    # a wrong kv-head mapping breaks it (the test can fail)
    bad = rescale_channels(t, n_head=2, n_head_kv=1, seed=4)
    assert not np.allclose(_forward(bad, tokens), _forward(t, tokens), rtol=1e-3)


def test_rotation_refuses_what_it_cannot_carry() -> None:
    t = _tiny(np.random.default_rng(0)) | {"blk.0.attn_q_norm.weight": np.ones(4)}
    with pytest.raises(ValueError, match="rescale_channels"):
        rotate_residual(t)


def _mean_kl(a: Path, b: Path, windows: int = 2, n: int = 256) -> float:
    """Mean KL(a || b) of llama.cpp's next-token distributions on the first windows of the
    project's evaluation text."""
    from advisor.measure.quality.metrics import kl_divergence, log_softmax
    from advisor.textdata import default_evaluation_text
    from backends.gguf import GgufRunner

    ra, rb = GgufRunner(a, n_ctx=n), GgufRunner(b, n_ctx=n)
    try:
        toks = ra.tokenize(default_evaluation_text())
        assert toks == rb.tokenize(default_evaluation_text())
        kls = [kl_divergence(log_softmax(ra.logits(toks[i * n:(i + 1) * n])),
                             log_softmax(rb.logits(toks[i * n:(i + 1) * n])))
               for i in range(windows)]
    finally:
        ra.close()
        rb.close()
    return float(np.concatenate(kls).mean())


def _off_grid(src: Path, dst: Path, name: str) -> float:
    """Relative change of one tensor: how far the float-native weights are from the source's."""
    _, a = read_weights(src)
    _, b = read_weights(dst)
    return float(np.abs(a[name] - b[name]).mean() / np.abs(a[name]).mean())


@pytest.mark.slow
def test_rotated_smollm2_is_the_same_function_off_every_grid(tmp_path: Path) -> None:
    from advisor.inspect import inspect_model, resolve_model
    from advisor.modelspec import Role
    from backends.gguf import f16_reference

    src = resolve_model("smollm2-135m")
    rotated = build_float_native(src, tmp_path, "rotate")
    spec = inspect_model(str(rotated))
    assert spec.source_quantization is None and not spec.tied_embeddings
    assert {t.dtype for t in spec.tensors if t.role is not Role.NORM} == {"F16"}
    reference = f16_reference(inspect_model(str(src)))
    assert _mean_kl(reference, rotated) < 1e-4
    assert _off_grid(src, rotated, "blk.3.ffn_down.weight") > 0.5
    assert build_float_native(src, tmp_path, "rotate") == rotated  # reused, not rewritten

    # the same model as an F16 HF directory: the HF -> GGUF path with a float source
    hf = hf_directory(rotated, tmp_path / "smollm2-rotated-hf")
    converted = f16_reference(inspect_model(str(hf)))
    assert _mean_kl(rotated, converted) < 1e-4


@pytest.mark.slow
def test_rescaled_gemma3_is_the_same_function(tmp_path: Path) -> None:
    from advisor.benchmarks.models import gemma3_gguf
    from advisor.inspect import inspect_model
    from backends.gguf import f16_reference

    src = gemma3_gguf(tmp_path)
    rescaled = build_float_native(src, tmp_path, "rescale")
    assert inspect_model(str(rescaled)).source_quantization is None
    reference = f16_reference(inspect_model(str(src)))
    assert _mean_kl(reference, rescaled, windows=1) < 1e-4
    assert _off_grid(src, rescaled, "blk.2.ffn_gate.weight") > 0.1
