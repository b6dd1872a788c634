"""The do-it-yourself stacks hatchway is measured against (``bench/peers.py``): a bare ASGI app,
and the task code of Huey, Celery and RQ workers. Each module here is imported by the benchmark
and by the processes it starts (uvicorn, ``huey_consumer``, ``celery worker``, ``rq worker``)."""
