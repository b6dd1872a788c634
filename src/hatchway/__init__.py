"""hatchway: a serverless-style action gateway."""

__version__ = "0.1.0"
