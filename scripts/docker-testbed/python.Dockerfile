# Stand-in for python:3.11-slim-bookworm (scripts/docker-testbed.sh): the metadata on top of
# ROOTFS, a Debian bookworm rootfs with python3 (3.11), pip and the build host's CA bundle
# that the script imported. No RUN: building it needs no network.
ARG ROOTFS
FROM ${ROOTFS}
ENV PATH=/usr/local/bin:/usr/local/sbin:/usr/sbin:/usr/bin:/sbin:/bin \
    LANG=C.UTF-8
CMD ["python3"]
