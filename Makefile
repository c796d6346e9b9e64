# Two commands do everything on a fresh machine: `make demo` and `make test`.
PYTHON ?= python3
VENV   ?= .venv
PY     := $(VENV)/bin/python
DIGITS := $(VENV)/bin/digits
STAMP  := $(VENV)/.installed-stamp
DATA   ?= data

.PHONY: install browser postgres demo data pictures docs test test-all clean

# The venv is (re)built whenever the pins or the project metadata change.
$(STAMP): requirements.lock pyproject.toml
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --disable-pip-version-check -r requirements.lock
	$(PY) -m pip install --quiet --disable-pip-version-check --no-deps -e .
	touch $(STAMP)

install: $(STAMP)

# The built-in data: the real MNIST as a Kaggle folder with its answer key. prepare.json is
# written last, so a prepare that was killed half-way is done again.
$(DATA)/prepare.json: | $(STAMP)
	$(DIGITS) data prepare --out $(DATA)

data: $(DATA)/prepare.json

demo: install data
	$(DIGITS) tutorial --data $(DATA)

# The README's lists of models, presets and library names, rewritten from the code.
docs: install
	$(PY) -m digits.docs README.md

# The README's pictures (docs/images/), from a real tutorial run of this checkout.
pictures: install data
	DIGITS=$(DIGITS) DATA=$(DATA) bash docs/pictures.sh

# Debian's chromium for the draw-a-digit end-to-end test (Playwright drives it; it never
# downloads a browser). Skipped when one is there already.
SUDO := $(shell [ "$$(id -u)" = 0 ] || echo sudo)
# The Liberation fonts too: outlier exposure draws its letters from them (chromium depends on them anyway).
browser:
	@test -x /usr/bin/chromium || { $(SUDO) apt-get update && $(SUDO) apt-get install -y chromium; }
	@test -d /usr/share/fonts/truetype/liberation || $(SUDO) apt-get install -y fonts-liberation

# PostgreSQL's server for the study-storage test (Debian's package; skipped when present).
postgres:
	bash .ci/ensure-postgres

test: install browser postgres
	$(PY) -m pytest

# Also the long runs marked `slow`.
test-all: install browser postgres
	$(PY) -m pytest -m ""

clean:
	rm -rf $(VENV) runs .pytest_cache
