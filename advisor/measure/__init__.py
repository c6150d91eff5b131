"""The measure stage: every candidate against the same reference, text and metric.

    stage.py    `evaluate` and `bench` of a written artifact, recorded in its report.json
    quality/    the F16 reference's log-probs (cached), windows, KL / top-1 / perplexity
    latency/    the bench of an artifact in a child process (TTFT, per-token, p95, peak RSS)

This face imports nothing: the bench child (measure.latency.worker) stays light.
"""
