# The README's commands. Each target sets up what it needs first (idempotent).
PY := .venv/bin/python
STAMP := .venv/.installed

.PHONY: setup run test demo screenshots bench clean lint floors

$(STAMP): pyproject.toml scripts/setup.sh
	bash scripts/setup.sh

setup:
	bash scripts/setup.sh

run: $(STAMP)
	.venv/bin/ebpftop $(ARGS)

demo: $(STAMP)
	.venv/bin/ebpftop --lab $(ARGS)

test: setup
	$(PY) -m pytest -q -p no:cacheprovider $(PYTEST_ARGS)

screenshots: $(STAMP)
	$(PY) scripts/screenshots.py

bench: $(STAMP)
	$(PY) bench/run.py

clean:
	rm -rf .venv *.egg-info .pytest_cache

# Layer contracts (import-linter), ruff and mypy; their settings are in pyproject.toml.
lint: $(STAMP)
	bash scripts/lint.sh

# The dependency floors of pyproject.toml, each installed at exactly its floor in a
# throw-away venv (made as setup.sh makes .venv) that imports every module and runs the
# app's fast tests (scripts/floors.py). Needs PyPI; about 1-4 minutes.
floors: $(STAMP)
	$(PY) scripts/floors.py
