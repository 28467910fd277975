#!/bin/sh
# Build corral's tiny test image from Debian's busybox-static as an OCI archive (default
# ./busybox-oci.tar), e.g. for the README demo:
#   scripts/build-busybox-image.sh /tmp/busybox.tar
#   skopeo copy oci-archive:/tmp/busybox.tar docker://127.0.0.1:5000/busybox:1 --dest-tls-verify=false
set -eu
cd "$(dirname "$0")/.."
exec "${PYTHON:-.venv/bin/python}" -m corral.runtime.imagebuild "${1:-busybox-oci.tar}" ${2:+--ref "$2"}
