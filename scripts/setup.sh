#!/usr/bin/env bash
# Create .venv and install medseg into it. Idempotent: a second run only checks.
#   scripts/setup.sh            the package (training, evaluation, the app)
#   scripts/setup.sh --dev      plus the test and lint tools
#   scripts/setup.sh --browser  plus Debian's Chromium for the browser test (needs root/apt)
set -euo pipefail
cd "$(dirname "$0")/.."

dev=0 browser=0
for arg in "$@"; do
  case "$arg" in
    --dev) dev=1 ;;
    --browser) browser=1 ;;
    *) echo "setup.sh: unknown option $arg (use --dev, --browser)" >&2; exit 2 ;;
  esac
done

PYTHON=${PYTHON:-python3}
if [ ! -x .venv/bin/python ]; then
  "$PYTHON" -m venv .venv
fi
pip() { .venv/bin/python -m pip --disable-pip-version-check -q "$@" 2>&1 | grep -v "is ignored: it is neither" || true; }

# torch and torchvision, a matching pair, pinned in requirements/torch.txt (the Dockerfile
# installs the same file).
if ! .venv/bin/python -c "import torch, torchvision" 2>/dev/null; then
  pip install -r requirements/torch.txt
fi
extras=""
[ "$dev" = 1 ] && extras="[dev]"
pip install -e ".${extras}"
.venv/bin/python -c "import medseg, torch, torchvision, monai, segmentation_models_pytorch" \
  || { echo "setup.sh: the installation is incomplete (see the pip messages above)" >&2; exit 1; }

if [ "$browser" = 1 ] && [ ! -x /usr/bin/chromium ]; then
  if command -v apt-get >/dev/null && [ "$(id -u)" = 0 ]; then
    apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium >/dev/null
  else
    echo "setup.sh: the browser test needs /usr/bin/chromium (apt-get install chromium)" >&2
  fi
fi
echo "setup.sh: ready (.venv, medseg $(.venv/bin/python -c 'import medseg; print(medseg.__version__)'))"
