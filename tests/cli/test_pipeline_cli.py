"""The GGUF pipeline as a user runs it: quantize -> eval -> bench -> serve.sh, real processes."""

from __future__ import annotations

import json
import os
import shutil
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


def test_an_artifact_is_not_clobbered_without_force(artifact: Path, tmp_path: Path) -> None:
    """Issue 21: re-running quantize over an artifact replaced it and dropped its measurements."""
    before = (artifact / "report.json").read_bytes()
    for cmd in (["quantize", "--preset", "Q8_0", "--no-imatrix"], ["recommend", "--trials", "2"]):
        r = advisor(*cmd, "--out", str(artifact))
        assert r.returncode == 2, r.stderr
        assert r.stderr.strip().splitlines() == [r.stderr.strip()] and "--force" in r.stderr
    assert (artifact / "report.json").read_bytes() == before
    copy = tmp_path / "copy"
    shutil.copytree(artifact, copy)
    r = advisor("quantize", "--preset", "Q8_0", "--no-imatrix", "--out", str(copy), "--force",
                "--json")
    assert r.returncode == 0, r.stderr
    assert json.loads((copy / "report.json").read_text())["label"] == "Q8_0"


def test_a_measurement_of_a_replaced_artifact_is_not_recorded(artifact: Path,
                                                               tmp_path: Path) -> None:
    """Issue 22, finding 4: a bench running while the artifact was re-quantized wrote the old
    plan's report beside the new weights."""
    from advisor.errors import BadInput
    from advisor.measure.stage import read_artifact, record

    copy = tmp_path / "copy"
    shutil.copytree(artifact, copy)
    measured = read_artifact(copy)  # the bench starts ...
    on_disk = json.loads((copy / "report.json").read_text())  # ... a re-quantize lands
    on_disk["digests"] = {"model.gguf": "sha256:" + "0" * 64}
    (copy / "report.json").write_text(json.dumps(on_disk))
    with pytest.raises(BadInput, match="replaced while it was measured"):
        record(copy, measured, "probe", {"x": 1})
    assert json.loads((copy / "report.json").read_text()) == on_disk
    record(copy, read_artifact(copy), "probe", {"x": 1})  # measured afresh: recorded
    assert json.loads((copy / "report.json").read_text())["measurements"]["probe"] == {"x": 1}


def test_a_candidate_of_another_source_is_not_reused(artifact: Path) -> None:
    """Issue 22, finding 3: candidates under `D.candidates` were reused when only the plan
    matched, so the artifact for model B shipped model A's weights under B's name."""
    from advisor.plan import QuantPlan
    from advisor.recommend.candidates import reusable

    report = json.loads((artifact / "report.json").read_text())
    plan = QuantPlan.from_dict(report.get("planned") or report["plan"])  # as recommend asks
    assert reusable(artifact, plan, report["model"]["digest"]) is not None
    assert reusable(artifact, plan, "sha256:" + "0" * 64) is None


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def clean_shell_env(**extra: str) -> dict[str, str]:
    """A fresh login shell's environment: no venv on PATH, no VIRTUAL_ENV, PYTHON or
    PYTHONPATH (issue 21: serve.sh failed with `No module named 'llama_cpp'` outside the venv)."""
    keep = {k: v for k, v in os.environ.items()
            if k in ("HOME", "LANG", "LC_ALL", "TMPDIR", "USER", "QUANT_ADVISOR_CACHE")}
    return {**keep, "PATH": "/usr/local/bin:/usr/bin:/bin", **extra}


def serve_and_chat(artifact: Path, tmp: Path) -> dict:
    """Start `./serve.sh` of `artifact` as a user would (from another directory, a clean shell),
    on loopback; check /v1/models, then answer a chat completion whose prompt is over 1,000
    tokens; return that answer."""
    port = _free_port()
    env = clean_shell_env(PORT=str(port), HOST="127.0.0.1")
    log = (tmp / "serve.log").open("w")
    proc = subprocess.Popen([str(artifact / "serve.sh")], env=env, cwd=tmp, start_new_session=True,
                            stdout=log, stderr=subprocess.STDOUT)
    try:
        url = f"http://127.0.0.1:{port}"
        deadline = time.monotonic() + 180
        while True:
            try:
                with urllib.request.urlopen(f"{url}/v1/models", timeout=2) as resp:
                    models = json.loads(resp.read())
                break
            except OSError:
                assert proc.poll() is None, (tmp / "serve.log").read_text()[-2000:]
                assert time.monotonic() < deadline, "server did not come up in 180 s"
                time.sleep(1)
        assert models["data"] and models["data"][0]["id"]
        from advisor.textdata import default_evaluation_text

        long_text = default_evaluation_text()[:6000]
        body = json.dumps({"messages": [
            {"role": "user", "content": f"{long_text}\n\nWhat is the capital of France?"}],
            "max_tokens": 8, "temperature": 0}).encode()
        req = urllib.request.Request(f"{url}/v1/chat/completions", data=body,
                                     headers={"Content-Type": "application/json"})
        with urllib.request.urlopen(req, timeout=300) as resp:
            answer: dict = json.loads(resp.read())
        assert answer["usage"]["prompt_tokens"] > 1000, answer["usage"]
        assert answer["choices"][0]["message"]["content"].strip()
        return answer
    finally:
        os.killpg(proc.pid, signal.SIGTERM)
        proc.wait(timeout=30)
        log.close()


def test_serve_sh_answers_a_long_chat_from_a_clean_shell(artifact: Path, tmp_path: Path) -> None:
    report = json.loads((artifact / "report.json").read_text())
    # the trained context (8,192 for SmolLM2), not the benchmark's prompt + new tokens
    assert report["serve"]["context"] == 8192 and report["serve"]["python"] == sys.executable
    assert "PARAMETER num_ctx 8192" in (artifact / "Modelfile").read_text()
    serve_and_chat(artifact, tmp_path)


def test_serve_sh_names_a_missing_interpreter(artifact: Path, tmp_path: Path) -> None:
    r = subprocess.run([str(artifact / "serve.sh")], capture_output=True, text=True, cwd=tmp_path,
                       env=clean_shell_env(PYTHON=str(tmp_path / "gone" / "python3")),
                       timeout=60)
    assert r.returncode == 2 and "cannot run llama-cpp-python's server" in r.stderr
    assert "PYTHON=" in r.stderr and len(r.stderr.strip().splitlines()) == 1


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
