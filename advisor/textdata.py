"""The project's default texts: calibration (importance matrix, GPTQ Hessians) and evaluation.

Both live in the repository's `data/` folder (see data/README.md: written for this project, no
shared sentences, so evaluation never measures text the quantizer calibrated on). A source
checkout or an editable install finds them beside the packages; an installed wheel finds them as
package data `advisor/_data/` when the build ships them there.
"""

from __future__ import annotations

import hashlib
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
