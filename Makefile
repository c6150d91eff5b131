# The two set-up commands: `make demo` and `make test` each create .venv when missing.
PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed
# torch==2.13.0 is pinned in pyproject: on CPU machines of this project it is the CPU build lying on
# disk (pip's find-links). Elsewhere, CPU-only machines can set TORCH_INDEX to PyTorch's CPU index.
TORCH_INDEX ?=
TORCH_PIP_ARGS := $(if $(TORCH_INDEX),--index-url $(TORCH_INDEX),)
MODEL ?= smollm2-135m
# `make bench SECTION=float-native` runs one section (advisor/benchmarks/__main__.py): also
# predictions, hf, hf-w8, gguf-quantizers, scale (section 2 at 135M-3.0B parameters)
SECTION ?= all

.PHONY: demo test bench lint clean

$(PY):
	$(PYTHON) -m venv $(VENV)

$(STAMP): pyproject.toml | $(PY)
	$(PY) -m pip install -q $(TORCH_PIP_ARGS) "torch==2.13.0"
	$(PY) -m pip install -q -e '.[dev]'
	# llm-compressor (the gptq backend) pins transformers<=5.17 and compressed-tensors==0.19.0;
	# it runs on this project's newer pair (backends/hf/llmc.py), so it goes in without its pins
	$(PY) -m pip install -q --no-deps "llmcompressor==0.14.0.1"
	touch $(STAMP)

# --force: a rerun replaces the demo's own artifacts (the advisor never replaces one silently)
demo: $(STAMP)
	$(VENV)/bin/advisor probe
	$(VENV)/bin/advisor inspect --model $(MODEL)
	$(VENV)/bin/advisor estimate --model $(MODEL) --format Q4_K_M
	$(VENV)/bin/advisor quantize --model $(MODEL) --preset Q4_K_M --out out/demo-q4_k_m --force
	$(VENV)/bin/advisor eval --model $(MODEL) --artifact out/demo-q4_k_m --max-windows 2
	# the search: per-tensor types at the byte size of llama.cpp's Q3_K_M of the embedded model
	$(VENV)/bin/advisor recommend --model $(MODEL) --max-size 93510208 --no-imatrix --trials 8 \
		--eval-windows 2 --prompt-tokens 32 --max-new-tokens 8 --bench-requests 3 \
		--out out/demo-recommend --force

test: $(STAMP)
	sh tests/system/setup.sh
	$(VENV)/bin/pytest -q

# The benchmark suite (not part of `make test`): regenerates BENCHMARKS.md and
# data/benchmarks/*.png; artifacts and results.json go to bench-out/. The whole run took 47.5 min
# on 2 cores before the float-native section, which took 29.0 min alone (SECTION=float-native,
# user's cache partly warm); the whole run with it has not been timed yet.
bench: $(STAMP)
	$(PY) -m advisor.benchmarks --out bench-out --md BENCHMARKS.md --section $(SECTION)

lint: $(STAMP)
	$(VENV)/bin/ruff check advisor backends kernels profiles tests
	$(VENV)/bin/mypy advisor backends kernels profiles

clean:
	rm -rf $(VENV) build *.egg-info .pytest_cache
