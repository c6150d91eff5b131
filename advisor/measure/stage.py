"""`advisor eval` and `advisor bench`: measure a written artifact, record it in its report."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from advisor.artifact import REPORT_FILE, is_complete, locked, write_report
from advisor.errors import BadInput
from advisor.inspect.untrusted import check_hf_dir
from advisor.measurement import BenchResult, QualityResult
from advisor.modelspec import ModelSpec
from advisor.progress import Stages

DEFAULT_WINDOW = 512  # tokens per evaluation window (llama-perplexity's default context)
DEFAULT_EVAL_WINDOWS = 8  # 8 x 512 tokens, 2,048 scored: the default text has 21 windows


def read_artifact(artifact: Path) -> dict[str, Any]:
    """The report of a complete artifact directory; BadInput for anything else (a directory
    with custom code or pickle-only weights included)."""
    if not artifact.is_dir():
        raise BadInput(f"--artifact {artifact} is not a directory",
                       "pass a directory written by `advisor quantize`")
    if not is_complete(artifact):
        raise BadInput(f"--artifact {artifact} is not a complete advisor artifact (no valid "
                       f"{REPORT_FILE})", "pass a directory written by `advisor quantize`")
    # before anything loads it: an artifact directory is a model directory too (finding 6:
    # custom code, pickle-only weights), whoever wrote its report.json
    check_hf_dir(artifact)
    report: dict[str, Any] = json.loads((artifact / REPORT_FILE).read_text())
    return report


def evaluate(spec: ModelSpec, artifact: Path, text: str, max_windows: int, window: int,
             stages: Stages, threads: int = 0,
             report: dict[str, Any] | None = None, device: str = "auto") -> QualityResult:
    """KL, top-1 and perplexity of the artifact against `spec`'s F16 reference, recorded in its
    report.json. `report`: the artifact's report when the caller holds it (it is updated in
    place and written); read from the directory otherwise. `device`: a `--device` value, where a
    streamed reference runs (advisor.measure.quality.streamed)."""
    from advisor.measure.quality import WindowConfig, measure_quality, reference_logprobs
    from backends import get_backend
    from backends.gguf import f16_reference

    report = read_artifact(artifact) if report is None else report
    longest = max(spec.context_length, DEFAULT_WINDOW)
    if not 4 <= window <= longest or max_windows < 0:
        # llama.cpp allocates the KV cache and logits of the whole window: --window 1000000 asked
        # it for 23 GB (issue 22); past the trained context the KL measures little (the default
        # window stays allowed for the tiny test models trained on fewer tokens)
        raise BadInput(f"--window {window} --max-windows {max_windows}",
                       f"pass a window of 4..{longest} tokens (the model's trained context) "
                       "and --max-windows >= 0")
    cfg = WindowConfig(n_ctx=window, max_windows=max_windows)
    with stages.step("preparing the F16 reference"):
        ref_model = f16_reference(spec, threads)
    with stages.bar("reference log-probs (cached after the first run)") as bar:
        ref = reference_logprobs(ref_model, text, cfg, threads=threads, on_progress=bar,
                                 device=device)
    runner = get_backend(report["backend"]).load(artifact, n_ctx=window, threads=threads)
    try:
        with stages.bar(f"scoring {report.get('label') or artifact.name}") as bar:
            result = measure_quality(runner, ref, on_progress=bar)
    finally:
        runner.close()
    record(artifact, report, "quality", result.to_dict())
    return result


def bench(artifact: Path, prompt_tokens: int, new_tokens: int, concurrency: int,
          requests: int, warmup: int, text: str, stages: Stages,
          threads: int = 0, report: dict[str, Any] | None = None) -> BenchResult:
    """Latency and memory of the artifact under the workload, in a child process, recorded in
    its report.json (`report` as for `evaluate`)."""
    from advisor.measure.latency import BenchTarget, BenchWorkload, run_bench

    report = read_artifact(artifact) if report is None else report
    try:
        wl = BenchWorkload(prompt_tokens=prompt_tokens, new_tokens=new_tokens,
                           concurrency=concurrency, n_requests=requests, warmup=warmup)
    except ValueError as e:
        raise BadInput(str(e), "pass positive integers (warm-up may be 0)") from None
    est, identity = report.get("estimate"), _identity(report)
    on_host = (report.get("hardware") or {}).get("source") == "probed"
    if on_host and isinstance(est, dict) and est.get("runtime") == "llama.cpp":
        from advisor.calibration import host, kernels
        from advisor.estimate import recalibrated
        from advisor.measure.latency.kernels import ensure

        # time this host's kernels for the types this bench has not seen yet (seconds each,
        # once per host): the prediction it is compared with then knows them
        feats = host.numeric(est.get("features"))
        if missing := kernels.untimed(feats, host.host_key()):
            with stages.bar(f"timing this host's llama.cpp kernels ({', '.join(sorted(missing))})"):
                ensure(feats, host.host_key(), threads)
        if (better := recalibrated(est, exclude=identity)) is not None:
            record(artifact, report, "estimate", better)
    with stages.bar(f"benchmarking {report.get('label') or artifact.name}") as bar:
        result = run_bench(BenchTarget(str(artifact), report["backend"]), wl, text=text,
                           threads=threads, on_progress=bar)
    record(artifact, report, "bench", result.to_dict())
    est = report.get("estimate")
    if (on_host and isinstance(est, dict) and isinstance(est.get("features"), dict)
            and est.get("runtime") == "llama.cpp"
            and _same_requests(est.get("workload"), wl.workload.to_dict())):
        from advisor.calibration import host

        host.add(identity, est["features"], result.per_token.value, result.ttft.value)
    return result


def _same_requests(a: Any, b: dict[str, Any]) -> bool:
    """The estimate's requests are the bench's (its context may be longer: a bench allocates
    the prompt and the new tokens only)."""
    keys = ("prompt_tokens", "new_tokens", "concurrency")
    return isinstance(a, dict) and all(a.get(k) == b[k] for k in keys)


def _identity(report: dict[str, Any]) -> str:
    """The weights a bench measured (their digests): its own benches never calibrate its
    prediction."""
    import hashlib

    return hashlib.sha256(json.dumps(report.get("digests"), sort_keys=True)
                          .encode()).hexdigest()[:16]


def record(artifact: Path, report: dict[str, Any], key: str, value: dict[str, Any]) -> None:
    """Add a measurement to the artifact's report.json (replaced atomically), under the
    artifact's lock, and only if the artifact on disk is still the one measured: the same
    weights (digests) and plan. Issue 22 saw a bench that ran while the artifact was
    re-quantized write the old plan's report beside the new weights. The report on disk is
    re-read, so an eval and a bench recording one after the other keep both results."""
    with locked(artifact):
        try:
            now = json.loads((artifact / REPORT_FILE).read_text())
        except (OSError, ValueError):
            now = {}
        same = (now.get("digests") == report.get("digests")
                and now.get("plan") == report.get("plan"))
        if not same:
            raise BadInput(f"the artifact at {artifact} was replaced while it was measured; "
                           "its report is left as it is", "measure it again")
        if key == "estimate":  # a re-prediction, not a measurement
            now["estimate"] = value
        else:
            now.setdefault("measurements", {})[key] = value
        write_report(artifact, now)
        report.clear()
        report.update(now)
