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
#    navigation-2d and halfcheetah-vel, reference hyperparameters.
# 4. Whole halfcheetah-vel iterations of the real runtime (bench/distributed_iteration.py) on the machine's
#    cores: 2 and 8 observers with the step's products on the observers (the default), and 8 observers
#    with the products on the agent, its learner on the CPU and on the GPU.
# GPU_CHECK_QUICK=1: tiny batches and one short run, for the test of this script on a CPU-only machine.
# A step that fails (or outlasts its limit: runs that hang must not eat a lease) is logged and the rest
# still run (one lease, one try); the script then exits 1.
set -euo pipefail
cd "$(dirname "$0")/.."
out=${OUT:-bench/results}
mkdir -p "$out"
venv=${GPU_CHECK_VENV:-/tmp/dh-maml-gpu-venv}
export PYTHONUNBUFFERED=1
host=${GPU_CHECK_PYTHON:-python3}
if [[ ! -x $venv/bin/python ]]; then
    # The image's python3 is itself a venv, whose packages --system-site-packages does not reach: a .pth
    # file puts them on our venv's path, after its own, so pip (the host's: ensurepip may be missing there)
    # resolves torch & co. as already installed.
    opts="--system-site-packages --without-pip"
    "$host" -m venv $opts "$venv"
    site_dir=$("$venv/bin/python" -c 'import sysconfig; print(sysconfig.get_paths()["purelib"])')
    "$host" -c 'import site; print("\n".join(site.getsitepackages()))' >"$site_dir/gpu-check-host.pth"
    PIP_NO_INDEX=1 PIP_FIND_LINKS="$PWD/.whl" TORCH='' VENV_OPTS=$opts PYTHON="$host" ./install.sh "$venv"
fi
py=$venv/bin/python
"$py" -c 'import torch; print("torch", torch.__version__, "cuda", torch.cuda.is_available())' | tee "$out/gpu_check.log"
log=$out/gpu_check.log
failed=()
step() {  # run one step, its output into the log; a failure is recorded, not fatal
    if ! "$@" 2>&1 | tee -a "$log"; then
        failed+=("$*")
        echo "FAILED: $*" | tee -a "$log"
    fi
}
small=()
repeats=(--repeats 5)
counts=2,8 iterations=6 wide=8
if [[ ${GPU_CHECK_QUICK:-0} == 1 ]]; then
    small=(--set maml.meta_batch_size=2 --set maml.fast_batch_size=2)
    repeats=(--repeats 2)
    counts=1 iterations=2 wide=
fi
step timeout 240 "$py" -m pytest -q -p no:cacheprovider tests/test_cuda.py
for spec in navigation-2d halfcheetah-vel; do
    step "$py" bench/trpo_step.py --spec "specs/$spec.yaml" --devices cpu,cuda "${repeats[@]}" "${small[@]}" \
        --out "$out/trpo_step-$spec.json"
done
iteration() {  # LABEL OBSERVERS [--set ...]: whole halfcheetah-vel iterations, figures to iteration-LABEL.json
    local label=$1 observers=$2
    shift 2
    step timeout 200 "$py" bench/distributed_iteration.py --spec specs/halfcheetah-vel.yaml --observers "$observers" \
        --iterations "$iterations" "${small[@]}" "$@" --out "$out/iteration-$label.json"
}
iteration products-observers "$counts"
if [[ -n $wide ]]; then
    iteration products-agent-cpu "$wide" --set trpo.products=agent
    if "$py" -c 'import sys, torch; sys.exit(not torch.cuda.is_available())'; then
        iteration products-agent-cuda "$wide" --set trpo.products=agent --set experiment.device=cuda
    fi
fi
"$py" - "$out" "${failed[@]}" <<'PY'
import json, sys
from pathlib import Path
out = Path(sys.argv[1])
joined = {
    "trpo_step": {p.stem.removeprefix("trpo_step-"): json.loads(p.read_text()) for p in sorted(out.glob("trpo_step-*.json"))},
    "iteration": {p.stem.removeprefix("iteration-"): json.loads(p.read_text()) for p in sorted(out.glob("iteration-*.json"))},
    "failed": sys.argv[2:],
}
(out / "gpu_check.json").write_text(json.dumps(joined, indent=2))
print(f"wrote {out / 'gpu_check.json'}" + (f"; failed: {sys.argv[2:]}" if sys.argv[2:] else ""))
PY
[[ ${#failed[@]} == 0 ]]
