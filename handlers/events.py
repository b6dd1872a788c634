"""Lambda entry point of run state changes (EventBridge: "Batch Job State Change", "ECS Task State Change")."""

from hatchway import runner, wiring

handler = wiring.lambda_entry(runner.events_handler(wiring.lambda_services()))
