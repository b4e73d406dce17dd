#!/bin/sh
# Run the attestd container with this host's SGX devices; the systemd unit
# (container/attestd.service) runs it, and it works by hand too.
#
# Install:  install -m 755 container/docker-run.sh \
#               /usr/local/lib/attestd/docker-run.sh
#
# Devices: the in-kernel driver (Linux 5.11 and later) creates
# /dev/sgx_enclave and /dev/sgx_provision, and udev on many distributions
# adds /dev/sgx/enclave and /dev/sgx/provision as symlinks to them; the older
# DCAP driver creates only the /dev/sgx/ names.  Whichever exists on the
# host is passed under both names, so that Gramine, AESM and the start
# command find it.  A missing device is named, and nothing is started.
#
# Settings (environment):
#   ATTESTD_IMAGE     the image (default: attestd:ubuntu20)
#   ATTESTD_ENV_FILE  settings passed into the container with docker's
#                     --env-file, when the file exists: one VAR=value a
#                     line, no quotes (default: /etc/attestd/attestd.env)
#   ATTESTD_DEV       where the host's device nodes are (default: /dev)
#   ATTESTD_HOST_AESM_DIR  when set (e.g. /var/run/aesmd), the host's AESM
#                     socket directory, mounted at /var/run/aesmd so that the
#                     start command uses the host's AESM instead of its own
#                     (set ATTESTD_AESM=host in the settings file to insist)
#   DOCKER            the docker command (default: docker)
set -eu

image=${ATTESTD_IMAGE:-attestd:ubuntu20}
env_file=${ATTESTD_ENV_FILE:-/etc/attestd/attestd.env}
dev=${ATTESTD_DEV:-/dev}
docker=${DOCKER:-docker}

set -- run --rm --name attestd --init --publish 8080:8080
missing=""
for device in enclave provision; do
    if [ -e "$dev/sgx_$device" ]; then
        node=$dev/sgx_$device
    elif [ -e "$dev/sgx/$device" ]; then
        node=$dev/sgx/$device
    elif [ "$device" = enclave ] && [ -e "$dev/isgx" ]; then
        # The legacy out-of-tree driver, under its own name only.
        set -- "$@" --device "$dev/isgx:/dev/isgx" \
            --group-add "$(stat -L -c %g "$dev/isgx")"
        continue
    else
        also=""
        [ "$device" = enclave ] && also=", $dev/isgx"
        missing="$missing $dev/sgx_$device (nor $dev/sgx/$device$also);"
        continue
    fi
    # The container runs as an unprivileged user: give it the group that
    # owns the node on this host.
    set -- "$@" --device "$node:/dev/sgx_$device" \
        --device "$node:/dev/sgx/$device" \
        --group-add "$(stat -L -c %g "$node")"
done
if [ -n "$missing" ]; then
    echo "attestd: missing SGX device(s) on this host:$missing" >&2
    exit 1
fi
if [ -e "$env_file" ]; then
    set -- "$@" --env-file "$env_file"
fi
if [ -n "${ATTESTD_HOST_AESM_DIR:-}" ]; then
    if [ ! -d "$ATTESTD_HOST_AESM_DIR" ]; then
        echo "attestd: ATTESTD_HOST_AESM_DIR $ATTESTD_HOST_AESM_DIR is not a directory" >&2
        exit 1
    fi
    set -- "$@" --volume "$ATTESTD_HOST_AESM_DIR:/var/run/aesmd"
fi
exec "$docker" "$@" "$image"
