"""The validation of the published-measurement latency model as markdown (BENCHMARKS.md's
section 3, first part; `python -m advisor.calibration` prints it)."""

from __future__ import annotations

import numpy as np

from advisor.calibration.fit import TESTS, fits, observations, validation

WORST = 8


def markdown() -> list[str]:
    obs = observations()
    held = validation()
    out = [f"{len(obs)} published measurements on {len({o.device for o in obs})} devices "
           "(profiles/measurements, one source per row), each predicted by the fit to its "
           "class's *other* devices (leave one device out). Error = |predicted / measured - 1| "
           "of tokens/s; band = 10th-90th percentile of measured / predicted seconds, the band "
           "every prediction carries.", "",
           "| phase | rows | devices | median error | 90th percentile |",
           "| --- | ---: | ---: | ---: | ---: |"]
    for test in TESTS:
        errs = [abs(r.ratio - 1) for r in held[test]]
        if errs:
            out.append(f"| {test} | {len(errs)} | {len({r.obs.device for r in held[test]})} | "
                       f"{100 * np.median(errs):.1f}% | {100 * np.percentile(errs, 90):.1f}% |")
    out += ["", "| class | phase | rows | devices | efficiency | fixed cost | held-out median "
            "error | band |", "| --- | --- | ---: | ---: | ---: | ---: | ---: | --- |"]
    for (cls, test), f in sorted(fits().items()):
        unit = "us/layer" if test == "decode" else "ms/prompt"
        fixed = f.coefficients.fixed_s * (1e6 if test == "decode" else 1e3)
        err = "-" if f.loo_median_error is None else f"{100 * f.loo_median_error:.1f}%"
        eff = f"{f.coefficients.efficiency:.3f}" + (
            f" (FLOPs: {f.coefficients.compute_efficiency:.3f})"
            if f.coefficients.compute_efficiency else "")
        out.append(f"| {cls} | {test} | {f.rows} | {len(f.devices)} | "
                   f"{eff} | {fixed:.0f} {unit} | {err} | "
                   f"{f.band[0]:.2f}-{f.band[1]:.2f} |")
    out += ["", f"The {WORST} worst held-out rows of each phase (predicted / measured tokens/s):",
            "", "| phase | class | device | model | predicted / measured |",
            "| --- | --- | --- | --- | ---: |"]
    for test in TESTS:
        for r in sorted(held[test], key=lambda r: -abs(r.ratio - 1))[:WORST]:
            cls = r.obs.runtime if r.obs.runtime != "llama.cpp" else f"llama.cpp/{r.obs.backend}"
            out.append(f"| {test} | {cls} | {r.obs.device} | {r.obs.label} | {r.ratio:.2f} |")
    return out
