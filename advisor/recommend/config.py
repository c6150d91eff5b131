"""What `advisor recommend` is asked: the config dataclass (its defaults are the CLI's and the
TUI's) and the targets as the user wrote them."""

from __future__ import annotations

from dataclasses import dataclass, field

from advisor.errors import BadInput
from advisor.estimate import Workload
from advisor.formats import DEFAULT_GROUP_SIZE, GROUP_SIZES
from advisor.measure.stage import DEFAULT_WINDOW
from advisor.plan import BOTH, GGUF_QUANTIZERS, LLAMA_CPP
from advisor.recommend.offers import backend_choices
from advisor.targets import Targets, parse_duration, parse_size
from backends.hf import resolve_device

DEFAULT_PRESETS = ("Q2_K", "Q3_K_S", "Q3_K_M", "Q3_K_L", "Q4_0", "Q4_K_S", "Q4_K_M", "Q5_0",
                   "Q5_K_S", "Q5_K_M", "Q6_K", "Q8_0")
"""Stock llama.cpp presets offered as candidates (none needs an importance matrix)."""
EVAL_WINDOW = DEFAULT_WINDOW
"""Tokens of each evaluation window of the candidates' KL (`advisor eval`'s default)."""


GGUF_QUANTIZER_CHOICES = (*GGUF_QUANTIZERS, BOTH)


@dataclass(frozen=True)
class RecommendConfig:
    """How hard the pipeline works: realized search plans, presets realized nearest the budget,
    trials, eval windows, bench requests."""

    # 2: in the three default runs measured (embedded model, Q3_K_M x2 and Q4_K_M budgets) the
    # surrogate's best plan always measured the lowest KL and its 2nd/3rd within 1-15%, so a
    # third plan (a quantization and an eval, ~26 s) bought nothing; one runner-up guards the
    # surrogate's ranking.
    candidates: int = 2
    presets_measured: int = 2
    trials: int = 30
    seed: int = 0
    eval_windows: int = 2
    bench_requests: int = 3
    bench_warmup: int = 1
    imatrix: bool = True
    threads: int = 0
    storage: str | None = None
    measured_trials: int = 0  # trials of the measured phase (each quantized and measured)
    bench_all: bool = False  # bench every candidate, not only those the pick could be
    presets: tuple[str, ...] = DEFAULT_PRESETS
    flags: dict[str, str] = field(default_factory=dict)  # targets as the user wrote them
    backend: str = "auto"  # advisor.recommend.offers.backend_choices()
    group_size: int = DEFAULT_GROUP_SIZE  # of the HF int schemes
    serve_context: int = 0  # --context: the serving files' context (0: trained, capped by memory)
    force: bool = False  # --force: replace an artifact already at --out
    imatrix_file: str | None = None  # --imatrix FILE: an existing importance matrix
    # --sensitivity-anchors: decoder layers measured end to end (0: every layer), the others
    # scaled from them (advisor.sensitivity.table.SensitivityConfig.anchors). 8: on the embedded
    # model at Q3_K_M's size the pick measured 0.0344 nats against 0.0346 with every layer
    # measured (4 windows), from a table made in 35 s instead of 53 s; on its float-native
    # (rotated) copy 0.0607 against 0.0593 (2.4% worse, inside both picks' 95% intervals). The
    # replays no longer grow with depth x size.
    sensitivity_anchors: int = 8
    device: str = "auto"  # --device: where the torch stages run (backends.hf.DEVICES)
    # --gguf-quantizer: who writes the GGUF candidates: llama.cpp, AutoRound's GGUF export
    # (backends.gguf.autoround), or both, each measured, the pick choosing between them
    gguf_quantizer: str = LLAMA_CPP

    def __post_init__(self) -> None:
        for name in ("candidates", "trials", "eval_windows", "bench_requests"):
            v = getattr(self, name)
            if not isinstance(v, int) or v < 1:
                raise BadInput(f"--{name.replace('_', '-')} {v!r} must be an integer >= 1",
                               "pass a positive integer")
        if self.sensitivity_anchors < 0 or self.sensitivity_anchors == 1:
            raise BadInput(f"--sensitivity-anchors {self.sensitivity_anchors} must be 0 (every "
                           "layer measured) or at least 2", "pass 0 or an integer >= 2")
        if self.device not in ("auto", "cpu"):  # an accelerator named: there, before any work
            resolve_device(self.device)
        if self.presets_measured < 0 or self.bench_warmup < 0 or self.measured_trials < 0:
            raise BadInput("preset and warm-up counts must be >= 0", "pass 0 or more")
        if self.gguf_quantizer not in GGUF_QUANTIZER_CHOICES:
            raise BadInput(f"--gguf-quantizer {self.gguf_quantizer!r}",
                           f"use one of {', '.join(GGUF_QUANTIZER_CHOICES)}")
        if self.backend not in backend_choices():
            raise BadInput(f"--backend {self.backend!r} is not a backend recommend knows",
                           f"use one of {', '.join(backend_choices())}")
        if self.storage is not None:  # refused before any work, and before a stray file
            from advisor.search.study import check_storage

            check_storage(self.storage)
        if self.group_size not in GROUP_SIZES:
            raise BadInput(f"--group-size {self.group_size} is not supported",
                           f"use one of {', '.join(map(str, GROUP_SIZES))} (-1 = per channel)")

    def flag(self, key: str, value: object) -> str:
        """`--key value` as the user wrote it (`flags`), else with the parsed value."""
        return f"--{key} {self.flags.get(key, value)}"


def targets_from_args(*, prompt_tokens: int, new_tokens: int, concurrency: int, context: int,
                      vram: str | None, mem: str | None, max_size: str | None,
                      p95: str | None, max_kld: str | float | None) -> Targets:
    """Targets from CLI strings; BadInput (exit 2) on any bad value."""
    try:
        workload = Workload(prompt_tokens=prompt_tokens, new_tokens=new_tokens,
                            concurrency=concurrency, context=context)
    except ValueError as e:
        raise BadInput(str(e), "pass positive integers") from None
    kld = None
    if max_kld is not None:
        try:
            kld = float(max_kld)
        except ValueError:
            raise BadInput(f"--max-kld {max_kld!r} is not a number", "e.g. --max-kld 0.05") \
                from None
        if not (kld > 0 and kld < float("inf")):
            raise BadInput(f"--max-kld {max_kld!r} must be a positive number", "e.g. 0.05")
    return Targets(
        workload=workload,
        vram_bytes=parse_size(vram, "--vram") if vram is not None else None,
        mem_bytes=parse_size(mem, "--mem") if mem is not None else None,
        max_size_bytes=parse_size(max_size, "--max-size") if max_size is not None else None,
        p95_s=parse_duration(p95, "--p95") if p95 is not None else None,
        max_kld=kld,
    )
