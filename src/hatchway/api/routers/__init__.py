"""The API's routes, one module per resource: each ``router(services, compat, telemetry)`` declares its
routes on a powertools ``Router`` (closures over the use cases, no globals);
:func:`hatchway.api.app.create_app` includes them in the order a request is matched."""
