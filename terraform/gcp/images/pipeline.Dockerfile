# The pipeline's image: Beam's Python SDK container (the version setup.py pins) with alphastream
# and its dependencies installed, plus Dataflow's Flex Template launcher. One image both launches
# the job (as the Flex Template) and runs its workers (--sdk_container_image), so the launcher
# and the workers import the same code, and no worker pip-installs anything at start-up.
#   docker build -f terraform/gcp/images/pipeline.Dockerfile -t "$REPO/pipeline:TAG" .
# Newer launcher tags: gcloud container images list-tags gcr.io/dataflow-templates-base/python311-template-launcher-base
ARG BEAM_VERSION=2.77.0
ARG LAUNCHER_TAG=20230622_RC00

FROM gcr.io/dataflow-templates-base/python311-template-launcher-base:${LAUNCHER_TAG} AS launcher

FROM apache/beam_python3.11_sdk:${BEAM_VERSION}

ENV PYTHONDONTWRITEBYTECODE=1 \
    PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1

COPY --from=launcher /opt/google/dataflow/python_template_launcher /opt/google/dataflow/python_template_launcher

WORKDIR /template
COPY terraform/gcp/images/constraints.txt setup.py ./
COPY alphastream ./alphastream
COPY pipeline ./pipeline
COPY store ./store
COPY transforms ./transforms
COPY serving ./serving
COPY dash_app ./dash_app
COPY ingestion ./ingestion
# DL3013 (pin versions): the project's dependencies are pinned by constraints.txt.
# hadolint ignore=DL3013
RUN pip install --no-cache-dir --constraint constraints.txt ".[pipeline]"

# The launcher runs this file with the template's parameters (pipeline/flex_template.py).
ENV FLEX_TEMPLATE_PYTHON_PY_FILE=/template/pipeline/flex_template.py

# Workers start Beam's SDK harness; the launcher is started by Dataflow by its own path.
ENTRYPOINT ["/opt/apache/beam/boot"]
