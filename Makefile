.PHONY: dev serve lint test bench validate-template

dev:
	python3 -m venv .venv && .venv/bin/pip install -q -e ".[dev]"

serve:
	.venv/bin/hatchway serve --examples

lint:
	.venv/bin/ruff check src tests handlers bench examples
	.venv/bin/ruff format --check src tests handlers bench examples
	.venv/bin/mypy

test:
	scripts/test

bench:
	.venv/bin/python bench/run.py

validate-template:
	.venv/bin/cfn-lint template.yaml
