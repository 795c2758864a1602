# The two commands of the README:
#   make demo   - set up, then run the kit's main job
#   make test   - set up, then run the whole test suite
VENV := .venv
PY := $(VENV)/bin/python

.PHONY: setup demo host-demo test test-portable subset clean

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

clean:
	rm -rf build
