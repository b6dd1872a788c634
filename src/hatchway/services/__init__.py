"""The use cases behind the API, the CLI, the worker pool and the Lambda handlers."""
