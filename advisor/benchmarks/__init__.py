"""`make bench`: the published benchmark suite (not part of `make test`).

Every number it writes to BENCHMARKS.md comes from the commands it runs in that invocation; the
commands are listed in the file so that any row can be reproduced by hand.
"""
