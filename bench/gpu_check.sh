#!/usr/bin/env bash
# The GPU check: one command for a machine with a CUDA GPU and no internet (see bench/README.md).
#
#   bash bench/gpu_check.sh        # figures to $OUT/gpu_check.json ($OUT: the device tool's; else bench/results)
#
# 1. A venv beside the machine's own CUDA torch (--system-site-packages), the project installed in it
#    editable, offline, from the wheels in .whl/ that bench/gpu_wheels.sh prepares beforehand. An existing
#    venv at GPU_CHECK_VENV is used as it is.
# 2. The CUDA tests (tests/test_cuda.py: the learner on the GPU against the CPU, a run with --device cuda
#    and CUDA device maps to two observers); they skip where CUDA is missing.
# 3. The learner's terms and TRPO step timed on the CPU and on the GPU (bench/trpo_step.py) for
#    navigation-2d and halfcheetah-vel, reference hyperparameters (GPU_CHECK_QUICK=1: tiny batches, for
#    the test of this script on a CPU-only machine).
set -euo pipefail
cd "$(dirname "$0")/.."
out=${OUT:-bench/results}
mkdir -p "$out"
venv=${GPU_CHECK_VENV:-/tmp/dh-maml-gpu-venv}
export PYTHONUNBUFFERED=1
if [[ ! -x $venv/bin/python ]]; then
    PIP_NO_INDEX=1 PIP_FIND_LINKS="$PWD/.whl" TORCH='' VENV_OPTS=--system-site-packages PYTHON=python3 \
        ./install.sh "$venv"
fi
py=$venv/bin/python
"$py" -c 'import torch; print("torch", torch.__version__, "cuda", torch.cuda.is_available())' | tee "$out/gpu_check.log"
sizes=()
if [[ ${GPU_CHECK_QUICK:-0} == 1 ]]; then
    sizes=(--repeats 2 --set maml.meta_batch_size=2 --set maml.fast_batch_size=2)
fi
"$py" -m pytest -q -p no:cacheprovider tests/test_cuda.py 2>&1 | tee -a "$out/gpu_check.log"
for spec in navigation-2d halfcheetah-vel; do
    "$py" bench/trpo_step.py --spec "specs/$spec.yaml" --devices cpu,cuda "${sizes[@]}" \
        --out "$out/trpo_step-$spec.json" 2>&1 | tee -a "$out/gpu_check.log"
done
"$py" - "$out" <<'PY'
import json, sys
from pathlib import Path
out = Path(sys.argv[1])
joined = {p.stem.removeprefix("trpo_step-"): json.loads(p.read_text()) for p in sorted(out.glob("trpo_step-*.json"))}
(out / "gpu_check.json").write_text(json.dumps(joined, indent=2))
print(f"wrote {out / 'gpu_check.json'}")
PY
