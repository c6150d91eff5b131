"""Serving files for a GGUF artifact: `serve.sh` (llama-server, else llama-cpp-python's server)
and an Ollama `Modelfile` (the GGUF's chat template translated where we know the family)."""

from __future__ import annotations

import logging
import re
import shlex
import textwrap
from pathlib import Path

from advisor.errors import BadInput
from advisor.estimate import Workload, estimate
from advisor.hardware import HardwareProfile
from advisor.inspect.gguf_header import read_header
from advisor.plan import QuantPlan

log = logging.getLogger(__name__)

ALL_LAYERS = 999  # llama-server -ngl: more than any model has = every layer on the GPU
KV_BYTES_PER_VALUE = 2  # llama.cpp's default F16 KV cache


def gpu_layers(model: Path, plan: QuantPlan, hw: HardwareProfile, n_ctx: int) -> tuple[int, str]:
    """All layers on the accelerator when its memory holds the estimate, else none; and why."""
    acc = hw.primary
    if acc is None:
        return 0, "the target has no accelerator: CPU only"
    from advisor.inspect.gguf_source import read_gguf

    spec = read_gguf(model)
    try:
        wl = Workload(prompt_tokens=max(1, min(512, n_ctx)), new_tokens=1, context=n_ctx)
        need = estimate(spec, plan, hw, wl, KV_BYTES_PER_VALUE).total_memory.value
        basis = "the predicted total (weights + KV cache + buffers)"
    except (ValueError, BadInput) as e:  # a profile without rates: fall back to the bare bytes
        log.debug("no estimate for %s (%s); using file size + KV cache", acc.name, e)
        kv = 2 * spec.n_layers * spec.n_kv_heads * spec.head_dim * KV_BYTES_PER_VALUE * n_ctx
        need = model.stat().st_size + kv
        basis = "file size + KV cache"
    gib = 1024 ** 3
    if need <= acc.memory.value:
        return ALL_LAYERS, (f"all layers on {acc.name}: {basis} {need / gib:.2f} GiB fits its "
                            f"{acc.memory.value / gib:.0f} GiB")
    return 0, (f"CPU only: {basis} {need / gib:.2f} GiB exceeds {acc.name}'s "
               f"{acc.memory.value / gib:.0f} GiB")


def serve_script(model_file: str, n_ctx: int, ngl: int, why: str) -> str:
    m = shlex.quote(model_file)
    py_ngl = -1 if ngl == ALL_LAYERS else ngl
    why_lines = "\n# ".join(textwrap.wrap(f"GPU layers: {why}.", 96))
    return f"""#!/usr/bin/env sh
# Serve {model_file} over an OpenAI-compatible HTTP API on 127.0.0.1:${{PORT:-8080}}.
# Runs llama.cpp's `llama-server` when it is on PATH; otherwise llama-cpp-python's server
# (`pip install 'llama-cpp-python[server]'`, run with ${{PYTHON:-python3}}).
# {why_lines}
set -eu
cd "$(dirname "$0")"
PORT="${{PORT:-8080}}"
if command -v llama-server >/dev/null 2>&1; then
    exec llama-server -m {m} -c {n_ctx} -ngl {ngl} --host 127.0.0.1 --port "$PORT"
fi
exec "${{PYTHON:-python3}}" -m llama_cpp.server --model {m} --n_ctx {n_ctx} \\
    --n_gpu_layers {py_ngl} --host 127.0.0.1 --port "$PORT"
"""


# Ollama Go templates of the chat formats we recognise in a GGUF's Jinja template
# (the same text as the templates of Ollama's library models of these families).
_CHATML = """{{- if .System }}<|im_start|>system
{{ .System }}<|im_end|>
{{ end }}{{- range .Messages }}<|im_start|>{{ .Role }}
{{ .Content }}<|im_end|>
{{ end }}<|im_start|>assistant
"""
_LLAMA3 = """{{- if .System }}<|start_header_id|>system<|end_header_id|>

{{ .System }}<|eot_id|>
{{- end }}{{- range .Messages }}<|start_header_id|>{{ .Role }}<|end_header_id|>

{{ .Content }}<|eot_id|>
{{- end }}<|start_header_id|>assistant<|end_header_id|>

"""
_GEMMA = """{{- range .Messages }}<start_of_turn>{{ if eq .Role "assistant" }}model{{ else }}\
{{ .Role }}{{ end }}
{{ .Content }}<end_of_turn>
{{ end }}<start_of_turn>model
"""
# marker in the Jinja template -> (family, Ollama template, stop tokens)
_FAMILIES = (
    ("<|im_start|>", "ChatML", _CHATML, ("<|im_end|>",)),
    ("<|start_header_id|>", "Llama 3", _LLAMA3, ("<|eot_id|>",)),
    ("<start_of_turn>", "Gemma", _GEMMA, ("<end_of_turn>",)),
)


def chat_template(model: Path) -> str | None:
    """tokenizer.chat_template of a GGUF file, or None."""
    value = read_header(model).kv.get("tokenizer.chat_template")
    return value if isinstance(value, str) and value.strip() else None


def _default_system(jinja: str, family: str) -> str | None:
    """The system prompt a ChatML template inserts when the conversation has none."""
    if family != "ChatML":
        return None
    m = re.search(r"<\|im_start\|>system(?:\\n|\n)(.+?)<\|im_end\|>", jinja)
    return m.group(1) if m and "{{" not in m.group(1) else None


def modelfile(model_file: str, n_ctx: int, jinja: str | None) -> str:
    lines = [
        "# Ollama: ollama create NAME -f Modelfile && ollama run NAME",
        f"FROM ./{model_file}",
        f"PARAMETER num_ctx {n_ctx}",
    ]
    if jinja is None:
        lines.append("# the GGUF has no chat template: Ollama will treat prompts as raw text")
        return "\n".join(lines) + "\n"
    family = next((f for f in _FAMILIES if f[0] in jinja), None)
    if family is None:
        lines += ["# the GGUF's chat template (Jinja) is of a family this tool cannot translate",
                  "# to Ollama's Go templates; add a TEMPLATE line by hand (see",
                  "# https://github.com/ollama/ollama/blob/main/docs/template.md)"]
        return "\n".join(lines) + "\n"
    _, name, template, stops = family
    lines.append(f"# chat template: the GGUF's Jinja template, recognised as {name}")
    lines.append(f'TEMPLATE """{template}"""')
    lines += [f'PARAMETER stop "{s}"' for s in stops]
    system = _default_system(jinja, name)
    if system:
        lines.append(f'SYSTEM """{system}"""')
    return "\n".join(lines) + "\n"


def serve_files(model: Path, plan: QuantPlan, hw: HardwareProfile, n_ctx: int) -> dict[str, str]:
    if n_ctx < 1:
        raise BadInput(f"n_ctx={n_ctx}", "pass a context length >= 1")
    ngl, why = gpu_layers(model, plan, hw, n_ctx)
    return {
        "serve.sh": serve_script(model.name, n_ctx, ngl, why),
        "Modelfile": modelfile(model.name, n_ctx, chat_template(model)),
    }
