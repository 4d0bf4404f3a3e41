# DH-MAML on an official CUDA build of PyTorch: the agent uses the GPU, observers sample on the CPU.
#   docker build -t dh-maml .
#   docker run --rm --gpus all --shm-size 2g dh-maml train --spec specs/halfcheetah-vel.yaml --device cuda
# Several containers as hosts of one world: docker/compose.yaml.
# The base is the official CUDA build of PyTorch 2.9.0, the newest such image this project has pinned; the
# Quick start's venv takes torch 2.13.0 from PyPI. Both satisfy pyproject.toml's bound, and the code uses
# no API newer than 2.4.
FROM docker.io/pytorch/pytorch:2.9.0-cuda12.8-cudnn9-runtime

# MUJOCO_GL=disable: headless, nothing renders. The two config folders are writable whatever --user runs it.
ENV PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1 \
    PYTHONUNBUFFERED=1 \
    MUJOCO_GL=disable \
    MPLCONFIGDIR=/tmp/matplotlib \
    WANDB_CONFIG_DIR=/tmp/wandb-config

# The run folder exists and belongs to the image's user, so the VOLUME below (and an anonymous volume made
# from it) is writable; with a bind mount, run as its owner: docker run --user "$(id -u):$(id -g)" ...
RUN useradd --create-home --uid 1000 --shell /usr/sbin/nologin dhmaml \
    && install -d -o dhmaml -g dhmaml /opt/dh-maml /opt/dh-maml/runs /opt/venv

WORKDIR /opt/dh-maml
USER 1000:1000

# Dependencies first, in a layer of their own (the pins cover every one but torch, which the base image
# has): editing the code or the README reuses this layer.
COPY --chown=dhmaml:dhmaml docker/constraints.txt docker/
RUN python -m venv --system-site-packages /opt/venv \
    && /opt/venv/bin/pip install --no-cache-dir -r docker/constraints.txt

# Then the project, with the README's install steps (install.sh) and the base image's torch kept.
COPY --chown=dhmaml:dhmaml pyproject.toml README.md install.sh ./
COPY --chown=dhmaml:dhmaml dh_maml dh_maml/
COPY --chown=dhmaml:dhmaml agents agents/
COPY --chown=dhmaml:dhmaml observers observers/
RUN TORCH='' VENV_OPTS=--system-site-packages CONSTRAINTS=docker/constraints.txt ./install.sh /opt/venv wandb

COPY --chown=dhmaml:dhmaml launch.py ./
COPY --chown=dhmaml:dhmaml specs specs/
COPY --chown=dhmaml:dhmaml bench bench/
COPY --chown=dhmaml:dhmaml docker/entrypoint.sh docker/
ENV PATH=/opt/venv/bin:$PATH

VOLUME ["/opt/dh-maml/runs"]
ENTRYPOINT ["/opt/dh-maml/docker/entrypoint.sh"]
CMD ["train", "--spec", "specs/navigation-2d.yaml"]
