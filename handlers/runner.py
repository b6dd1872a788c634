"""Lambda entry point of the runner function: executes a run of an HTTP action, by id."""

from hatchway import runner, wiring

handler = wiring.lambda_entry(runner.lambda_handler(wiring.lambda_services()))
