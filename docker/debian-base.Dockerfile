# A stand-in for python:3.11-slim-bookworm where no container registry is reachable: the Debian bookworm minbase
# root file system that scripts/build-image made with debootstrap and imported, plus Debian's own python3.11.
# Build it with scripts/build-image (docs/container.md), not by hand.
ARG MINBASE=localhost/aaa-fmip-minbase:bookworm
FROM ${MINBASE}
RUN set -eu; \
    apt-get update; \
    DEBIAN_FRONTEND=noninteractive apt-get -y upgrade; \
    DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends \
        python3 python3-venv ca-certificates; \
    apt-get clean; \
    rm -rf /var/lib/apt/lists/* /var/cache/debconf/*-old /var/log/apt/* /var/log/dpkg.log
ENV LANG=C.UTF-8
CMD ["python3"]
