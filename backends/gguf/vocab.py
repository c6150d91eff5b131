"""The tokenizer half of the HF -> GGUF conversion, as llama.cpp's convert_hf_to_gguf.py writes it.

Three vocabularies, tried in the order LlamaModel.set_vocab tries them:
- SentencePiece (`tokenizer.model`; `_set_vocab_sentencepiece`): tokenizer model "llama";
- a byte-fallback BPE `tokenizer.json` (Llama 2 style; `_set_vocab_llama_hf`, gguf.LlamaHfVocab);
- a byte-level BPE `tokenizer.json` (GPT-2 / Llama 3 / Qwen2 style; `_set_vocab_gpt2`): tokenizer
  model "gpt2" plus the pre-tokenizer name llama.cpp needs to split text the same way.
Special tokens, merges and the chat template come from gguf.SpecialVocab in every case.
"""

from __future__ import annotations

import json
import logging
from hashlib import sha256
from pathlib import Path
from typing import Any

from advisor.errors import AdvisorError, BadInput
from advisor.inspect.untrusted import read_json_object, refuse_custom_code, regular_file

logger = logging.getLogger(__name__)

# convert_hf_to_gguf.py get_vocab_base_pre: the hash of this text's token ids names the
# pre-tokenizer of a released tokenizer.
_CHKTXT = (
    "\n \n\n \n\n\n \t \t\t \t\n  \n   \n    \n     \n🚀 (normal) 😶\u200d🌫️ (multiple emojis "
    "concatenated) ✅ 🦙🦙 3 33 333 3333 33333 333333 3333333 33333333 3.3 3..3 3...3 "
    "កាន់តែពិសេសអាច😁 ?我想在apple工作1314151天～ ------======= нещо на Български "
    "''''''```````\"\"\"\"......!!!!!!?????? I've been 'told he's there, 'RE you sure? "
    "'M not sure I'll make it, 'D you like some tea? We'Ve a'lL"
)

# The hashes of the llama-family tokenizers, copied from convert_hf_to_gguf.py (a released
# tokenizer of another family falls through to the structural match below).
_KNOWN_HASHES = {
    "0ef9807a4087ebef797fc749390439009c3b9eda9ad1a097abbe738f486c01e5": "llama-bpe",  # Llama 3
    "e636dc30a262dcc0d8c323492e32ae2b70728f4df7dfe9737d9f920a282b8aea": "qwen2",  # Qwen1.5
    "d4540891389ea895b53b399da6ac824becc30f2fba0e9ddbb98f92e55ca0e97c": "qwen2",  # Qwen3
    "b3f499bb4255f8ca19fccd664443283318f2fd2414d5e0b040fbdd0cc195d6c5": "deepseek-r1-qwen",
    "855059429035d75a914d1eda9f10a876752e281a054a7a3d421ef0533e5b6249": "smollm",
    "3ce83efda5659b07b1ad37ca97ca5797ea4285d9b9ab0dc679e4a720c9da7454": "gpt-2",
    "63b97e4253352e6f357cc59ea5b583e3a680eaeaf2632188c2b952de2588485e": "tekken",  # Mistral Nemo
}

# Split regexes as tokenizer.json holds them; llama.cpp src/llama-vocab.cpp quotes both as the
# "original regex from tokenizer.json" of LLAMA_VOCAB_PRE_TYPE_LLAMA3 and _QWEN2.
_LLAMA3_REGEX = (
    r"(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}{1,3}| ?[^\s\p{L}\p{N}]+[\r\n]*"
    r"|\s*[\r\n]+|\s+(?!\S)|\s+"
)
_QWEN2_REGEX = _LLAMA3_REGEX.replace(r"\p{N}{1,3}", r"\p{N}")

# A pre-tokenizer pipeline, reduced to what changes the split, -> llama.cpp pre-tokenizer name.
_STRUCTURES: dict[tuple[tuple[Any, ...], ...], str] = {
    (("ByteLevel", True, False),): "gpt-2",
    (("Digits", True), ("ByteLevel", True, False)): "smollm",
    (("Split", _LLAMA3_REGEX), ("ByteLevel", False, False)): "llama-bpe",
    (("Split", _QWEN2_REGEX), ("ByteLevel", False, False)): "qwen2",
}


def _signature(pre: dict[str, Any] | None) -> tuple[tuple[Any, ...], ...]:
    pre = pre or {}
    steps = pre.get("pretokenizers") or [] if pre.get("type") == "Sequence" else [pre]
    sig: list[tuple[Any, ...]] = []
    for s in steps:
        kind = s.get("type")
        if kind == "ByteLevel":
            sig.append((kind, bool(s.get("use_regex", True)), bool(s.get("add_prefix_space"))))
        elif kind == "Digits":
            sig.append((kind, bool(s.get("individual_digits"))))
        elif kind == "Split" and s.get("behavior") == "Isolated" and not s.get("invert"):
            sig.append((kind, (s.get("pattern") or {}).get("Regex")))
        else:
            sig.append((kind, json.dumps(s, sort_keys=True)))
    return tuple(sig)


def bpe_pre_tokenizer(tokenizer: Any, tokenizer_json: dict[str, Any], where: Path) -> str:
    """llama.cpp's `tokenizer.ggml.pre` for a byte-level BPE tokenizer.

    First the token-id hash of convert_hf_to_gguf.py get_vocab_base_pre (exact for released
    tokenizers), then the pre-tokenizer's structure (a tokenizer trained anew with a known split
    rule has an unknown hash). Guessing would tokenize silently differently, so an unknown one is
    refused, as the converter does.
    """
    chkhsh = sha256(str(tokenizer.encode(_CHKTXT)).encode()).hexdigest()
    if chkhsh in _KNOWN_HASHES:
        return _KNOWN_HASHES[chkhsh]
    sig = _signature(tokenizer_json.get("pre_tokenizer"))
    if sig in _STRUCTURES:
        return _STRUCTURES[sig]
    raise BadInput(
        f"{where}/tokenizer.json: BPE pre-tokenizer not recognised ({[s[0] for s in sig]}, "
        f"chkhsh {chkhsh[:12]})",
        "supported: GPT-2 byte-level, SmolLM digits+byte-level, Llama 3 and Qwen2 split regexes",
    )


def _looks_special(token: str) -> bool:
    # convert_hf_to_gguf.py TextModel.does_token_look_special
    return (
        token in ("<pad>", "<mask>", "<2mass>", "[@BOS@]")
        or (token.startswith("<|") and token.endswith("|>"))
        or (token.startswith("<｜") and token.endswith("｜>"))
        or (token.startswith("<unused") and token.endswith(">"))
    )


def _add_gpt2(writer: Any, d: Path, vocab_size: int, tokenizer_json: dict[str, Any]) -> None:
    # convert_hf_to_gguf.py TextModel.get_vocab_base + _set_vocab_gpt2
    import gguf
    from transformers import AutoTokenizer

    refuse_custom_code(d)
    tokenizer = AutoTokenizer.from_pretrained(str(d), trust_remote_code=False)
    vocab: dict[str, int] = tokenizer.get_vocab()
    if max(vocab.values()) >= vocab_size:
        raise BadInput(
            f"{d}: the tokenizer has id {max(vocab.values())}, past config vocab_size {vocab_size}",
            "the tokenizer does not belong to this model",
        )
    pre = bpe_pre_tokenizer(tokenizer, tokenizer_json, d)
    reverse = {i: t for t, i in vocab.items()}
    added = tokenizer.get_added_vocab()
    decoder = tokenizer.added_tokens_decoder
    tokens: list[str] = []
    types: list[int] = []
    for i in range(vocab_size):
        if i not in reverse:
            tokens.append(f"[PAD{i}]")
            types.append(gguf.TokenType.UNUSED)
            continue
        token = reverse[i]
        if token in added:
            # llama.cpp assumes CONTROL and USER_DEFINED tokens are pre-normalized
            if not decoder[i].normalized:
                token = str(tokenizer.decode(tokenizer.encode(token, add_special_tokens=False)))
            if decoder[i].special or _looks_special(token):
                types.append(gguf.TokenType.CONTROL)
            else:
                token = token.replace("\u2581", " ")  # pre-normalize user-defined spaces
                types.append(gguf.TokenType.USER_DEFINED)
        else:
            types.append(gguf.TokenType.NORMAL)
        tokens.append(token)
    writer.add_tokenizer_model("gpt2")
    writer.add_tokenizer_pre(pre)
    writer.add_token_list(tokens)
    writer.add_token_types(types)
    gguf.SpecialVocab(d, load_merges=True).add_to_gguf(writer, quiet=True)


def _add_scored(writer: Any, d: Path, vocab_size: int,
                entries: list[tuple[bytes, float, int]]) -> None:
    """Write a "llama" (SentencePiece-style) vocabulary padded to `vocab_size`."""
    import gguf

    if len(entries) > vocab_size:
        raise BadInput(
            f"{d}: the tokenizer has {len(entries)} tokens, config vocab_size is {vocab_size}",
            "the tokenizer does not belong to this model",
        )
    for i in range(len(entries), vocab_size):  # _create_vocab_sentencepiece pads so
        entries.append((f"[PAD{i}]".encode(), -1000.0, gguf.TokenType.UNUSED))
    writer.add_tokenizer_model("llama")
    writer.add_tokenizer_pre("default")
    writer.add_token_list([e[0] for e in entries])
    writer.add_token_scores([e[1] for e in entries])
    writer.add_token_types([e[2] for e in entries])
    gguf.SpecialVocab(d, n_vocab=vocab_size).add_to_gguf(writer, quiet=True)


def _sentencepiece_entries(d: Path, vocab_size: int) -> list[tuple[bytes, float, int]]:
    # convert_hf_to_gguf.py _create_vocab_sentencepiece (added tokens from tokenizer_config.json)
    import gguf
    from sentencepiece import SentencePieceProcessor

    sp = SentencePieceProcessor()
    sp.LoadFromFile(str(d / "tokenizer.model"))
    entries: list[tuple[bytes, float, int]] = []
    for i in range(min(sp.vocab_size(), vocab_size)):
        kind = gguf.TokenType.NORMAL
        if sp.IsUnknown(i):
            kind = gguf.TokenType.UNKNOWN
        elif sp.IsControl(i):
            kind = gguf.TokenType.CONTROL
        elif sp.IsUnused(i):
            kind = gguf.TokenType.UNUSED
        elif sp.IsByte(i):
            kind = gguf.TokenType.BYTE
        entries.append((sp.IdToPiece(i).encode("utf-8"), sp.GetScore(i), kind))
    cfg_path = d / "tokenizer_config.json"
    cfg = read_json_object(cfg_path) if regular_file(cfg_path) else {}
    for key, tok in _obj(cfg.get("added_tokens_decoder")).items():
        tid, text = int(key), str(tok["content"])
        if tid >= vocab_size:
            continue
        while len(entries) <= tid:
            entries.append((f"[PAD{len(entries)}]".encode(), -1000.0, gguf.TokenType.UNUSED))
        if tok.get("special") or _looks_special(text):
            kind = gguf.TokenType.CONTROL
        else:
            text, kind = text.replace("\u2581", " "), gguf.TokenType.USER_DEFINED
        entries[tid] = (text.encode("utf-8"), -1000.0, kind)
    return entries


def _merge_ranked(tokenizer_json: dict[str, Any],
                  entries: list[tuple[bytes, float, int]]) -> list[tuple[bytes, float, int]]:
    """Scores for a byte-fallback BPE: minus the rank of the merge that makes each token.

    llama.cpp's "llama" tokenizer merges the adjacent pair whose result scores highest, as
    SentencePiece BPE does with its piece scores. gguf.LlamaHfVocab leaves every score at a
    -1000 placeholder, so pairs merge left to right and ids drift from the HF tokenizer's.
    """
    rank: dict[bytes, float] = {}
    for i, m in enumerate(tokenizer_json["model"].get("merges") or []):
        a, b = m.split(" ", 1) if isinstance(m, str) else m
        rank.setdefault((a + b).encode("utf-8"), -float(i))
    floor = -float(len(rank) + 1000)  # multi-character tokens no merge makes come last
    return [(t, rank.get(t, s if len(t.decode("utf-8", "replace")) <= 1 else floor), k)
            for t, s, k in entries]


def add_vocab(writer: Any, d: Path, vocab_size: int, arch: str) -> str:
    """Write the tokenizer of HF directory `d` into `writer`; return the GGUF tokenizer model.

    The tokenizer files are untrusted input: every JSON file is validated first
    (refuse_custom_code reads each with untrusted.read_json_object), and whatever transformers,
    tokenizers (which raises a bare Exception on a file it cannot parse) or sentencepiece raise
    on them ends as one BadInput line naming the directory."""
    refuse_custom_code(d)
    try:
        return _add_vocab(writer, d, vocab_size, arch)
    except AdvisorError:
        raise
    except BaseException as e:  # tokenizers' errors are bare Exceptions, its panics not even that
        if not isinstance(e, Exception) and type(e).__name__ != "PanicException":
            raise  # KeyboardInterrupt, SystemExit
        why = " ".join(str(e).split())[:160] or "no message"
        raise BadInput(f"{d}: its tokenizer files cannot be converted to GGUF "
                       f"({type(e).__name__}: {why})",
                       "restore the model's tokenizer files (tokenizer.json, "
                       "tokenizer_config.json, tokenizer.model)") from None


def _obj(value: Any) -> dict[str, Any]:
    return value if isinstance(value, dict) else {}


def _add_vocab(writer: Any, d: Path, vocab_size: int, arch: str) -> str:
    import gguf

    tj_path = d / "tokenizer.json"
    tj = read_json_object(tj_path) if regular_file(tj_path) else {}
    model = _obj(tj.get("model"))
    decoder_type = _obj(tj.get("decoder")).get("type")
    has_spm = (d / "tokenizer.model").is_file()
    try:
        import sentencepiece  # noqa: F401

        spm_ok = True
    except ImportError:
        spm_ok = False
    if has_spm and spm_ok:
        _add_scored(writer, d, vocab_size, _sentencepiece_entries(d, vocab_size))
        kind = "llama"
    elif model.get("type") == "BPE" and model.get("byte_fallback") and decoder_type == "Sequence":
        hf = gguf.LlamaHfVocab(d)
        entries = [(t, s, int(k)) for t, s, k in hf.all_tokens()]
        _add_scored(writer, d, vocab_size, _merge_ranked(tj, entries))
        kind = "llama"
    elif model.get("type") == "BPE" and not model.get("byte_fallback") \
            and decoder_type == "ByteLevel":
        _add_gpt2(writer, d, vocab_size, tj)
        kind = "gpt2"
    elif has_spm:
        raise BadInput(f"{d} has only a SentencePiece tokenizer.model",
                       "pip install sentencepiece, or add the model's tokenizer.json")
    else:
        found = f"a {model.get('type')} tokenizer.json" if tj else "no tokenizer.json"
        raise BadInput(
            f"{d}: {found}; GGUF conversion reads a BPE tokenizer.json or a tokenizer.model",
            "copy the model's tokenizer files into the directory",
        )
    if kind == "llama":
        # GemmaModel.set_vocab: Gemma's SentencePiece adds no space prefix; LlamaModel.set_vocab
        # takes an explicit add_prefix_space from tokenizer_config.json
        cfg_path = d / "tokenizer_config.json"
        cfg = read_json_object(cfg_path) if regular_file(cfg_path) else {}
        if arch.startswith("gemma"):
            writer.add_add_space_prefix(False)
        elif isinstance(cfg.get("add_prefix_space"), bool):
            writer.add_add_space_prefix(cfg["add_prefix_space"])
    return kind
