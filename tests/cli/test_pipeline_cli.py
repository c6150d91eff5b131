"""The GGUF pipeline as a user runs it: quantize -> eval -> bench -> serve.sh, real processes."""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import pytest

pytestmark = pytest.mark.slow


def advisor(*args: str, timeout: int = 600) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "advisor.cli", *args], capture_output=True,
                          text=True, timeout=timeout)


@pytest.fixture(scope="module")
def artifact(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("pipeline") / "q4km"
    r = advisor("quantize", "--preset", "Q4_K_M", "--no-imatrix", "--out", str(out), "--json")
    assert r.returncode == 0, r.stderr
    report = json.loads(r.stdout)
    assert report["label"] == "Q4_K_M" and report["size"]["origin"] == "measured"
    assert report["model"]["source_quantization"] == "Q4_1"
    return out


def test_artifact_files(artifact: Path) -> None:
    names = {p.name for p in artifact.iterdir()}
    assert {"model.gguf", "plan.json", "serve.sh", "Modelfile", "report.json"} <= names
    report = json.loads((artifact / "report.json").read_text())
    assert report["size"]["value"] == (artifact / "model.gguf").stat().st_size == 105_454_144
    plan = json.loads((artifact / "plan.json").read_text())
    assert plan["tensor_formats"]["blk.0.ffn_down.weight"] in ("Q4_K", "Q6_K")
    assert report["provenance"]["versions"]["llama-cpp-python"]


def test_eval_and_bench_record_measurements(artifact: Path) -> None:
    r = advisor("eval", "--artifact", str(artifact), "--max-windows", "1", "--json")
    assert r.returncode == 0, r.stderr
    q = json.loads(r.stdout)
    assert 0 < q["mean_kl"]["value"] < 0.5 and q["mean_kl"]["origin"] == "measured"
    assert 0.5 < q["top1_agreement"]["value"] <= 1
    r = advisor("bench", "--artifact", str(artifact), "--prompt-tokens", "32",
                "--max-new-tokens", "8", "--requests", "3", "--json")
    assert r.returncode == 0, r.stderr
    b = json.loads(r.stdout)
    p50, p95, p99 = (b[k]["value"] for k in ("latency_p50", "latency_p95", "latency_p99"))
    assert 0 < b["ttft"]["value"] < p50 <= p95 <= p99
    assert b["peak_rss"]["value"] > 100e6  # the weights (105 MB file) are resident
    report = json.loads((artifact / "report.json").read_text())
    assert set(report["measurements"]) == {"quality", "bench"}


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def test_serve_sh_answers_a_completion(artifact: Path) -> None:
    port = _free_port()
    env = {**os.environ, "PORT": str(port), "PYTHON": sys.executable}
    proc = subprocess.Popen(["sh", str(artifact / "serve.sh")], env=env, start_new_session=True,
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        url = f"http://127.0.0.1:{port}"
        deadline = time.monotonic() + 120
        while True:
            try:
                urllib.request.urlopen(f"{url}/v1/models", timeout=2)
                break
            except OSError:
                assert proc.poll() is None, "serve.sh exited"
                assert time.monotonic() < deadline, "server did not come up in 120 s"
                time.sleep(1)
        body = json.dumps({"prompt": "The capital of France is", "max_tokens": 4,
                           "temperature": 0}).encode()
        req = urllib.request.Request(f"{url}/v1/completions", data=body,
                                     headers={"Content-Type": "application/json"})
        with urllib.request.urlopen(req, timeout=60) as resp:
            answer = json.loads(resp.read())
        assert answer["choices"][0]["text"].strip()
    finally:
        os.killpg(proc.pid, signal.SIGTERM)
        proc.wait(timeout=30)


@pytest.mark.parametrize("sig", [signal.SIGKILL, signal.SIGTERM, signal.SIGINT])
def test_killed_quantize_leaves_no_report(tmp_path: Path, sig: signal.Signals) -> None:
    out = tmp_path / "killed"
    proc = subprocess.Popen([sys.executable, "-m", "advisor.cli", "quantize", "--preset", "Q6_K",
                             "--no-imatrix", "--out", str(out)], stdout=subprocess.DEVNULL,
                            stderr=subprocess.DEVNULL)
    deadline = time.monotonic() + 120
    while not list(tmp_path.glob(".killed.partial-*/model.gguf")):  # mid-quantization
        assert proc.poll() is None and time.monotonic() < deadline, "quantize ended too soon"
        time.sleep(0.05)
    proc.send_signal(sig)
    assert proc.wait(timeout=60) != 0
    assert not (out / "report.json").exists() and not out.exists()
    if sig != signal.SIGKILL:  # a handled signal cleans its staging directory up
        assert not list(tmp_path.glob(".killed.partial-*"))
    r = advisor("quantize", "--preset", "Q6_K", "--no-imatrix", "--out", str(out))
    assert r.returncode == 0, r.stderr
    assert (out / "report.json").exists()
