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
# 4. Whole iterations of the real runtime (bench/distributed_iteration.py) on the machine's cores:
#    halfcheetah-vel with 2 and 8 observers and the step's products on the observers, with 8 and the
#    products on the agent's CPU and on its GPU, and with 2 and the default (trpo.products: auto) on the
#    GPU; navigation-2d with 2 observers and the default, learner on the CPU and on the GPU.
# GPU_CHECK_QUICK=1: tiny batches and one short run, for the test of this script on a CPU-only machine.
# Only gpu_check.json (every figure) and gpu_check.log are written to $OUT.
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
    # shellcheck disable=SC2086  # opts is a list of options
    "$host" -m venv $opts "$venv"
    site_dir=$("$venv/bin/python" -c 'import sysconfig; print(sysconfig.get_paths()["purelib"])')
    "$host" -c 'import site; print("\n".join(site.getsitepackages()))' >"$site_dir/gpu-check-host.pth"
    PIP_NO_INDEX=1 PIP_FIND_LINKS="$PWD/.whl" TORCH='' VENV_OPTS=$opts PYTHON="$host" ./install.sh "$venv"
fi
py=$venv/bin/python
log=$out/gpu_check.log
"$py" -c 'import torch; print("torch", torch.__version__, "cuda", torch.cuda.is_available())' | tee "$log"
parts=$(mktemp -d)  # each step's JSON, joined into $out/gpu_check.json at the end
trap 'rm -rf "$parts"' EXIT
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
        --out "$parts/trpo_step-$spec.json"
done
iteration() {  # LABEL SPEC OBSERVERS [--set ...]: whole iterations, figures to iteration-LABEL.json
    local label=$1 spec=$2 observers=$3
    shift 3
    step timeout 200 "$py" bench/distributed_iteration.py --spec "specs/$spec.yaml" --observers "$observers" \
        --iterations "$iterations" "${small[@]}" "$@" --out "$parts/iteration-$label.json"
}
iteration halfcheetah-vel-products-observers halfcheetah-vel "$counts" --set trpo.products=observers
if [[ -n $wide ]]; then
    iteration halfcheetah-vel-products-agent-cpu halfcheetah-vel "$wide" --set trpo.products=agent
    iteration navigation-2d-cpu navigation-2d 2
    if "$py" -c 'import sys, torch; sys.exit(not torch.cuda.is_available())'; then
        iteration halfcheetah-vel-products-agent-cuda halfcheetah-vel "$wide" --set trpo.products=agent \
            --set experiment.device=cuda
        iteration halfcheetah-vel-cuda halfcheetah-vel 2 --set experiment.device=cuda
        iteration navigation-2d-cuda navigation-2d 2 --set experiment.device=cuda
    fi
fi
"$py" - "$parts" "$out" "${failed[@]}" <<'PY'
import json, sys
from pathlib import Path
parts, out, failed = Path(sys.argv[1]), Path(sys.argv[2]), sys.argv[3:]
joined = {
    kind: {p.stem.removeprefix(f"{kind}-"): json.loads(p.read_text()) for p in sorted(parts.glob(f"{kind}-*.json"))}
    for kind in ("trpo_step", "iteration")
}
joined["failed"] = failed
(out / "gpu_check.json").write_text(json.dumps(joined, indent=2))
print(f"wrote {out / 'gpu_check.json'}" + (f"; failed: {failed}" if failed else ""))
PY
[[ ${#failed[@]} == 0 ]]
