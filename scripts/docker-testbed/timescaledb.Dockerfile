# Stand-in for timescale/timescaledb:<version>-pg17 (scripts/docker-testbed.sh): the metadata
# and entrypoint on top of ROOTFS, a Debian trixie rootfs with postgresql-17 and TimescaleDB
# that the script imported. No RUN: building it needs no network.
ARG ROOTFS
FROM ${ROOTFS}
ENV PATH=/usr/lib/postgresql/17/bin:/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin \
    PGDATA=/var/lib/postgresql/data \
    LANG=C.UTF-8
COPY timescaledb-entrypoint.sh /usr/local/bin/docker-entrypoint.sh
RUN ["/bin/chmod", "0755", "/usr/local/bin/docker-entrypoint.sh"]
VOLUME /var/lib/postgresql/data
EXPOSE 5432
# Fast shutdown, as the official image.
STOPSIGNAL SIGINT
ENTRYPOINT ["docker-entrypoint.sh"]
CMD ["postgres"]
