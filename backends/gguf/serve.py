"""Serving files for a GGUF artifact: `serve.sh` (llama-server, else llama-cpp-python's server)
and an Ollama `Modelfile` (the GGUF's chat template translated where we know the family)."""

from __future__ import annotations

import logging
import re
import shlex
import textwrap
from pathlib import Path

from advisor.artifact.serving import Serving
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


def serve_script(model_file: str, serving: Serving, ngl: int, why: str) -> str:
    """A POSIX sh script that serves `model_file` with llama-server when it is on PATH, else
    with llama-cpp-python's server run by the interpreter that wrote the artifact (recorded:
    a shell without the venv activated still finds it; `PYTHON` overrides it)."""
    m = shlex.quote(model_file)
    py = shlex.quote(serving.python)
    n, ctx = serving.parallel, serving.context
    py_ngl = -1 if ngl == ALL_LAYERS else ngl
    notes = "\n# ".join(textwrap.wrap(f"Context: {ctx} tokens per request, {why_ctx(serving)}. "
                                      f"GPU layers: {why}.", 96))
    one_at_a_time = ("\n# llama-cpp-python's server answers one request at a time (no parallel "
                     "slots): install\n# llama-server for the concurrency above."
                     if n > 1 else "")
    return f"""#!/usr/bin/env sh
# Serve {model_file} over an OpenAI-compatible HTTP API on ${{HOST:-127.0.0.1}}:${{PORT:-8080}}
# ({n} parallel request{"s" if n > 1 else ""} of up to {ctx} tokens each).
# Runs llama.cpp's `llama-server` when it is on PATH; otherwise llama-cpp-python's server with
# the Python that wrote this artifact ({serving.python}); PYTHON=... overrides it.
# {notes}{one_at_a_time}
set -eu
cd "$(dirname "$0")"
HOST="${{HOST:-127.0.0.1}}"
PORT="${{PORT:-8080}}"
if command -v llama-server >/dev/null 2>&1; then
    exec llama-server -m {m} -c {ctx * n} -np {n} -ngl {ngl} --host "$HOST" --port "$PORT"
fi
RECORDED={py}
PYTHON="${{PYTHON:-$RECORDED}}"
if ! "$PYTHON" -c "import llama_cpp.server" >/dev/null 2>&1; then
    echo "serve.sh: $PYTHON cannot run llama-cpp-python's server (gone, or without" \
         "llama-cpp-python[server]) and llama-server is not on PATH; set PYTHON=/path/to/python" \
         "of an environment with 'llama-cpp-python[server]', or install llama-server" >&2
    exit 2
fi
exec "$PYTHON" -m llama_cpp.server --model {m} --n_ctx {ctx} \\
    --n_gpu_layers {py_ngl} --host "$HOST" --port "$PORT"
"""


def why_ctx(serving: Serving) -> str:
    return serving.why or "as requested"


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


def modelfile(model_file: str, serving: Serving, jinja: str | None) -> str:
    lines = [
        "# Ollama: ollama create NAME -f Modelfile && ollama run NAME",
        f"# context: {why_ctx(serving)}",
    ]
    if serving.parallel > 1:
        lines.append(f"# {serving.parallel} concurrent requests: start the server with "
                     f"OLLAMA_NUM_PARALLEL={serving.parallel} ollama serve")
    lines += [f"FROM ./{model_file}", f"PARAMETER num_ctx {serving.context}"]
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
    if system and ('"""' in system or any(ord(c) < 32 and c not in "\t\n" for c in system)):
        # the text comes from the model file: a triple quote would end the value and let the
        # rest write directives of its own (issue 22); Ollama has no escape inside """
        lines.append("# the template's default system prompt holds a triple quote or control "
                     "characters: left out")
    elif system:
        lines.append(f'SYSTEM """{system}"""')
    return "\n".join(lines) + "\n"


def serve_files(model: Path, plan: QuantPlan, hw: HardwareProfile,
                serving: Serving) -> dict[str, str]:
    ngl, why = gpu_layers(model, plan, hw, serving.context * serving.parallel)
    return {
        "serve.sh": serve_script(model.name, serving, ngl, why),
        "Modelfile": modelfile(model.name, serving, chat_template(model)),
    }
