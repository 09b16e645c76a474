# Fresh machine -> working install -> the main job or the tests. Every target sets itself up.
#   make run    # build the synthetic corpus if absent and run a small ASHA search on local Ray
#   make test   # the full test suite (the command CI runs)
#   make digits # FSDD connected digits (speaker-disjoint; and all four known speakers for the final
#               # model) + eSpeak NG synthetic digit strings for the mix
VENV ?= .venv
PY := $(VENV)/bin/python
PYTEST_ARGS ?=

.PHONY: setup run test digits
setup: $(VENV)/.installed

$(VENV)/.installed: pyproject.toml
	python3 -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -e '.[test]'
	$(PY) -m ipykernel install --sys-prefix --name python3 >/dev/null
	touch $@

run: setup
	$(VENV)/bin/asr-tune search configs/synth_asha.yaml

test: setup
	$(PY) -m pytest -q -p no:cacheprovider $(PYTEST_ARGS)

digits: setup
	$(VENV)/bin/asr-tune corpus digits --src ../shared/data/fsdd --out data/fsdd_digits --test-speakers yweweler --dev-speakers lucas --n-train 1200 --n-dev 150 --n-test 300
	$(VENV)/bin/asr-tune corpus synth --mode digits --out data/synth_digits --utterances 3000
	$(VENV)/bin/asr-tune corpus digits --src ../shared/data/fsdd --out data/fsdd_digits_final --test-speakers yweweler --n-train 1600 --n-dev 150 --n-test 300
