"""python -m advisor.calibration: the leave-one-device-out validation, as markdown."""

from advisor.calibration.report import markdown

print("\n".join(markdown()))
