"""State of the gateway: projects, tokens, actions, runs, logs, the queue. See ``base.py``;
:func:`hatchway.wiring.build_repos` picks the backend."""
