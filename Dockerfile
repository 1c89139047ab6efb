# medseg: the training job and the Streamlit app in one CUDA-enabled image.
#   docker build -t medseg .
#   docker run --gpus all -v DATA:/data -v MODELS:/models medseg train configs/lgg_resnet50_unet.yaml \
#       --set data.root=/data/kaggle_3m --set output.dir=/models/lgg
#   docker run -p 8501:8501 -v MODELS:/models medseg app
FROM pytorch/pytorch:2.5.1-cuda12.4-cudnn9-runtime

ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1 \
    HF_HUB_OFFLINE=1 \
    MEDSEG_MODELS_DIR=/models \
    MEDSEG_DATA_DIR=/data \
    MEDSEG_APP_HOST=0.0.0.0 \
    MEDSEG_APP_FOLDER_PICKER=0

RUN useradd --create-home --uid 1000 medseg \
    && mkdir -p /models /data /opt/medseg \
    && chown medseg:medseg /models /data /opt/medseg
WORKDIR /opt/medseg

# The base image's torch and torchvision satisfy medseg's pins, so pip keeps them.
COPY --chown=medseg:medseg pyproject.toml README.md ./
COPY --chown=medseg:medseg medseg ./medseg
COPY --chown=medseg:medseg app ./app
COPY --chown=medseg:medseg configs ./configs
RUN pip install --no-cache-dir . \
    && python -c "import medseg, monai, segmentation_models_pytorch, streamlit"

USER 1000:1000
EXPOSE 8501
# Probes the app's /_stcore/health when the container serves the app; a training job is healthy.
HEALTHCHECK --interval=30s --timeout=10s --start-period=90s --retries=3 \
    CMD ["python", "-m", "medseg.healthcheck"]
ENTRYPOINT ["medseg"]
CMD ["--help"]
