# k3s-ha: two commands on a fresh machine (as root, for the lab):
#   make demo   - venv + dependencies, lab up, deploy the HA cluster into it, show status
#   make test   - venv + dependencies, every test (unit and lab)
PYTHON ?= python3
VENV   := .venv
PY     := $(VENV)/bin/python
FAB    := $(VENV)/bin/fab

.PHONY: venv lab-deps demo test unit lab-test down clean

venv: $(VENV)/.installed

$(VENV)/.installed: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(VENV)/bin/pip install -q --upgrade pip
	$(VENV)/bin/pip install -q -e '.[test]'
	touch $@

lab-deps:
	bash scripts/install-lab-deps.sh

demo: venv lab-deps
	$(FAB) lab.up
	$(FAB) cluster.deploy --yes
	$(FAB) cluster.status

# unit tests in random order (pytest-randomly), then the lab tests in file order
# (each lab module shares one lab instance between its tests; a module whose pair moves
# through forward-only modes runs its tests by stage, tests/lab/conftest.py); the slowest
# lab tests are listed at the end
test: venv lab-deps
	$(PY) -m pytest -q -rs -m "not lab"
	$(PY) -m pytest -q -rs -m lab -p no:randomly --durations=15

unit: venv
	$(PY) -m pytest -q -m "not lab"

lab-test: venv lab-deps
	$(PY) -m pytest -q -rs -m lab -p no:randomly --durations=15

down: venv
	$(FAB) lab.down

clean: down
	rm -rf $(VENV)
