# syntax=docker/dockerfile:1
# MIM-OOD Server: `mimood serve` on the default model, port 8080 (docs/service.md).
#   docker build -t mimood .  &&  docker run -p 8080:8080 mimood
# Settings by environment (MIMOOD_<NAME>, Config/mimood.toml lists them). The install and build steps are
# the scripts in scripts/container/, which scripts/test also runs and smoke-tests.

FROM swift:6.3-bookworm AS build
WORKDIR /src
COPY scripts/ scripts/
RUN scripts/container/install-build-packages
COPY . .
# The cache keeps SwiftPM's build folder between image builds.
RUN --mount=type=cache,target=/src/.build-container scripts/container/build /staging

# The Swift runtime is linked statically, so plain Debian is enough: only the libraries `ldd` names.
FROM debian:bookworm-slim
RUN --mount=type=bind,source=scripts,target=/tmp/scripts \
    /tmp/scripts/container/install-runtime-packages && rm -rf /var/lib/apt/lists/*
# Files stay root's: the service only reads them.
RUN groupadd --system --gid 10001 mimood && \
    useradd --system --uid 10001 --gid 10001 --no-create-home --home-dir /app --shell /usr/sbin/nologin mimood
COPY --from=build /staging/ /app/
WORKDIR /app
USER 10001:10001

ENV MIMOOD_HOST=0.0.0.0 \
    MIMOOD_PORT=8080
EXPOSE 8080
# bin/healthcheck: GET /healthz on $MIMOOD_PORT through bash's /dev/tcp (no curl in the image), or on
# $MIMOOD_HEALTH_PORT when set: with TLS on, set it (e.g. -e MIMOOD_HEALTH_PORT=8081), a plain-HTTP port to probe.
# The start period covers the model's load and warm-up (about 1 s on 2 cores).
HEALTHCHECK --interval=10s --timeout=5s --start-period=30s --retries=3 CMD ["/app/bin/healthcheck"]
# SIGTERM starts the drain: readiness turns 503, requests in progress finish (drain_timeout_seconds, 60 s).
# Give `docker stop -t` / stop_grace_period more than that.
STOPSIGNAL SIGTERM
# Exec form: mimood is PID 1 and gets the signal itself.
ENTRYPOINT ["/app/bin/mimood", "serve"]
