# hatchway/lambda-python:<python> - an emulation image of the AWS python runtime, for
# `sam local invoke --invoke-image` of zip functions (the API function) where the public Lambda
# images cannot be pulled. Built by `infra/images/build --lambda-python` on top of the base image:
# hatchway's dependencies (wheels staged by the builder) and the runtime bootstrap the Runtime
# Interface Emulator looks for. The function's code is mounted at /var/task by sam.
ARG BASE=hatchway/action-base:3.11
FROM ${BASE}
ARG BASE_HASH=unknown
COPY wheels/ /tmp/hatchway-wheels/
RUN set -eu; \
    python3 -m pip install --no-index --find-links /tmp/hatchway-wheels --no-cache-dir /tmp/hatchway-wheels/*.whl; \
    rm -rf /tmp/hatchway-wheels; \
    mkdir -p /var/runtime /var/task; \
    printf '#!/bin/sh\ncd "${LAMBDA_TASK_ROOT:-/var/task}"\nexec python3 -m awslambdaric "${_HANDLER:-$AWS_LAMBDA_FUNCTION_HANDLER}"\n' > /var/runtime/bootstrap; \
    chmod 755 /var/runtime/bootstrap
ENV LAMBDA_TASK_ROOT=/var/task \
    LAMBDA_RUNTIME_DIR=/var/runtime \
    PYTHONPATH=/var/task/src:/var/task
LABEL io.hatchway.base-hash="${BASE_HASH}"
WORKDIR /var/task
