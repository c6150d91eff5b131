"""Issue 22, finding 6: no pickle is opened. No code path of the product calls an unpickler (an
AST scan), and `advisor eval` / `advisor bench` on an artifact directory holding only
pytorch_model.bin refuse it in one line before anything loads it."""

from __future__ import annotations

import pickle
from pathlib import Path

import pytest

from advisor.errors import BadInput
from tests.security.evil import advisor, one_error_line, payload, pickle_artifact
from tests.security.scan import pickle_hits, scan, sources


def test_no_code_path_unpickles() -> None:
    assert len(sources()) > 50
    hits = scan(pickle_hits)
    assert not hits, "\n".join(hits)


def test_the_scanner_sees_every_unpickler() -> None:
    """The scan can fail: aliases, imported names and references that are not calls count."""
    src = ("import torch\nimport numpy as np\nfrom pickle import loads\nimport dill\n"
           "import joblib\nimport pandas as pd\n"
           "torch.load(f)\n"                                   # 7
           "np.load(f, allow_pickle=True)\n"                   # 8
           "np.load(f)\n"                                      # 9
           "loads(b)\n"                                        # 10
           "dill.loads(b)\n"                                   # 11
           "joblib.load(f)\n"                                  # 12
           "opener = torch.load\n"                             # 13
           "safetensors.torch.load_file(f)\n"                  # fine
           "pd.read_pickle(f)\n"                               # 15
           "transformers.AutoModel.from_pretrained(d, weights_only=False)\n"  # 16
           "np.load(f, allow_pickle=False)\n"                  # fine
           "torch.serialization.load(f)\n")                    # 18
    lines = sorted({h.line for h in pickle_hits(src)})
    assert lines == [3, 4, 7, 8, 9, 10, 11, 12, 13, 15, 16, 18], lines


def test_the_payload_fires_when_unpickled(tmp_path: Path) -> None:
    """The marker below stays absent because nothing unpickles the file, not because the
    payload is inert."""
    marker = tmp_path / "ran"
    pickle.loads(payload(marker))
    assert marker.is_file()


@pytest.mark.parametrize("config", [True, False], ids=["config", "no-config"])
@pytest.mark.parametrize("command", ["eval", "bench"])
def test_pickle_only_artifact_is_refused_in_one_line(tmp_path: Path, command: str,
                                                     config: bool) -> None:
    marker = tmp_path / "ran"
    art = pickle_artifact(tmp_path / "art", marker, config=config)
    line = one_error_line(advisor(command, "--artifact", str(art), scratch=tmp_path))
    assert "holds only pickle checkpoints (pytorch_model.bin)" in line, line
    assert "convert them to safetensors" in line, line
    assert not marker.exists()


class TorchLoadCalled(BaseException):
    pass


def test_runner_refuses_and_transformers_is_not_asked(tmp_path: Path,
                                                       monkeypatch: pytest.MonkeyPatch) -> None:
    """HfRunner's own check refuses; with it switched off, `use_safetensors=True` keeps
    transformers from falling back to torch.load (trapped here: a BaseException)."""
    import torch

    import backends.hf.runner
    from backends.hf.runner import HfRunner

    def trap(*args: object, **kwargs: object) -> None:
        raise TorchLoadCalled(str(args[:1]))

    marker = tmp_path / "ran"
    art = pickle_artifact(tmp_path / "art", marker)
    monkeypatch.setattr(torch, "load", trap)
    with pytest.raises(BadInput, match="only pickle checkpoints"):
        HfRunner(art)
    monkeypatch.setattr(backends.hf.runner, "check_hf_dir", lambda d: None)
    with pytest.raises(Exception):  # noqa: B017 - anything but the trap (a BaseException)
        HfRunner(art)
    assert not marker.exists()
