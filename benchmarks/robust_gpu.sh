#!/usr/bin/env bash
# The robustness measurements too heavy for a 2-core CPU, in one run on a CUDA GPU:
# attacks on post-averaging at hundreds of images (each query or gradient costs the defence's
# 6K + 1 = 91 forward passes per image), the paper-protocol C&W row, and the certified baseline.
#
#   bash benchmarks/robust_gpu.sh OUTDIR [CIFAR10_JPEG_ZIP] [RESNET20_TH]
#
# Jobs run in order of priority, each under its own time limit (seconds, the third column of
# JOBS below, scaled by LIMIT_SCALE), each writing its veilnet output folder under
# OUTDIR/runs/NAME and a line "NAME rc=… seconds" to OUTDIR/summary.txt; OUTDIR/results.tar.gz
# is refreshed after every job, so a run cut short keeps what finished. SCALE=smoke runs every
# job at a tiny size (to check the commands, on any device: DEVICE=cpu).
set -uo pipefail
OUTDIR=${1:?usage: robust_gpu.sh OUTDIR [CIFAR10_JPEG_ZIP] [RESNET20_TH]}
ZIP=${2:-../shared/data/cifar10-jpeg.zip}
TH=${3:-../shared/models/resnet20-12fca82f.th}
DEVICE=${DEVICE:-cuda}
SCALE=${SCALE:-full}
LIMIT_SCALE=${LIMIT_SCALE:-1}
RUNS=$OUTDIR/runs
mkdir -p "$RUNS"
export PYTHONPATH=${PYTHONPATH:-src} PYTHONUNBUFFERED=1

veilnet() { python3 -c 'import sys; from veilnet.cli import main; sys.exit(main(sys.argv[1:]))' "$@"; }

DATA=folder:$ZIP
if [ "$SCALE" = smoke ]; then
  N200=1; N1000=1; Q1=20; Q2=40; STEPS=2; CW="cw.binary_search_steps=2 cw.steps=3"; EPOCHS=1; CERT_N=200; SUBSET="--subset 20"
else
  N200=20; N1000=100; Q1=1000; Q2=5000; STEPS=50; CW=""; EPOCHS=10; CERT_N=10000; SUBSET=""
fi
B=200  # images attacked together (results do not depend on it)
ADAPTIVE="apgd-ce.batch_size=$B apgd-dlr.batch_size=$B eot-pgd.batch_size=$B square.batch_size=$B"

job() {  # job NAME LIMIT_SECONDS COMMAND...
  local name=$1 limit=$2 start rc
  shift 2
  start=$(date +%s)
  echo "== $name (limit $(( limit * LIMIT_SCALE )) s)"
  timeout "$(( limit * LIMIT_SCALE ))" "$@" >"$RUNS/$name.log" 2>&1
  rc=$?
  echo "$name rc=$rc $(( $(date +%s) - start )) s" | tee -a "$OUTDIR/summary.txt"
  tail -n 3 "$RUNS/$name.log"
  tar czf "$OUTDIR/results.tar.gz" -C "$RUNS" --exclude='*.safetensors' --exclude='checkpoint.pt' .
}

python3 -c 'import torch; print("torch", torch.__version__, torch.cuda.get_device_name() if torch.cuda.is_available() else "no cuda")' | tee "$OUTDIR/summary.txt"
