#!/usr/bin/env bash
# The GPU path end to end, on a machine with one CUDA GPU (under 10 minutes once gsplat's
# extension is built; `make gpu-setup` builds it the first time, about half an hour):
#   make gpu-setup, cclgs doctor, the gsplat contract suite and gsplat-vs-torch renders,
#   cclgs fit/train/query/eval with the gsplat backend on a small synthetic world, and 200 steps
#   of ns-train ccl-lgs on CUDA. The last line is a one-line summary.
#
#   scripts/gpu_smoke.sh [WORK_DIR]
set -euo pipefail
cd "$(dirname "$0")/.."
work=${1:-$(mktemp -d -t cclgs-gpu-smoke-XXXXXX)}
bin=.venv/bin
export OMP_WAIT_POLICY=PASSIVE TORCHDYNAMO_DISABLE=1 TORCH_FORCE_NO_WEIGHTS_ONLY_LOAD=1
start=$SECONDS
stage="setup"
trap 'echo "gpu smoke: FAILED at ${stage} after $((SECONDS - start)) s (work folder: ${work})"' ERR

stage="make gpu-setup"; make gpu-setup
stage="cclgs doctor"; $bin/cclgs doctor
stage="gsplat tests"
$bin/python -m pytest -q tests/test_backends.py -k "Gsplat or gsplat"

stage="synthetic world"
$bin/cclgs synth "$work/world" --width 128 --height 96 --train-views 16 --test-views 4 --overwrite
cat > "$work/run.toml" <<'TOML'
seed = 0
[mask_generator]
name = "synthetic"
[tracker]
name = "none"
[feature_extractor]
name = "simulated"
[compressor]
name = "ccl"
num_prototypes = 32
steps = 500
[field_backend]
name = "gsplat"
[train]
iterations = 1000
lr = 0.01
TOML
stage="cclgs fit"; $bin/cclgs fit "$work/world" --backend gsplat --steps 500 --out "$work/fitted.ply"
stage="cclgs train"; $bin/cclgs train "$work/world" -c "$work/run.toml" --run "$work/run"
stage="cclgs query"; $bin/cclgs query "$work/run" --text "ramen bowl" --all --out "$work/queries"
stage="cclgs eval"; $bin/cclgs eval synthetic "$work/run" --out "$work/eval"

stage="ns-train ccl-lgs"
$bin/ns-train ccl-lgs --data "$work/world" --output-dir "$work/ns" --experiment-name smoke --timestamp run \
  --max-num-iterations 200 --steps-per-save 200 --vis tensorboard \
  --pipeline.model.cclgs-config "$work/run.toml" --pipeline.model.cclgs-run-dir "$work/run"

gpu=$(nvidia-smi --query-gpu=name --format=csv,noheader | head -n 1)
scores=$($bin/python -c "import json, sys; r = json.load(open(sys.argv[1])); \
print(f'held-out mIoU {100 * r[\"miou\"]:.1f} %, localization {100 * r[\"localization\"]:.1f} %')" "$work/eval/report.json")
echo "gpu smoke: passed in $((SECONDS - start)) s on ${gpu} (${scores}; work folder: ${work})"
