# apistatus-exporter: slim Python base, non-root, config from a mounted volume.
#   docker build -t apistatus-exporter .
#   docker run -p 9798:9798 -v "$PWD/config:/etc/apistatus-exporter:ro" apistatus-exporter
FROM python:3.12-slim AS build
WORKDIR /src
COPY pyproject.toml README.md ./
COPY exporter ./exporter
RUN pip install --no-cache-dir --prefix=/install "/src[web]"

FROM python:3.12-slim
COPY --from=build /install /usr/local
RUN useradd --system --uid 10001 --no-create-home --shell /usr/sbin/nologin apistatus
USER 10001
EXPOSE 9798
VOLUME ["/etc/apistatus-exporter"]
# /-/healthy answers as soon as the HTTP server runs; python is already in the image (no curl needed)
HEALTHCHECK --interval=30s --timeout=5s --start-period=10s --retries=3 \
  CMD ["python", "-c", "import urllib.request; urllib.request.urlopen('http://127.0.0.1:9798/-/healthy', timeout=4)"]
ENTRYPOINT ["apistatus-exporter"]
CMD ["--config", "/etc/apistatus-exporter/config.yml"]
