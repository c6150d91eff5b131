"""The project's default texts, calibration (importance matrix, GPTQ Hessians) and evaluation,
and how a text is cut into token windows: the same tokens for every stage and candidate.

Both live in the repository's `data/` folder (see data/README.md: written for this project, no
shared sentences, so evaluation never measures text the quantizer calibrated on). A source
checkout or an editable install finds them beside the packages; an installed wheel finds them as
package data `advisor/_data/` when the build ships them there.

Windows follow llama.cpp's `llama-perplexity --kl-divergence`: consecutive, non-overlapping
chunks of `n_ctx` tokens, each evaluated from an empty cache, each starting with BOS when the
model uses one, and only the second half scored (positions n_ctx/2 .. n_ctx-2 predicting the next
token), so that every scored token sees at least n_ctx/2 tokens of context.
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable
from dataclasses import asdict, dataclass
from importlib import resources
from pathlib import Path
from typing import Any

import numpy as np

from advisor.errors import BadInput, user_path

CALIBRATION_FILE = "calibration.txt"
EVALUATION_FILE = "evaluation.txt"

# <repo>/advisor/textdata.py -> <repo>/data
_REPO_DATA = Path(__file__).resolve().parent.parent / "data"


def data_path(name: str) -> Path:
    """Path of a file of the project's data folder; BadInput naming where it looked otherwise."""
    candidate = _REPO_DATA / name
    if candidate.is_file():
        return candidate
    packaged = resources.files("advisor").joinpath("_data", name)
    if packaged.is_file():
        return Path(str(packaged))
    raise BadInput(
        f"the default text {name!r} is missing (looked in {_REPO_DATA} and advisor/_data)",
        "reinstall quant-advisor, or pass your own text file",
    )


def _read(name: str) -> str:
    return data_path(name).read_text(encoding="utf-8")


def default_calibration_text() -> str:
    """data/calibration.txt: what the importance matrix and GPTQ/AWQ statistics see."""
    return _read(CALIBRATION_FILE)


def default_evaluation_text() -> str:
    """data/evaluation.txt: held-out text for KL divergence and perplexity."""
    return _read(EVALUATION_FILE)


def text_sha256(text: str) -> str:
    """Digest of a text as UTF-8, for cache keys and reports."""
    return hashlib.sha256(text.encode("utf-8")).hexdigest()


_DEFAULTS: dict[str, Callable[[], str]] = {
    "evaluation": default_evaluation_text,
    "calibration": default_calibration_text,
}


def load_text(path: str | Path | None = None, kind: str = "evaluation") -> str:
    """The text at `path`, or the project's default `kind` text ("evaluation", "calibration")."""
    if path is None:
        if kind not in _DEFAULTS:
            raise ValueError(f"load_text(kind={kind!r}); expected one of {sorted(_DEFAULTS)}")
        return _DEFAULTS[kind]()
    p = user_path(path, f"the {kind} text")
    if p.is_dir():
        raise BadInput(f"{kind} text {p} is a directory", "pass a UTF-8 text file")
    if not p.exists():
        raise BadInput(f"{kind} text {p} does not exist", "pass an existing UTF-8 text file")
    if not p.is_file():  # a FIFO would block the read, a device never end
        raise BadInput(f"{kind} text {p} is not a regular file", "pass a UTF-8 text file")
    try:
        text = p.read_text(encoding="utf-8")
    except UnicodeDecodeError as e:
        raise BadInput(f"{kind} text {p} is not UTF-8: {e}", "pass a UTF-8 text file") from None
    if not text.strip():  # "" means "the default" downstream: an empty file must not mean that
        raise BadInput(f"{kind} text {p} is empty",
                       "pass a text file with content, or leave the flag out for the default")
    return text


WINDOW_SCHEMA_VERSION = 1

@dataclass(frozen=True)
class WindowConfig:
    """How the evaluation text is cut: window length and how many windows (0 = all)."""

    n_ctx: int = 512
    max_windows: int = 0
    version: int = WINDOW_SCHEMA_VERSION

    def __post_init__(self) -> None:
        if not isinstance(self.n_ctx, int) or self.n_ctx < 4:
            raise ValueError(f"WindowConfig.n_ctx={self.n_ctx!r}; expected an integer >= 4")
        if not isinstance(self.max_windows, int) or self.max_windows < 0:
            raise ValueError(f"WindowConfig.max_windows={self.max_windows!r}; "
                             "expected an integer >= 0 (0 = all windows)")

    @property
    def first_scored(self) -> int:
        """Position of the first scored logit."""
        return self.n_ctx // 2

    @property
    def n_scored(self) -> int:
        """Scored positions per window: first_scored .. n_ctx-2 (the last has no next token)."""
        return self.n_ctx - 1 - self.first_scored

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> WindowConfig:
        if d.get("version", WINDOW_SCHEMA_VERSION) != WINDOW_SCHEMA_VERSION:
            raise ValueError(f"WindowConfig version {d.get('version')} != {WINDOW_SCHEMA_VERSION}")
        return cls(n_ctx=int(d["n_ctx"]), max_windows=int(d.get("max_windows", 0)))


def make_windows(tokens: list[int], cfg: WindowConfig, bos: int | None = None) -> np.ndarray:
    """Cut `tokens` into int32 windows [n_windows, n_ctx]; BadInput when not one window fits."""
    n = len(tokens) // cfg.n_ctx
    if n == 0:
        raise BadInput(
            f"the evaluation text has {len(tokens)} tokens; one window needs {cfg.n_ctx}",
            f"give a text of at least {cfg.n_ctx} tokens or a smaller window",
        )
    if cfg.max_windows:
        n = min(n, cfg.max_windows)
    windows = np.asarray(tokens[: n * cfg.n_ctx], dtype=np.int32).reshape(n, cfg.n_ctx).copy()
    if bos is not None:
        windows[:, 0] = bos  # as llama-perplexity does for every chunk
    return windows
