"""Lambda entry point of hatchway's pipeline function.

The pipelines' state machines call it for their steps (``{"op": "start_step" | "sync_step" |
"await_approval", ...}``) and EventBridge sends it their status changes (``aws.states``).
"""

from hatchway import wiring

handler = wiring.pipelines_handler()
