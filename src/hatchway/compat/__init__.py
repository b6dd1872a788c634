"""Dialects of other platforms over hatchway's use cases: their request and answer shapes and their
rules (Pipedream Connect's replays), kept out of the services."""
