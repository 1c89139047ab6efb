#!/usr/bin/env bash
# Build medseg's image from the Dockerfile and run it as users do; exit non-zero on any failure.
#   scripts/image_check.sh
# Builds with docker where a daemon answers, otherwise with buildah (as root: vfs storage,
# chroot isolation; installed from Debian's packages when missing). Where the Dockerfile's
# default base cannot be pulled (no Docker Hub), it builds a Debian bookworm base with
# debootstrap and passes it as the BASE build argument. Then, in the built image:
#   1. medseg --help
#   2. the demo job, the README's Docker commands: demo data and a training run (kept short: 1
#      epoch of 2 steps) into a host folder mounted at /work, as the image's user (uid 1000) or
#      RUN_AS=uid:gid; every file there must be that user's, and nothing may be written in the
#      image outside /work and /tmp (checked after every step)
#   3. medseg app on a port, the image's own HEALTHCHECK command failing until it serves, then
#      passing
#   4. medseg predict on a mounted patient folder
# and on the host, the run folder the container wrote must open as a run card without problems
# (what the app lists). Prints each step's time and the image's size.
# Environment: IMAGE (default localhost/medseg:check), RUN_AS (default 1000:1000), KEEP=1 keeps
# the image and the scratch folder, BUILD=0 runs a kept image again without building it,
# DEBIAN_MIRROR (debootstrap's mirror), APP_PORT (8599).
set -euo pipefail
cd "$(dirname "$0")/.."

image=${IMAGE:-localhost/medseg:check}
run_as=${RUN_AS:-1000:1000}
port=${APP_PORT:-8599}
default_base=docker.io/library/python:3.11-slim-bookworm
base_image=localhost/medseg-base:bookworm
work=$(mktemp -d "${TMPDIR:-/tmp}/medseg-image-check.XXXXXX")
timings=()
failed=""

say() { echo "image_check: $*"; }
fail() { say "FAILED: $*" >&2; failed=1; exit 1; }
timed() {  # timed NAME COMMAND...: run it, record its wall time
  local name=$1 start
  shift
  start=$(date +%s)
  say "$name ..."
  "$@" || fail "$name"
  timings+=("$name: $(( $(date +%s) - start )) s")
}

cleanup() {
  local code=$?
  if [ "${builder:-}" = buildah ]; then
    [ -z "${container:-}" ] || buildah rm "$container" >/dev/null 2>&1 || true
    [ "${KEEP:-0}" = 1 ] || buildah rmi --force "$image" "$base_image" >/dev/null 2>&1 || true
  elif [ "${builder:-}" = docker ] && [ "${KEEP:-0}" != 1 ]; then
    docker rmi --force "$image" >/dev/null 2>&1 || true
  fi
  for line in "${timings[@]}"; do say "  $line"; done
  if [ "${KEEP:-0}" = 1 ]; then say "kept $work and $image"; else rm -rf "$work"; fi
  if [ "$code" = 0 ] && [ -z "$failed" ]; then say "passed"; fi
  exit "$code"
}
trap cleanup EXIT

# --- the builder -------------------------------------------------------------------------
if command -v docker >/dev/null 2>&1 && docker info >/dev/null 2>&1; then
  builder=docker
else
  builder=buildah
  export STORAGE_DRIVER=vfs BUILDAH_ISOLATION=chroot
  if ! command -v buildah >/dev/null 2>&1 || ! command -v debootstrap >/dev/null 2>&1; then
    [ "$(id -u)" = 0 ] || fail "no Docker daemon, and buildah needs root (or install buildah and debootstrap)"
    timed "install buildah and debootstrap" bash -c \
      "apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq buildah debootstrap >/dev/null"
  fi
fi
say "builder: $builder"

# pip inside the build: the host's CA bundle and its local package indexes, mounted read-only
# for the build only (nothing of them stays in the image)
build_volumes=() pip_options=""
if [ -f /etc/ssl/certs/ca-certificates.crt ]; then
  build_volumes+=(--volume /etc/ssl/certs:/hostcerts:ro)
  pip_options+=" --cert /hostcerts/ca-certificates.crt"
fi
for index in /opt/pypi /opt/pypi-more; do
  if [ -d "$index/simple" ]; then
    build_volumes+=(--volume "$index:$index:ro")
    pip_options+=" --extra-index-url file://$index/simple"
  fi
done

# --- the base ----------------------------------------------------------------------------
debootstrap_base() {
  local root="$work/rootfs"
  debootstrap --variant=minbase --include=python3,python3-venv,ca-certificates,passwd \
    bookworm "$root" "${DEBIAN_MIRROR:-http://deb.debian.org/debian}" >"$work/debootstrap.log" 2>&1 \
    || { tail -5 "$work/debootstrap.log" >&2; return 1; }
  mkdir -p "$work/base"
  tar -C "$root" -cf "$work/base/rootfs.tar" . && rm -rf "$root"
  printf 'FROM scratch\nADD rootfs.tar /\nCMD ["/bin/bash"]\n' >"$work/base/Containerfile"
  buildah bud --quiet -t "$base_image" -f "$work/base/Containerfile" "$work/base" >/dev/null
  rm -rf "$work/base"
}

base_arg=()
if [ "${BUILD:-1}" = 0 ]; then
  :
elif [ "$builder" = docker ]; then
  timeout 120 docker pull -q "$default_base" >/dev/null 2>&1 || fail "cannot pull $default_base"
elif timeout 60 buildah pull -q "$default_base" >/dev/null 2>&1; then
  say "base: $default_base"
else
  say "base: $default_base cannot be pulled; building a Debian bookworm base with debootstrap"
  timed "debootstrap base" debootstrap_base
  base_arg=(--build-arg "BASE=$base_image")
fi

# --- the build ---------------------------------------------------------------------------
if [ "${BUILD:-1}" = 0 ]; then
  say "BUILD=0: running the image kept by an earlier KEEP=1 run"
  size=$(buildah images --noheading --format '{{.Size}}' "$image" 2>/dev/null | head -1 || true)
  [ -n "$size" ] || fail "no image $image to reuse"
elif [ "$builder" = docker ]; then
  timed "build" docker build -q -t "$image" .
  size=$(docker image inspect --format '{{.Size}}' "$image")
else
  build() {
    buildah bud --quiet --format docker --layers=false -t "$image" "${base_arg[@]}" \
      "${build_volumes[@]}" --build-arg "PIP_OPTIONS=$pip_options" -f Dockerfile . \
      >"$work/build.log" 2>&1 || { grep -v "is ignored: it is neither" "$work/build.log" | tail -20 >&2; return 1; }
  }
  timed "build" build
  size=$(buildah images --noheading --format '{{.Size}}' "$image" | head -1)
fi

# --- running it --------------------------------------------------------------------------
shared="$work/shared"  # the host folder mounted at /work
mkdir -p "$shared"
chown "$run_as" "$shared"

container="" mount=""
in_image() {  # in_image COMMAND...: run in the image as RUN_AS, the host folder at /work
  if [ "$builder" = docker ]; then
    docker run --rm --read-only --tmpfs /tmp --user "$run_as" --network host \
      -v "$shared:/work" "$image" "$@"
    return
  fi
  # one container for every step (vfs copies the whole image for each new one)
  if [ -z "$container" ]; then
    container=$(buildah from --quiet "$image")
    mount=$(buildah mount "$container")
  fi
  local status=0
  touch "$work/before"
  buildah run --user "$run_as" --network host --volume "$shared:/work" "$container" -- "$@" || status=$?
  # nothing written in the image outside /work (the host folder) and /tmp
  find "$mount" -xdev -newer "$work/before" -not -type d \
    -not -path "$mount/tmp/*" -not -path "$mount/work/*" >"$work/written" || true
  if [ -s "$work/written" ]; then
    say "written in the image outside /work and /tmp:" >&2
    sed "s|^$mount||" "$work/written" | head -20 >&2
    return 1
  fi
  return "$status"
}

help_check() { in_image medseg --help >"$work/help.log" 2>&1 || { cat "$work/help.log" >&2; return 1; }; }
timed "medseg --help" help_check

demo_job() {  # the README's Docker commands, the training kept short
  { in_image medseg demo-data lgg /work/demo_lgg \
    && in_image medseg train configs/demo_lgg.yaml --set data.root=/work/demo_lgg \
         --set output.dir=/work/models/demo_lgg \
         --set train.epochs=1 --set train.warmup_epochs=0 --set train.max_steps_per_epoch=2
  } >"$work/demo_job.log" 2>&1 || { tail -20 "$work/demo_job.log" >&2; return 1; }
  local run="$shared/models/demo_lgg"
  [ -f "$run/best.pt" ] && [ -f "$run/metrics.json" ] || { say "no run folder in $run" >&2; return 1; }
  local others
  others=$(find "$shared" ! -user "${run_as%%:*}" -print -quit)
  [ -z "$others" ] || { say "$others is not owned by $run_as" >&2; return 1; }
}
timed "demo job (demo data, 1 epoch of 2 steps)" demo_job

app_check() {  # the app serving, and the image's own HEALTHCHECK command saying so
  local check
  if [ "$builder" = docker ]; then
    check=$(docker image inspect --format '{{.Config.Healthcheck.Test}}' "$image")
  else
    check=$(buildah inspect --type image --format '{{.Docker.Config.Healthcheck.Test}}' "$image")
  fi
  check=${check#[}  # "[CMD python -m medseg.healthcheck]"
  check=${check%]}
  [ "${check#CMD }" != "$check" ] || { say "no HEALTHCHECK CMD in the image ($check)" >&2; return 1; }
  check=${check#CMD }
  # unhealthy until the server answers (the probe is real), then healthy
  in_image sh -c "medseg app --port $port >/tmp/app.log 2>&1 & app=\$!
    until tr '\\0' ' ' </proc/\$app/cmdline | grep -q -e 'medseg app' -e streamlit; do sleep 0.1; done
    for i in \$(seq 1 120); do
      if MEDSEG_APP_PORT=$port $check; then echo \"healthy after \$i tries\"; kill \$app; exit 0; fi
      sleep 1
    done
    cat /tmp/app.log; kill \$app; exit 1" >"$work/app.log" 2>&1 || { tail -20 "$work/app.log" >&2; return 1; }
  grep -q "healthy after" "$work/app.log" && ! grep -q "healthy after 1 tries" "$work/app.log" \
    || { say "the HEALTHCHECK passed before the app served: $(cat "$work/app.log")" >&2; return 1; }
}
timed "medseg app serving, its HEALTHCHECK passing" app_check

predict_check() {
  in_image medseg predict /work/models/demo_lgg/best.pt /work/demo_lgg/kaggle_3m/TCGA_CS_2577_19900407 \
    --out /work/predictions >"$work/predict.log" 2>&1 || { tail -20 "$work/predict.log" >&2; return 1; }
  [ -n "$(find "$shared/predictions" -name '*_pred.png' -print -quit)" ] \
    || { say "predict wrote no mask" >&2; return 1; }
}
timed "medseg predict on a mounted folder" predict_check

if [ -x .venv/bin/python ]; then
  timed "the run folder opens on the host" .venv/bin/python -c "
import sys
from medseg.app.run_cards import read_run
card = read_run(sys.argv[1])
assert card.kind == 'run' and not card.problems, card.problems
print(card.name, card.task, [p.name for p in card.checkpoints])" "$shared/models/demo_lgg"
fi

say "image $image: $size"
