# A stand-in for the official redis image where no container registry is reachable: Debian's redis-server on
# the bookworm minbase that scripts/build-image made. Like the official image it runs as the redis user in
# /data, and turns protected mode off (the container network is the boundary), so the same compose file works
# with either: `redis-server ARGS...` as the command.
ARG MINBASE=localhost/aaa-fmip-minbase:bookworm
FROM ${MINBASE}
RUN set -eu; \
    apt-get update; \
    DEBIAN_FRONTEND=noninteractive apt-get -y upgrade; \
    DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends redis-server; \
    apt-get clean; \
    rm -rf /var/lib/apt/lists/* /var/cache/debconf/*-old /var/log/apt/* /var/log/dpkg.log; \
    mkdir /data; chown redis:redis /data; \
    printf '%s\n' '#!/bin/sh' 'if [ "${1:-}" = redis-server ]; then shift; exec redis-server --protected-mode no "$@"; fi' \
        'exec "$@"' > /usr/local/bin/redis-entrypoint; \
    chmod 755 /usr/local/bin/redis-entrypoint
VOLUME /data
WORKDIR /data
USER redis
EXPOSE 6379
ENTRYPOINT ["/usr/local/bin/redis-entrypoint"]
CMD ["redis-server"]
