# syntax=docker/dockerfile:1
# churn-ml: the jobs (data, features, Feast apply/materialize, training, batch scoring,
# monitoring), `churn bootstrap` (a stack's first start, in compose and Kubernetes alike)
# and `churn schedule`, which runs `churn nightly` on CHURN_NIGHTLY_CRON.
# Build from the repository root:
#   docker build -f deploy/docker/Dockerfile.ml -t churn-ml:0.1.0 .
# The dependencies are the pins of requirements-ml.txt (regenerate them with
# `.venv/bin/python deploy/docker/pin_requirements.py`); no secret is baked in: the
# Redis URL, tokens and passwords come from the environment at run time.

ARG PYTHON_IMAGE=python:3.11-slim

# --- builder: wheels for the pins and the package, installed offline into a venv ------
FROM ${PYTHON_IMAGE} AS builder
ENV PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1
WORKDIR /build
COPY deploy/docker/requirements-ml.txt requirements.txt
RUN pip wheel --no-deps --wheel-dir /wheels -r requirements.txt
COPY pyproject.toml README.md ./
COPY core core
COPY churn churn
COPY ingestion ingestion
COPY feature_repo feature_repo
COPY served served
COPY training training
COPY online_api online_api
COPY batch batch
COPY monitor monitor
# --no-index: every dependency must come from the pinned wheels, so an incomplete pin
# list fails here; pip check then holds the set against the package's own requirements.
RUN pip wheel --no-deps --wheel-dir /wheels . \
    && python -m venv /opt/venv \
    && /opt/venv/bin/pip install --no-index --find-links=/wheels -r requirements.txt \
    && /opt/venv/bin/pip install --no-index --no-deps /wheels/churn_feature_store-*.whl \
    && /opt/venv/bin/pip check

# --- runtime ------------------------------------------------------------------------
FROM ${PYTHON_IMAGE}
LABEL org.opencontainers.image.title="churn-ml" \
      org.opencontainers.image.description="Churn prediction jobs and scheduler (Feast, DuckDB, scikit-learn)"
# One non-root user with a fixed uid, shared with churn-api: both write or read the same
# data and artifacts volumes, which start out owned by it (the directories below), as
# does compose's churn-export volume (the nightly's high-risk lists).
RUN groupadd --system --gid 10001 churn \
    && useradd --system --uid 10001 --gid churn --create-home --home-dir /home/churn \
       --shell /usr/sbin/nologin churn \
    && mkdir -p /var/lib/churn/data /var/lib/churn/artifacts /var/lib/churn/export \
    && chown -R churn:churn /var/lib/churn
COPY --from=builder /opt/venv /opt/venv
# One OpenMP thread per job, as the benchmarks measured them (the 1M-user night and train):
# a container sees the host's cores, not its CPU limit, and the boosted model's OpenMP
# threads spin against the API and each other when they share cores (a demo's train:
# 226 s with two threads, 34 s with one). Set OMP_NUM_THREADS on a dedicated node.
ENV OMP_NUM_THREADS=1 \
    PATH=/opt/venv/bin:$PATH \
    PYTHONUNBUFFERED=1 \
    PYTHONDONTWRITEBYTECODE=1 \
    CHURN_DATA_DIR=/var/lib/churn/data \
    CHURN_ARTIFACTS_DIR=/var/lib/churn/artifacts
# matplotlib and Feast keep caches under HOME (DuckDB spills into the data volume).
WORKDIR /home/churn
USER 10001:10001
CMD ["churn", "--help"]
