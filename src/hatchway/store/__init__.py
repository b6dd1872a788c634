"""State of the gateway as repositories, one per aggregate: tenants, actions, runs (with their
queue, leases and logs), idempotency keys, documents, pipelines.

Each ``store/<aggregate>.py`` holds the rules as a base class; a backend (``sqlite/``, ``dynamodb/``)
implements a handful of primitives per aggregate and builds the six over one database
(``SqliteStore``, ``DynamoDbStore``: each a ``ports.Repos``). :func:`hatchway.wiring.build_repos`
picks the backend the settings name.
"""
