# One image for both roles: `worker` (the default command) and `dispatcher`.
#   docker build -t redis-dispatch .                  worker and dispatcher
#   docker build --build-arg EXTRAS=fast,monitoring .  plus rq-dashboard (the compose monitoring profile)
ARG PYTHON_IMAGE=python:3.12.8-slim-bookworm

FROM ${PYTHON_IMAGE} AS build
WORKDIR /src
# The virtualenv gets no pip of its own: the base image's pip installs into it from outside, so the
# final image carries neither an installer nor a build backend, only the project and its dependencies.
RUN python -m venv --without-pip /opt/venv
COPY pyproject.toml README.md constraints.txt ./
COPY common/ common/
COPY dispatcher/ dispatcher/
COPY worker/ worker/
ARG EXTRAS=fast
# Dependencies come from pyproject.toml, at the exact versions of constraints.txt; every one of them
# ships wheels, so no compiler is needed.
RUN pip --python /opt/venv/bin/python install --no-cache-dir --disable-pip-version-check \
        --root-user-action=ignore --constraint constraints.txt ".[${EXTRAS}]"

FROM ${PYTHON_IMAGE} AS runtime
ENV PATH=/opt/venv/bin:$PATH \
    PYTHONUNBUFFERED=1 \
    PYTHONDONTWRITEBYTECODE=1
# pip is not needed at run time, and an image without it cannot be extended by whoever gets a shell in it.
RUN python -m pip uninstall --yes --quiet pip \
    && groupadd --system --gid 10001 app \
    && useradd --system --uid 10001 --gid app --home-dir /app --no-create-home --shell /usr/sbin/nologin app
COPY --from=build /opt/venv /opt/venv
WORKDIR /app
COPY examples/ examples/
USER 10001:10001
CMD ["worker"]
