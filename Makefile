# The README's two commands are `make repro` (main job) and `make test` (all checks). Both install what they need.
SHELL := /bin/bash
.SHELLFLAGS := -eu -o pipefail -c
VENV := .venv
export PATH := $(CURDIR)/$(VENV)/bin:$(PATH)
export DVC_NO_ANALYTICS := 1
export HF_HUB_OFFLINE := 1
export MUJOCO_GL := egl
export PYTHONHASHSEED := 0

.PHONY: install repro test sync-check nbtest pytest docs smoke smoke-smolvla smoke-tinyvla

install: $(VENV)/.installed ## venv, torch, salus (editable) and its tools, lerobot, Jupyter kernel
$(VENV)/.installed: scripts/install.sh setup.py settings.ini requirements/constraints.txt requirements/apt.txt requirements/lerobot.txt
	bash scripts/install.sh
	touch $@

repro: install ## main job: params checked, then the whole DVC pipeline on params.yaml's active profile, then the README's results
	salus_repro

test: install sync-check nbtest pytest smoke-smolvla smoke-tinyvla docs ## every check CI runs
	@echo "make test: all checks passed"

sync-check: install ## the exported library matches the notebooks
	nbdev_export
	git diff --exit-code -- salus
	@untracked=$$(git ls-files --others --exclude-standard -- salus); \
	  if [ -n "$$untracked" ]; then echo "nbdev_export made files git does not track: $$untracked"; exit 1; fi

nbtest: install ## run the library notebooks
	nbdev_test --n_workers 2

pytest: install ## tests/, including the pipeline on the smoke profile in a scratch copy
	rc=0; pytest tests/ || rc=$$?; if [ $$rc -eq 5 ]; then echo "pytest collected no tests: failing"; fi; exit $$rc

docs: install ## the documentation site, offline, warnings as errors, checked in headless chromium
	python docs/build.py
	python docs/check.py

smoke: install ## only the pipeline on the smoke profile, in a scratch copy
	salus_repro_scratch --profile smoke

smoke-smolvla: install ## the whole pipeline with a tiny SmolVLA trained by lerobot (profile smolvla_smoke), in a scratch copy
	salus_repro_scratch --profile smolvla_smoke

smoke-tinyvla: install ## the whole pipeline with a tiny TinyVLA fine-tuned here (profile tinyvla_smoke), in a scratch copy
	salus_repro_scratch --profile tinyvla_smoke
