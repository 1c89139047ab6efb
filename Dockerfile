# medseg: the training job and the Streamlit app in one image, for CPU and GPU hosts.
#   docker build -t medseg .
#   docker run --gpus all -v ~/data:/data -v ~/medseg-models:/models medseg train ...
#   docker run -p 8501:8501 -v ~/medseg-models:/models medseg app
# The base is Debian's slim Python 3.11: PyPI's torch wheels carry their own CUDA libraries,
# so no CUDA base image is needed, and on a GPU host `--gpus all` brings the driver in. Any
# Debian-like base with python3 and its venv module serves (BASE); scripts/image_check.sh
# builds this file and runs the image as users do, on a debootstrapped Debian where Docker Hub
# cannot be reached.
ARG BASE=python:3.11-slim-bookworm
FROM ${BASE}

# pip options for the build only (a local package index, a CA bundle the builder mounts);
# nothing of them stays in the image.
ARG PIP_OPTIONS=""

ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1 \
    HF_HUB_OFFLINE=1 \
    MPLCONFIGDIR=/tmp/matplotlib \
    MEDSEG_MODELS_DIR=/models \
    MEDSEG_DATA_DIR=/data \
    MEDSEG_APP_HOST=0.0.0.0 \
    MEDSEG_APP_FOLDER_PICKER=0 \
    PATH=/opt/venv/bin:$PATH

RUN useradd --create-home --uid 1000 medseg \
    && mkdir -p /models /data /opt/medseg \
    && chown medseg:medseg /models /data /opt/medseg
WORKDIR /opt/medseg

# PyTorch first, from the file scripts/setup.sh installs too: the largest layer changes least.
COPY requirements/torch.txt requirements/torch.txt
# hadolint ignore=SC2086
RUN python3 -m venv /opt/venv \
    && pip install --no-cache-dir ${PIP_OPTIONS} -r requirements/torch.txt

COPY --chown=medseg:medseg pyproject.toml README.md ./
COPY --chown=medseg:medseg medseg ./medseg
COPY --chown=medseg:medseg app ./app
COPY --chown=medseg:medseg configs ./configs
# hadolint ignore=SC2086
RUN pip install --no-cache-dir ${PIP_OPTIONS} . \
    && python -c "import medseg, monai, segmentation_models_pytorch, streamlit, torch, torchvision"

USER 1000:1000
EXPOSE 8501
# Probes the app's /_stcore/health when the container serves the app; a training job is healthy.
HEALTHCHECK --interval=30s --timeout=10s --start-period=90s --retries=3 \
    CMD ["python", "-m", "medseg.healthcheck"]
ENTRYPOINT ["medseg"]
CMD ["--help"]
