"""Pipelines as data: definitions (spec), execution records, the local planner, inline steps."""
