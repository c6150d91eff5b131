"""`pip install .` (not editable): the wheel carries the default texts and the device profiles,
and the installed `advisor` recommends on the embedded model from a fresh virtual environment
(its dependencies borrowed from the test environment through a path file, the project itself
only from the wheel), run outside the source tree."""

from __future__ import annotations

import json
import subprocess
import sys
import sysconfig
import venv
import zipfile
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]


@pytest.mark.slow
def test_the_wheel_installs_and_recommends_from_a_fresh_venv(tmp_path: Path) -> None:
    dist = tmp_path / "dist"
    subprocess.run([sys.executable, "-m", "pip", "wheel", "-q", "--no-deps",
                    "--no-build-isolation", "-w", str(dist), str(REPO)], check=True,
                   timeout=600)
    wheel = next(dist.glob("quant_advisor-*.whl"))
    names = set(zipfile.ZipFile(wheel).namelist())
    assert {"advisor/_data/calibration.txt", "advisor/_data/evaluation.txt",
            "profiles/devices/rtx4090.json"} <= names

    env_dir = tmp_path / "fresh"
    venv.EnvBuilder(with_pip=False).create(env_dir)
    py = env_dir / "bin" / "python"
    site = Path(subprocess.run([str(py), "-c", "import sysconfig; print(sysconfig.get_paths()"
                                "['purelib'])"], capture_output=True, text=True,
                               check=True).stdout.strip())
    # the dependencies (torch, llama-cpp-python, ...) from this environment; a path file adds
    # the directory without running its own path files, so the editable install stays out
    (site / "deps.pth").write_text(sysconfig.get_paths()["purelib"] + "\n")
    subprocess.run([sys.executable, "-m", "pip", "--python", str(py), "install", "-q",
                    "--no-deps", str(wheel)], check=True, timeout=600)
    work = tmp_path / "elsewhere"
    work.mkdir()
    where = subprocess.run([str(py), "-c", "import advisor, advisor.textdata as t; "
                            "print(advisor.__file__); print(t.data_path('evaluation.txt'))"],
                           capture_output=True, text=True, cwd=work, check=True).stdout.split()
    assert all(Path(p).is_relative_to(env_dir) for p in where), where
    r = subprocess.run([str(env_dir / "bin" / "advisor"), "-q", "recommend", "--max-size",
                        "93510208", "--no-imatrix", "--trials", "4", "--candidates", "1",
                        "--presets", "1", "--eval-windows", "1", "--prompt-tokens", "16",
                        "--max-new-tokens", "4", "--bench-requests", "1", "--out", "rec",
                        "--json"], capture_output=True, text=True, cwd=work, timeout=1200)
    assert r.returncode == 0, r.stderr[-2000:]
    rep = json.loads(r.stdout)
    assert (work / "rec" / "model.gguf").stat().st_size == rep["size"]["value"] <= 93_510_208
