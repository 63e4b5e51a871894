"""The scenario suite (`python -m bench.scenarios`, part of `make bench`): real programs from
Debian that schedcp was not written around, each with a labelled ground truth, measured under the
kernel's defaults, under what schedcp decides by itself, and under every library policy (the
oracle), so the report says how much of the best available improvement schedcp captured."""
