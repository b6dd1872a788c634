"""Lambda entry point of the scheduled sweep (EventBridge schedule, every minute)."""

from hatchway import sweeper, wiring

handler = wiring.lambda_entry(sweeper.lambda_handler(wiring.lambda_services()))
