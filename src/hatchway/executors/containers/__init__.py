"""Container executors over one local Docker engine: ``docker`` (``docker run`` per attempt) and
``lambda-local`` (warm container Lambdas for sync calls). :func:`hatchway.wiring.build_placement`
wires them."""
