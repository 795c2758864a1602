"""Benchmarks (`ccidkit bench NAME`): each module here that defines ``NAME``
is one benchmark; ``scripts/cmd_bench.py`` finds them by that attribute.

A benchmark module defines:

    NAME = "slots"                   # the subcommand
    HELP = "one line"
    def add_arguments(parser): ...   # its own options (the common ones are added for it)
    def run(args) -> dict            # the self-describing result (JSON-serialisable)
    def markdown(result) -> str      # a markdown table of it
    def plot(result, path)           # a PNG (matplotlib, Agg backend)

Benchmarks measure; they never judge. The test suite only smoke-runs them
with tiny sizes (tests/host/test_bench_*.py).
"""
