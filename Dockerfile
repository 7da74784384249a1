# One `veilnet serve` replica (docs/serving.md, "Replicas behind a proxy").
#
#   docker build -t veilnet-serve .
#   docker run -v "$PWD/models:/models:ro" -v "$PWD/tokens.txt:/run/secrets/veilnet-tokens:ro" -p 127.0.0.1:8001:8000 veilnet-serve
#
# The image holds veilnet and its serve extra only: the transformed model (/models/served.*) and
# the token file (/run/secrets/veilnet-tokens) are mounted at run time, and no key is ever
# needed (the server runs the transformed model; the client holds the key). Arguments after
# the image name replace CMD, e.g. `/models/other --token-file /run/secrets/t --max-batch 64`.
FROM python:3.11-slim

# The torch the Makefile installs, as a CPU build: PyTorch's CPU wheel index (TORCH_INDEX) keeps
# the CUDA libraries out of the image. A build machine without access to it can point
# TORCH_INDEX at a mirror (docker build --build-arg TORCH_INDEX=...).
ARG TORCH_INDEX=https://download.pytorch.org/whl/cpu
RUN pip install --no-cache-dir torch==2.13.0 --index-url "${TORCH_INDEX}"

WORKDIR /opt/veilnet
COPY pyproject.toml README.md ./
COPY src ./src
RUN pip install --no-cache-dir '.[serve]' && rm -rf build src/*.egg-info

RUN useradd --create-home --uid 10001 veilnet
USER veilnet

EXPOSE 8000
# ready once the model is loaded and warmed; 503 (a failed check) before
HEALTHCHECK --interval=10s --timeout=3s --start-period=120s --retries=3 \
    CMD ["python", "-c", "import urllib.request; urllib.request.urlopen('http://127.0.0.1:8000/healthz', timeout=2)"]
# Behind the proxy every connection comes from the proxy's address: the per-address cap is the
# whole connection table, and the proxy applies the per-client limits (proxy/nginx.conf).
ENTRYPOINT ["veilnet", "serve", "--host", "0.0.0.0", "--port", "8000", "--max-connections-per-client", "128"]
CMD ["/models/served", "--token-file", "/run/secrets/veilnet-tokens"]
