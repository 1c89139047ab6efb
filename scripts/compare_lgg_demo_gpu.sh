#!/usr/bin/env bash
# The LGG demo comparison at full size on one GPU: ResNet-50-UNet at 256 px, the nine
# methods of `medseg compare --methods standard`, 3 seeds (27 runs), nothing downloaded.
# Writes the demo data (real anatomy, SYNTHETIC lesions) into OUT/demo_lgg, the comparison
# into OUT/compare_lgg_demo_resnet50_256, and the GPU's name and the wall time to OUT/gpu.txt.
#   scripts/compare_lgg_demo_gpu.sh OUT [SEEDS]
# Rerunning with the same OUT skips finished runs and resumes an interrupted one.
set -euo pipefail
out=${1:?usage: scripts/compare_lgg_demo_gpu.sh OUT [SEEDS]}
seeds=${2:-3}
medseg=${MEDSEG:-.venv/bin/medseg}
data="$out/demo_lgg"
mkdir -p "$out"
[ -e "$data/medseg_demo.json" ] || "$medseg" demo-data lgg "$data"
start=$(date +%s)
"$medseg" compare configs/compare_lgg_demo.yaml --methods standard --seeds "$seeds" \
    --method-set adamw:optim.weight_decay=0.01 \
    --set data.root="$data" --set model.encoder=resnet50 --set data.image_size=256 \
    --set train.device=cuda --set data.num_workers=4 \
    --out "$out/compare_lgg_demo_resnet50_256"
{
    nvidia-smi --query-gpu=name,memory.total --format=csv,noheader
    echo "wall time: $(( $(date +%s) - start )) s for $seeds seeds x 9 methods"
} | tee "$out/gpu.txt"
