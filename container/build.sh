#!/bin/sh
# Build the attestd enclave image and print its measurements.
#
#   container/build.sh ubuntu20
#
# Settings (environment):
#   SGX_SIGNING_KEY      the enclave signing key, RSA-3072 with exponent 3
#                        (default: $HOME/.config/gramine/enclave-key.pem)
#   ATTESTD_IMAGE        the image tag (default: attestd:ubuntu20)
#   ATTESTD_OUT_DIR      where the .sig, the manifest and the measurements
#                        file go (default: build/ubuntu20)
#   UBUNTU_SNAPSHOT      the Ubuntu archive snapshot (e.g. 20250601T000000Z)
#   GRAMINE_KEY_SHA256, INTEL_SGX_KEY_SHA256, SOURCE_DATE_EPOCH,
#   GRAMINE_VERSION, SGX_AESM_VERSION, SGX_DCAP_VERSION, PYTHON_VERSION,
#   PYTHON_SHA256, ISV_PROD_ID, ISV_SVN
#                        passed on as build arguments when set
#   DOCKER               the docker command (default: docker)
#   ATTESTD_CLI          the attestd command reading the .sig
#                        (default: attestd)
set -eu

usage() {
    echo "usage: $0 ubuntu20" >&2
    echo "  the only target is ubuntu20 (Ubuntu 20.04 focal, linux/amd64)" >&2
    exit 2
}

[ "$#" -eq 1 ] || usage
case "$1" in
    ubuntu20) target=$1 ;;
    *)
        echo "$0: unknown target '$1': only ubuntu20 is supported" >&2
        usage
        ;;
esac

here=$(cd "$(dirname "$0")" && pwd)
root=$(dirname "$here")
docker=${DOCKER:-docker}
attestd=${ATTESTD_CLI:-attestd}
image=${ATTESTD_IMAGE:-attestd:$target}
out=${ATTESTD_OUT_DIR:-$root/build/$target}
key=${SGX_SIGNING_KEY:-${HOME:-}/.config/gramine/enclave-key.pem}

# SGX accepts only RSA-3072 keys with public exponent 3 (SIGSTRUCT).
if [ ! -r "$key" ]; then
    echo "$0: signing key $key is missing or unreadable" >&2
    echo "  make one with: gramine-sgx-gen-private-key" \
        "(or: openssl genrsa -3 -out enclave-key.pem 3072)," \
        "or set SGX_SIGNING_KEY" >&2
    exit 1
fi
if ! text=$(openssl rsa -in "$key" -noout -text 2>/dev/null); then
    echo "$0: $key is not an RSA private key in PEM form" >&2
    exit 1
fi
bits=$(printf '%s\n' "$text" | sed -n 's/.*Private-Key: (\([0-9]*\) bit.*/\1/p')
exponent=$(printf '%s\n' "$text" | sed -n 's/^publicExponent: \([0-9]*\) .*/\1/p')
if [ "$bits" != 3072 ] || [ "$exponent" != 3 ]; then
    echo "$0: $key is RSA-${bits:-?} with exponent ${exponent:-?};" \
        "SGX needs RSA-3072 with exponent 3" >&2
    exit 1
fi

if ! command -v "$attestd" >/dev/null 2>&1; then
    echo "$0: '$attestd' not found: install attestd (pip install .)" \
        "to read the measurements, or set ATTESTD_CLI" >&2
    exit 1
fi

# Build arguments given in the environment, passed on as they are.
set --
for name in UBUNTU_SNAPSHOT SOURCE_DATE_EPOCH GRAMINE_KEY_SHA256 \
    INTEL_SGX_KEY_SHA256 GRAMINE_VERSION SGX_AESM_VERSION SGX_DCAP_VERSION \
    PYTHON_VERSION PYTHON_SHA256 ISV_PROD_ID ISV_SVN; do
    eval "value=\${$name-}"
    if [ -n "$value" ]; then
        set -- "$@" --build-arg "$name=$value"
    fi
done

mkdir -p "$out"

# The .sig (and the rendered manifest) alone, then the image; the second
# build reuses the first one's cached stages.
"$docker" buildx build \
    --platform linux/amd64 \
    --file "$here/Dockerfile" \
    --secret "id=enclave-key,src=$key" \
    --target measurements \
    --output "type=local,dest=$out" \
    "$@" \
    "$root"
"$docker" buildx build \
    --platform linux/amd64 \
    --file "$here/Dockerfile" \
    --secret "id=enclave-key,src=$key" \
    --target runtime \
    --tag "$image" \
    --load \
    "$@" \
    "$root"

if [ ! -s "$out/attestd.sig" ]; then
    echo "$0: the build wrote no $out/attestd.sig" >&2
    exit 1
fi
"$attestd" measure "$out/attestd.sig" >"$out/measurements.txt"
echo "image: $image"
cat "$out/measurements.txt"
echo "measurements written to $out/measurements.txt"
