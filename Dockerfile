# apistatus-exporter: slim Python base, non-root, config from a mounted file.
#   docker build --build-arg REVISION="$(git rev-parse HEAD)" -t apistatus-exporter .
#   docker run --rm apistatus-exporter config example slack github > config.yml   # then edit it
#   docker run -p 9798:9798 -e SLACK_TOKEN -e GITHUB_TOKEN \
#     -v "$PWD/config.yml:/etc/apistatus-exporter/config.yml:ro" apistatus-exporter
#   docker run -p 9798:9798 apistatus-exporter demo --web.listen-address :9798   # the demo, fake data
FROM python:3.12-slim AS build
WORKDIR /src
COPY pyproject.toml README.md ./
COPY exporter ./exporter
# the git commit the image is built from, for apistatus_build_info's revision label (empty if not given)
ARG REVISION=""
RUN printf '%s\n' "$REVISION" > exporter/REVISION \
 && pip install --no-cache-dir --prefix=/install "/src[web]"

FROM python:3.12-slim
COPY --from=build /install /usr/local
RUN useradd --system --uid 10001 --no-create-home --shell /usr/sbin/nologin apistatus
USER 10001
EXPOSE 9798
VOLUME ["/etc/apistatus-exporter"]
# /-/healthy answers as soon as the HTTP server runs. The check reads the exporter's own flags (PID 1's
# command line), so it follows --web.listen-address, --web.route-prefix and TLS; python is in the image.
HEALTHCHECK --interval=30s --timeout=5s --start-period=10s --retries=3 \
  CMD ["python", "-m", "exporter.healthcheck"]
ENTRYPOINT ["apistatus-exporter"]
CMD ["--config.file", "/etc/apistatus-exporter/config.yml"]
