# Kabina: bot + engine image for one NVIDIA GPU. Build: docker build -t kabina . ; run with docker compose.
FROM nvidia/cuda:12.8.1-cudnn-runtime-ubuntu24.04

ENV DEBIAN_FRONTEND=noninteractive \
    PYTHONUNBUFFERED=1 \
    PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1 \
    VIRTUAL_ENV=/opt/venv \
    PATH=/opt/venv/bin:$PATH \
    HF_HUB_OFFLINE=1 \
    TRANSFORMERS_OFFLINE=1 \
    DATA_DIR=/data \
    BASE_MODEL=/models/base

# hadolint ignore=DL3008
RUN apt-get update \
    && apt-get install -y --no-install-recommends python3 python3-venv ca-certificates \
    && rm -rf /var/lib/apt/lists/* \
    && python3 -m venv /opt/venv

WORKDIR /app

# Dependencies first, in their own layer: code changes do not reinstall torch.
# Every version comes from the lock (constraints.txt); torch's Linux wheel bundles the CUDA libraries and
# xformers (gpu extra) is locked to a build for this torch.
COPY pyproject.toml README.md constraints.txt ./
RUN mkdir -p bot engine storage \
    && touch bot/__init__.py engine/__init__.py storage/__init__.py \
    && pip install -c constraints.txt torch==2.13.0 \
    && pip install -c constraints.txt '.[gpu]' \
    && pip uninstall -y kabina

COPY storage ./storage
COPY engine ./engine
COPY bot ./bot
RUN pip install --no-deps -c constraints.txt . \
    && useradd --create-home --uid 10001 kabina \
    && mkdir -p /data /models \
    && chown kabina:kabina /data

USER 10001
VOLUME ["/data", "/models"]

# Healthy = the database opens at the expected schema and DATA_DIR is writable.
HEALTHCHECK --interval=30s --timeout=10s --start-period=60s --retries=3 CMD ["python", "-m", "storage", "health"]

CMD ["kabina"]
