#!/usr/bin/env bash
# The robustness measurements too heavy for a 2-core CPU, in one run on a CUDA GPU:
# attacks on post-averaging at hundreds of images (each query or gradient costs the defence's
# 6K + 1 = 91 forward passes per image), the paper-protocol C&W row, and the certified baseline.
#
#   bash benchmarks/robust_gpu.sh OUTDIR [CIFAR10_JPEG_ZIP] [RESNET20_TH]
#
# The jobs run in two lanes that share the GPU (below), each job under its own time limit in
# seconds (the second argument of `job`, scaled by LIMIT_SCALE), writing its veilnet output folder
# under RUNS (default OUTDIR/runs) and a line "NAME rc=… seconds" to OUTDIR/summary.txt;
# OUTDIR/results-LANE.tar.gz is refreshed after every job, so a run cut short keeps what finished.
# Eager PyTorch (--no-compile), as the runs in docs/benchmarks.md were made. SCALE=smoke runs every
# job at a tiny size, to check the commands on any device (DEVICE=cpu PYTHON=.venv/bin/python).
set -uo pipefail
OUTDIR=${1:?usage: robust_gpu.sh OUTDIR [CIFAR10_JPEG_ZIP] [RESNET20_TH]}
ZIP=${2:-../shared/data/cifar10-jpeg.zip}
TH=${3:-../shared/models/resnet20-12fca82f.th}
DEVICE=${DEVICE:-cuda}
PYTHON=${PYTHON:-python3}
SCALE=${SCALE:-full}
LIMIT_SCALE=${LIMIT_SCALE:-1}
RUNS=${RUNS:-$OUTDIR/runs}
mkdir -p "$RUNS"
export PYTHONPATH=${PYTHONPATH:-src} PYTHONUNBUFFERED=1

veilnet() { "$PYTHON" -c 'import sys; from veilnet.cli import main; sys.exit(main(sys.argv[1:]))' "$@"; }

DATA=folder:$ZIP
if [ "$SCALE" = smoke ]; then
  N200=1; N1000=1; Q1=20; Q2=40; CW="cw.binary_search_steps=2 cw.steps=3"; STEPS="apgd-ce.steps=2 apgd-dlr.steps=2 eot-pgd.steps=1"; EPOCHS=1; CERT_N=200; SUBSET="--subset 20"
else
  N200=20; N1000=100; Q1=1000; Q2=5000; CW=""; STEPS=""; EPOCHS=10; CERT_N=10000; SUBSET=""
fi
B=200  # images attacked together (results do not depend on it)
ADAPTIVE="apgd-ce.batch_size=$B apgd-dlr.batch_size=$B eot-pgd.batch_size=$B square.batch_size=$B"

job() {  # job NAME LIMIT_SECONDS COMMAND...
  local name=$1 limit=$2 start rc
  shift 2
  start=$(date +%s)
  echo "== $name (limit $(( limit * LIMIT_SCALE )) s)"
  timeout "$(( limit * LIMIT_SCALE ))" bash -c '"$@"' "$name" "$@" >"$RUNS/$name.log" 2>&1
  rc=$?
  echo "$name rc=$rc $(( $(date +%s) - start )) s" | tee -a "$OUTDIR/summary.txt"
  tail -n 3 "$RUNS/$name.log"
  tar czf "$OUTDIR/results-$LANE.tar.gz" -C "$RUNS" --exclude='*.safetensors' --exclude='checkpoint.pt' --exclude='pretrained-*' .
}

"$PYTHON" -c 'import torch; print("torch", torch.__version__, torch.cuda.get_device_name() if torch.cuda.is_available() else "no cuda")' | tee "$OUTDIR/summary.txt"

evaluate() { veilnet robust evaluate "$TH" --data "$DATA" --seed 0 --device "$DEVICE" --no-compile "$@"; }
square() {  # square QUERIES RANDOMNESS DRAWS
  evaluate --attacks square --n-per-class "$N200" --randomness "$2" --draws "$3" \
    --set square.queries="$1" square.batch_size=$B -o "$RUNS/square-$1-$2"
}
noise_model() {
  veilnet models import-cifar-resnet "$TH" -o "$RUNS/pretrained-resnet20" &&
  veilnet train --config configs/resnet20-noise-finetune.yaml --data "$DATA" --init "$RUNS/pretrained-resnet20" \
    --epochs "$EPOCHS" $SUBSET --device "$DEVICE" --no-compile -o "$RUNS/resnet20-noise"
}
certify() {  # certify MODEL NAME
  veilnet robust certify "$1" --data "$DATA" --sigma 0.25 --n "$CERT_N" --batch 10000 --n-per-class "$N200" \
    --attack-batch 100 --seed 0 --device "$DEVICE" -o "$RUNS/$2"
}
export -f veilnet evaluate square noise_model certify
export PYTHON TH DATA DEVICE RUNS N200 EPOCHS SUBSET CERT_N B

# Two lanes share the GPU: the Square runs (no gradients) beside the gradient attacks and the
# certified baseline (one gradient job at a time keeps the autograd memory of 100 images × 2
# draws × 91 points well inside the card).
(
  LANE=square
  job square-q1-fresh 150 square "$Q1" fresh 5
  job square-q1-fixed 100 square "$Q1" fixed 3
  job square-q2-fresh 240 square "$Q2" fresh 5
  job square-q2-fixed 200 square "$Q2" fixed 3
) &
(
  LANE=gradients
  job adaptive 150 evaluate --attacks eot-pgd,apgd-ce,apgd-dlr --n-per-class "$N200" --draws 5 \
    --set apgd-ce.batch_size=100 apgd-dlr.batch_size=100 eot-pgd.batch_size=100 $STEPS -o "$RUNS/adaptive"
  job noise-finetune 100 noise_model
  job certify-noise 150 certify "$RUNS/resnet20-noise" certify-noise
  job cw-paper 120 evaluate --attacks cw --n-per-class "$N1000" --draws 5 --set cw.batch_size=$B $CW -o "$RUNS/cw-paper"
) &
wait
cat "$OUTDIR/summary.txt"
