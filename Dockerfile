# DH-MAML on an official CUDA build of PyTorch: the agent uses the GPU, observers sample on the CPU.
#   docker build -t dh-maml .
#   docker run --rm --gpus all --shm-size 2g dh-maml train --spec specs/halfcheetah-vel.yaml --device cuda
# Several containers as hosts of one world: docker/compose.yaml.
FROM pytorch/pytorch:2.9.0-cuda12.8-cudnn9-runtime

ENV PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1 \
    PYTHONUNBUFFERED=1 \
    MUJOCO_GL=disable

RUN useradd --create-home --uid 1000 --shell /usr/sbin/nologin dhmaml \
    && install -d -o dhmaml -g dhmaml /opt/dh-maml /opt/venv

WORKDIR /opt/dh-maml
USER 1000:1000

# The README's install steps (install.sh), with the base image's torch kept instead of a second download.
COPY --chown=dhmaml:dhmaml pyproject.toml README.md install.sh ./
COPY --chown=dhmaml:dhmaml docker/constraints.txt docker/
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
