# The README's commands. Each target sets up what it needs first (idempotent).
PY := .venv/bin/python
STAMP := .venv/.installed

.PHONY: setup run test demo screenshots bench clean lint floors install

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

# A node's install, as root: the package in a venv of its own under PREFIX (with Debian's
# bcc through the system site-packages, as setup.sh does; run `make setup` first for the
# packages and headers), `ebpftop` on the PATH, the systemd units of deploy/ and the
# `ebpftop` group whose members may view the agent. Enables and starts nothing:
#   systemctl enable --now ebpftop-agent ebpftop-serve
PREFIX ?= /opt/ebpftop
UNITDIR ?= /etc/systemd/system
BINDIR ?= /usr/local/bin
install:
	@[ "$$(id -u)" -eq 0 ] || { echo "make install: run as root (sudo make install)" >&2; exit 1; }
	/usr/bin/python3 -m venv --system-site-packages $(PREFIX)/venv
	$(PREFIX)/venv/bin/pip install -q --disable-pip-version-check --upgrade .
	getent group ebpftop >/dev/null || groupadd --system ebpftop
	install -d $(UNITDIR) $(BINDIR)
	sed 's|/opt/ebpftop/|$(PREFIX)/|g' deploy/ebpftop-agent.service > $(UNITDIR)/ebpftop-agent.service
	sed 's|/opt/ebpftop/|$(PREFIX)/|g' deploy/ebpftop-serve.service > $(UNITDIR)/ebpftop-serve.service
	chmod 0644 $(UNITDIR)/ebpftop-agent.service $(UNITDIR)/ebpftop-serve.service
	ln -sfn $(PREFIX)/venv/bin/ebpftop $(BINDIR)/ebpftop
	systemctl daemon-reload 2>/dev/null || true  # no systemd as PID 1 (a container): nothing to reload
	@echo "installed: $(BINDIR)/ebpftop, $(UNITDIR)/ebpftop-{agent,serve}.service (not enabled)"

# The agent's container image (deploy/Containerfile) built with podman, and smoke-tested the
# way deploy/kubernetes/daemonset.yaml runs it (scripts/image_smoke.sh says what it checks).
# As root; NOT part of `make test`: the first run downloads a few hundred MB (a Debian base
# made with mmdebstrap where no registry answers, bcc, LLVM, PyPI) and takes minutes.
.PHONY: image image-smoke
image:
	bash scripts/image_smoke.sh --build-only

image-smoke:
	bash scripts/image_smoke.sh
