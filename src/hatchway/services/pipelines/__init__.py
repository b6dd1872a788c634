"""Pipelines: Buddy-style compositions of actions, run by the worker pool or AWS Step Functions.

Here ``service`` (use cases and the local engine's effects) and ``advancer`` (the worker pool's
thread). Definitions, execution records, the local engine's pure rules and inline steps are in
:mod:`hatchway.domain.pipelines`; the Step Functions engine in :mod:`hatchway.aws.stepfunctions`
and :mod:`hatchway.aws.asl`.
"""
