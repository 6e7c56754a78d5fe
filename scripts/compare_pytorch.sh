#!/usr/bin/env bash
# Side-by-side training-step speed: ours (`cargo xtask bench`) and PyTorch's
# (`shared/ref/simclr_ref.py --time-only`), alternating A B A B on the same machine, 2 threads.
# Prints each measurement and the median ratio per model. The machine is shared and noisy:
# only ratios from one run mean anything.
#
#   python3 -m venv ../torch-venv && ../torch-venv/bin/pip install torch torchvision numpy pillow
#   scripts/compare_pytorch.sh [ROUNDS]
set -euo pipefail
cd "$(dirname "$0")/.."
rounds=${1:-3}
py=${PYTHON:-../torch-venv/bin/python}
ref=${REF:-../shared/ref}
data=${SIMCLR_DATA_DIR:-../shared/data}
out=$(mktemp -d)
cargo build --release -p xtask >/dev/null
for model in mnist resnet18; do
  if [ "$model" = mnist ]; then dataset=mnist steps=20; else dataset=cifar10 steps=3; fi
  for r in $(seq "$rounds"); do
    ./target/release/xtask bench --json --threads 2 --models "$model" --steps "$steps" --warmup 2 \
      | tee -a "$out/ours-$model.jsonl"
    "$py" "$ref/simclr_ref.py" --dataset "$dataset" --data-root "$data" --time-only "$steps" \
      --loss matmul --threads 2 --json-out "$out/torch-$model.jsonl" >/dev/null 2>&1
    tail -n 1 "$out/torch-$model.jsonl" | python3 -c \
      'import json,sys; r=json.loads(sys.stdin.read())["simclr_step"]; print(json.dumps({"pytorch": r["images_per_s_median"], "sysload": r["sysload"]}))'
  done
done
python3 - "$out" <<'PY'
import json, statistics, sys, pathlib
d = pathlib.Path(sys.argv[1])
print(f"{'model':<10} {'ours img/s':>12} {'PyTorch img/s':>14} {'ratio':>7}")
for m in ["mnist", "resnet18"]:
    ours = [json.loads(l)["images_per_s"] for l in open(d / f"ours-{m}.jsonl")]
    torch = [json.loads(l)["simclr_step"]["images_per_s_median"] for l in open(d / f"torch-{m}.jsonl")]
    o, t = statistics.median(ours), statistics.median(torch)
    print(f"{m:<10} {o:>12.1f} {t:>14.1f} {o / t:>7.2f}")
PY
