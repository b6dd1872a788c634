.PHONY: dev serve lint test bench validate-template

dev:
	python3 -m venv .venv && .venv/bin/pip install -q -e ".[dev]"

serve:
	.venv/bin/hatchway serve --examples

lint:
	.venv/bin/ruff check src tests handlers bench examples
	.venv/bin/ruff format --check src tests handlers bench examples
	.venv/bin/mypy
	.venv/bin/lint-imports

test:
	scripts/test

bench:
	.venv/bin/python bench/run.py

validate-template:
	.venv/bin/cfn-lint template.yaml
	SAM_CLI_TELEMETRY=0 .venv-sam/bin/sam validate --lint --template template.yaml --region us-east-1

# `sam build` (template.yaml: BuildMethod makefile): the package with its aws extra and the
# handlers, as wheels for the Lambda runtime (python3.12, x86_64) whatever Python builds them.
LAMBDA_PIP = --platform manylinux2014_x86_64 --implementation cp --python-version 3.12 --only-binary=:all:
build-ApiFunction build-EventsFunction build-PipelineFunction build-RunnerFunction build-SweeperFunction:
	rm -rf "$(ARTIFACTS_DIR)/.wheel" && python3 -m pip wheel --quiet --no-deps -w "$(ARTIFACTS_DIR)/.wheel" .
	python3 -m pip install --quiet --target "$(ARTIFACTS_DIR)" $(LAMBDA_PIP) "$$(ls "$(ARTIFACTS_DIR)"/.wheel/*.whl)[aws]"
	rm -rf "$(ARTIFACTS_DIR)/.wheel" && cp -r handlers "$(ARTIFACTS_DIR)/handlers"
