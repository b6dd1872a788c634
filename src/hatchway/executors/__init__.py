"""Where actions run here: host processes (``process``, with ``sandbox``, ``journal``, ``spares``),
HTTP calls (``http``) and local containers (``containers/``).

The contract they share (invocation, outcome, verdict) is :mod:`hatchway.domain.attempts`; which
executor runs what is :class:`hatchway.services.placement.Placement`, wired in :mod:`hatchway.wiring`.
"""
