# The two commands of the README:
#   make demo   - set up, then run the kit's main job
#   make test   - set up, then run the whole test suite
VENV := .venv
PY := $(VENV)/bin/python

.PHONY: setup demo host-demo test test-portable subset bench clean

setup:
	sh scripts/setup.sh

demo: setup
	$(VENV)/bin/ccidkit uefi demo

host-demo: setup
	$(VENV)/bin/ccidkit demo

test: setup
	$(VENV)/bin/pytest -q

test-portable: setup
	$(VENV)/bin/pytest -q tests/portable tests/host/test_portable_on_micropython.py

subset: setup
	$(VENV)/bin/ccidkit subset

# The benchmarks of docs/benchmarks.md, results into docs/bench (minutes; run on a quiet machine:
# nothing else CPU-heavy at the same time).
BENCH := $(VENV)/bin/ccidkit bench
BENCH_OUT := docs/bench
bench: setup
	$(BENCH) slots --profile sysmooctsim --json-file $(BENCH_OUT)/slots-sysmooctsim.json \
	  --md $(BENCH_OUT)/slots-sysmooctsim.md --plot $(BENCH_OUT)/slots-sysmooctsim.png
	$(BENCH) slots --profile sysmosimbank-96 --no-sequential \
	  --json-file $(BENCH_OUT)/slots-sysmosimbank-96.json \
	  --md $(BENCH_OUT)/slots-sysmosimbank-96.md --plot $(BENCH_OUT)/slots-sysmosimbank-96.png
	$(BENCH) apdu --out $(BENCH_OUT)
	$(BENCH) stack --out $(BENCH_OUT)
	$(BENCH) footprint --out $(BENCH_OUT)
	$(BENCH) firmware --out $(BENCH_OUT)

clean:
	rm -rf build
