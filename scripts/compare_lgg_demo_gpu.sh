#!/usr/bin/env bash
# The LGG demo comparison at full size on one GPU: ResNet-50-UNet at 256 px, the nine
# methods of `medseg compare --methods standard`, 3 seeds (27 runs), nothing downloaded.
# Writes the demo data (real anatomy, SYNTHETIC lesions) into OUT/demo_lgg, the comparison
# into OUT/compare_lgg_demo_resnet50_256, and the GPU's name and the wall time to OUT/<name>.gpu.txt.
# With --tune, every method is first tuned under the config's tune: budget (8 trials of the
# learning rate, the same points for every method; docs/compare.md) and the comparison goes
# to OUT/compare_lgg_demo_resnet50_256_tuned; any other argument is passed to compare.
#   scripts/compare_lgg_demo_gpu.sh OUT [SEEDS] [--tune] [COMPARE ARGS...]
# Rerunning with the same OUT skips finished runs and trials and resumes an interrupted one.
set -euo pipefail
out=${1:?usage: scripts/compare_lgg_demo_gpu.sh OUT [SEEDS] [--tune] [COMPARE ARGS...]}
seeds=${2:-3}
shift $(( $# < 2 ? $# : 2 ))
medseg=${MEDSEG:-.venv/bin/medseg}
data="$out/demo_lgg"
name=compare_lgg_demo_resnet50_256
for arg in "$@"; do [ "$arg" = --tune ] && name=${name}_tuned; done
mkdir -p "$out"
[ -e "$data/medseg_demo.json" ] || "$medseg" demo-data lgg "$data"
start=$(date +%s)
"$medseg" compare configs/compare_lgg_demo.yaml --methods standard --seeds "$seeds" \
    --method-set adamw:optim.weight_decay=0.01 \
    --set data.root="$data" --set model.encoder=resnet50 --set data.image_size=256 \
    --set train.device=cuda --set data.num_workers=4 \
    --out "$out/$name" "$@"
{
    nvidia-smi --query-gpu=name,memory.total --format=csv,noheader
    echo "wall time: $(( $(date +%s) - start )) s for $seeds seeds x 9 methods ($name)"
} | tee "$out/$name.gpu.txt"
