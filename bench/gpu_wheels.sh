#!/usr/bin/env bash
# Prepare, on a machine with the package index, the wheels bench/gpu_check.sh installs offline on the GPU
# machine: what the project needs beyond what that machine's image has (its Python 3.12 with CUDA torch,
# numpy, scipy, pyyaml, tensorboard, matplotlib, imageio, absl-py, etils) at the versions the test suite
# passes with here (metaworld pins mujoco 3.3.0). Into .whl/
# (ignored by git); the device tool carries it with `carry: [".whl"]`.
#
#   bash bench/gpu_wheels.sh [PYTHON_VERSION]      # default 3.12
set -euo pipefail
cd "$(dirname "$0")/.."
version=${1:-3.12}
platforms=()
for tag in manylinux_2_28_x86_64 manylinux_2_27_x86_64 manylinux_2_17_x86_64 manylinux2014_x86_64 manylinux1_x86_64; do
    platforms+=(--platform "$tag")
done
python3 -m pip download -q --no-deps --only-binary=:all: --python-version "$version" --implementation cp \
    "${platforms[@]}" -d .whl \
    gymnasium==1.4.0 farama-notifications==0.0.6 cloudpickle==3.1.3 metaworld==3.1.1 mujoco==3.3.0 \
    glfw==2.11.0 pyopengl==3.1.10 minigrid==3.2.0 pygame-ce==2.5.8 \
    setuptools==84.2.1  # the build backend, for pip's isolated build of the project there
ls -la .whl
