"""Pipelines: Buddy-style compositions of actions, run by the worker pool or AWS Step Functions.

``model`` (definitions and their rules), ``records`` (what the store keeps), ``engine`` (the local
engine's pure rules), ``inline`` (Run Docker container steps as actions), ``service`` (use cases
and the local engine's effects), ``advancer`` (the worker pool's thread), ``asl`` and ``aws`` (the
Step Functions engine). Nothing is imported here, so the store can use ``records`` cheaply.
"""
