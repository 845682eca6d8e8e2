# Kabina images, two targets from one file (docker compose builds both):
#   docker build --target bot -t kabina-bot:0.1.0 .   the bot alone: CPU, no torch or diffusers (about 150 MB)
#   docker build -t kabina:0.1.0 .                     the engine (and `kabina`, bot + engine): one NVIDIA GPU
#
# The CUDA base matches the CUDA build the locked torch wheel brings: torch 2.13.0 on PyPI is built for CUDA 13.0
# (constraints.txt: cuda-toolkit 13.0.x, nvidia-cudnn-cu13), whose libraries come with the wheels. The base image
# adds only the CUDA 13.0 userspace glue and NVIDIA_REQUIRE_CUDA=cuda>=13.0, so the NVIDIA container runtime refuses
# to start it on a host driver older than CUDA 13.0 needs (R580) instead of torch silently seeing no GPU.
# Bump this tag together with torch in the lock.

# --- the bot: Python's slim image, the base dependencies only -----------------------------------------------------
FROM python:3.11.14-slim-bookworm AS bot

ENV PYTHONUNBUFFERED=1 \
    PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1 \
    DATA_DIR=/data

WORKDIR /app

# Dependencies first, in their own layer, all from the lock: code changes do not reinstall them.
COPY pyproject.toml README.md constraints.txt ./
RUN mkdir -p bot engine storage \
    && touch bot/__init__.py engine/__init__.py storage/__init__.py \
    && pip install -c constraints.txt . \
    && pip uninstall -y kabina

COPY storage ./storage
COPY engine ./engine
COPY bot ./bot
RUN pip install --no-deps -c constraints.txt . \
    && useradd --create-home --uid 10001 kabina \
    && mkdir -p /data \
    && chown kabina:kabina /data

USER 10001
VOLUME ["/data"]

# Healthy = the database opens at the expected schema and DATA_DIR is writable.
HEALTHCHECK --interval=30s --timeout=10s --start-period=30s --retries=3 CMD ["python", "-m", "storage", "health"]

CMD ["python", "-m", "bot"]

# --- the engine: CUDA 13.0 userspace + the engine extra ---------------------------------------------------------
FROM nvidia/cuda:13.0.2-base-ubuntu24.04 AS engine

ENV DEBIAN_FRONTEND=noninteractive \
    PYTHONUNBUFFERED=1 \
    PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1 \
    VIRTUAL_ENV=/opt/venv \
    PATH=/opt/venv/bin:$PATH \
    HF_HUB_OFFLINE=1 \
    TRANSFORMERS_OFFLINE=1 \
    DATA_DIR=/data \
    ENGINE_CACHE_DIR=/cache \
    BASE_MODEL=/models/base \
    DEVICE=cuda

# hadolint ignore=DL3008
RUN apt-get update \
    && apt-get install -y --no-install-recommends python3 python3-venv ca-certificates \
    && rm -rf /var/lib/apt/lists/* \
    && python3 -m venv /opt/venv

WORKDIR /app

# Every version comes from the lock; torch's Linux wheel brings the CUDA 13.0 libraries and xformers (gpu extra)
# is locked to a build for this torch.
COPY pyproject.toml README.md constraints.txt ./
RUN mkdir -p bot engine storage \
    && touch bot/__init__.py engine/__init__.py storage/__init__.py \
    && pip install -c constraints.txt '.[engine,gpu]' \
    && pip uninstall -y kabina

COPY storage ./storage
COPY engine ./engine
COPY bot ./bot
RUN pip install --no-deps -c constraints.txt . \
    && useradd --create-home --uid 10001 kabina \
    && mkdir -p /data /models /cache \
    && chown kabina:kabina /data /cache

USER 10001
VOLUME ["/data", "/models", "/cache"]

HEALTHCHECK --interval=30s --timeout=10s --start-period=60s --retries=3 CMD ["python", "-m", "storage", "health"]

# DEVICE=cuda (above): an engine that finds no GPU stops at start with one line saying why, never trains on the CPU.
CMD ["kabina"]
