"""The project's default texts: calibration (importance matrix, GPTQ Hessians) and evaluation.

Both live in the repository's `data/` folder (see data/README.md: written for this project, no
shared sentences, so evaluation never measures text the quantizer calibrated on). A source
checkout or an editable install finds them beside the packages; an installed wheel finds them as
package data `advisor/_data/` when the build ships them there.
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable
from importlib import resources
from pathlib import Path

from advisor.errors import BadInput

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
    p = Path(path).expanduser()
    if not p.is_file():
        raise BadInput(f"{kind} text {p} does not exist", "pass an existing UTF-8 text file")
    try:
        return p.read_text(encoding="utf-8")
    except UnicodeDecodeError as e:
        raise BadInput(f"{kind} text {p} is not UTF-8: {e}", "pass a UTF-8 text file") from e
