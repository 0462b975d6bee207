# crisp-sync in a container: follow mode with every extra a service uses (live events,
# metrics and /healthz, PostgreSQL, Redis). docs/sync/deployment.md explains it;
# compose.yaml runs two workers with PostgreSQL and Redis.
#
#   docker build -t crisp-sync .
#   docker run --env-file crisp.env -p 9108:9108 crisp-sync \
#       --website-id WEBSITE_ID --db /var/lib/crisp/crisp.sqlite3 --follow --metrics-port 9108
#
# The base is pinned to a release; pin its digest too (...-slim-bookworm@sha256:...) for
# builds that never change under you. PYTHON_IMAGE replaces it (a mirror, a newer release).
ARG PYTHON_IMAGE=docker.io/library/python:3.12.8-slim-bookworm

# Stage 1: the wheel, from the sources alone.
FROM ${PYTHON_IMAGE} AS wheel
WORKDIR /src
COPY pyproject.toml setup.cfg README.md LICENSE ./
COPY crisp_api ./crisp_api
COPY middleware ./middleware
RUN python -m pip wheel --no-cache-dir --no-deps --wheel-dir /dist .

# Stage 2: the wheel installed with its extras into a virtual environment, run as a user.
FROM ${PYTHON_IMAGE}
COPY --from=wheel /dist /dist
RUN python -m venv /opt/crisp \
    && wheel="$(ls /dist/crisp_api_next-*.whl)" \
    && /opt/crisp/bin/pip install --no-cache-dir "${wheel}[events,metrics,postgres,redis]" \
    && rm -rf /dist \
    && groupadd --gid 10001 crisp \
    && useradd --uid 10001 --gid crisp --no-log-init --shell /usr/sbin/nologin \
        --home-dir /var/lib/crisp --create-home crisp
ENV PATH=/opt/crisp/bin:$PATH \
    PYTHONUNBUFFERED=1
USER 10001:10001
WORKDIR /var/lib/crisp
VOLUME /var/lib/crisp
# Metrics and /healthz (--metrics-port 9108); the web hooks port is yours to choose.
EXPOSE 9108
# /healthz answers 200 while the service works (initial sync, ok or degraded) and 503 once
# something has failed for longer than --health-threshold. No curl in a slim image: Python.
HEALTHCHECK --interval=30s --timeout=5s --start-period=30s --retries=3 \
    CMD ["python", "-c", "import urllib.request; urllib.request.urlopen('http://127.0.0.1:9108/healthz', timeout=4)"]
STOPSIGNAL SIGTERM
ENTRYPOINT ["crisp-sync"]
CMD ["--help"]
