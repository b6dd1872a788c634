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

# `sam build` (template.yaml: BuildMethod makefile; samconfig.toml builds in the source folder, so
# sam copies neither .venv nor .venv-sam anywhere): the package with its aws extra and the handlers,
# as wheels for the functions' runtime (template.yaml's Runtime, x86_64) whatever Python builds
# them, without what only the CLI and `hatchway serve` use (infra/sam/lambda_requirements.py). The
# five functions run the same code: it is installed once into $(LAMBDA_BUNDLE) - again
# only when pyproject.toml, src/hatchway or handlers change - and hard-linked into each function.
LAMBDA_PYTHON = 3.13
LAMBDA_PIP = --platform manylinux2014_x86_64 --implementation cp --python-version $(LAMBDA_PYTHON) --only-binary=:all:
LAMBDA_BUNDLE = .aws-sam/hatchway-bundle-$(LAMBDA_PYTHON)
LAMBDA_INPUTS = pyproject.toml infra/sam/lambda_requirements.py $(shell find src/hatchway handlers -type f -not -name '*.py[co]' -not -path '*/node_modules/*')

$(LAMBDA_BUNDLE)/.built: $(LAMBDA_INPUTS)
	rm -rf "$(LAMBDA_BUNDLE)" "$(LAMBDA_BUNDLE).wheel" build/lib build/bdist.*  # setuptools would pack stale files left in build/lib
	python3 -m pip wheel --quiet --no-deps -w "$(LAMBDA_BUNDLE).wheel" .
	python3 infra/sam/lambda_requirements.py > "$(LAMBDA_BUNDLE).wheel/requirements.txt"
	python3 -m pip install --quiet --no-compile --target "$(LAMBDA_BUNDLE)" $(LAMBDA_PIP) --no-deps "$$(ls "$(LAMBDA_BUNDLE).wheel"/*.whl)"
	rm -rf "$(LAMBDA_BUNDLE)/bin"  # the CLI's entry point: no use in a function
	python3 -m pip install --quiet --no-compile --target "$(LAMBDA_BUNDLE)" $(LAMBDA_PIP) -r "$(LAMBDA_BUNDLE).wheel/requirements.txt"
	rm -rf "$(LAMBDA_BUNDLE).wheel" && cp -r handlers "$(LAMBDA_BUNDLE)/handlers" && find "$(LAMBDA_BUNDLE)/handlers" -name __pycache__ -prune -exec rm -rf {} +
	touch "$@"

build-ApiFunction build-EventsFunction build-PipelineFunction build-RunnerFunction build-SweeperFunction: $(LAMBDA_BUNDLE)/.built
	cp -al "$(LAMBDA_BUNDLE)/." "$(ARTIFACTS_DIR)/" 2>/dev/null || cp -a "$(LAMBDA_BUNDLE)/." "$(ARTIFACTS_DIR)/"
	rm -f "$(ARTIFACTS_DIR)/.built"
