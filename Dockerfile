# evhost in a container.  Three stages:
#   build    debian:bookworm with the packages of scripts/install-deps.sh;
#            builds evhost and installs it into /staging/usr/local.
#   sdk      for plugin authors: the same compilers and -dev packages, with
#            evhost, its SDK header, pkg-config file and CMake package
#            installed in /usr/local, so plugins are built against the same
#            Debian (and glibc) as the runtime image:
#              docker build --target sdk -t evhost-sdk .
#   runtime  (the default) debian:bookworm-slim with only the runtime
#            libraries, run as the non-root user evhost (uid 10001):
#              docker build -t evhost .
#              docker run -d -p 127.0.0.1:8000:8000 -e EVH_API_KEYS=ops:$KEY \
#                -v evhost-data:/data -v "$PWD/plugins/event-sources:/plugins/event-sources:ro" \
#                -v "$PWD/plugins/workflows:/plugins/workflows:ro" evhost
# docs/operators.md explains the volumes, host.yaml and API keys;
# docker-compose.yml is the same as a Compose file.

FROM debian:bookworm AS build
COPY scripts/install-deps.sh /tmp/install-deps.sh
RUN bash /tmp/install-deps.sh && rm -rf /var/lib/apt/lists/*
WORKDIR /src
COPY . .
# No tests or benchmarks in the image; warnings are CI's business, not a
# reason for a deployment build to fail.
RUN cmake -S . -B /build -DCMAKE_BUILD_TYPE=RelWithDebInfo -DCMAKE_INSTALL_PREFIX=/usr/local \
          -DBUILD_TESTING=OFF -DEVH_BENCH=OFF -DEVH_WERROR=OFF \
 && cmake --build /build -j"$(nproc)" \
 && DESTDIR=/staging cmake --install /build --strip

FROM debian:bookworm AS sdk
COPY scripts/install-deps.sh /tmp/install-deps.sh
RUN bash /tmp/install-deps.sh && rm -rf /var/lib/apt/lists/* /tmp/install-deps.sh
COPY --from=build /staging/usr/local/ /usr/local/
WORKDIR /src
CMD ["bash"]

FROM debian:bookworm-slim AS runtime
RUN apt-get update \
 && DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends \
      libcjson1 libyaml-0-2 libsqlite3-0 libcurl4 libmicrohttpd12 libssl3 ca-certificates \
 && rm -rf /var/lib/apt/lists/*
# The plugin directories belong to root and are read-only for evhost: the
# loader accepts plugin folders owned by root or by evhost's own user, and
# refuses any that group or others could write to.
RUN groupadd --system --gid 10001 evhost \
 && useradd --system --uid 10001 --gid evhost --home-dir /data --no-create-home \
            --shell /usr/sbin/nologin evhost \
 && mkdir -p /plugins/event-sources /plugins/workflows /etc/evhost/workflows /data \
 && chmod 0755 /plugins /plugins/event-sources /plugins/workflows /etc/evhost/workflows \
 && chown evhost:evhost /data && chmod 0750 /data
COPY --from=build /staging/usr/local/ /usr/local/
COPY docker/host.yaml docker/triggers.yaml /etc/evhost/
USER evhost
WORKDIR /data
VOLUME ["/plugins/event-sources", "/plugins/workflows", "/data"]
EXPOSE 8000
# `evhost health` is a plain HTTP GET of /api/health at the address
# host.yaml's server.listen names (0.0.0.0 meaning loopback): no curl needed.
HEALTHCHECK --interval=30s --timeout=10s --start-period=30s --retries=3 \
  CMD ["evhost", "health", "--config", "/etc/evhost/host.yaml", "--timeout", "5"]
# SIGTERM: the daemon stops taking requests, lets sources return, stores
# what it accepted and waits up to shutdown_timeout_s (10 s) for running
# workflows; give `docker stop` more than that (-t 30, or stop_grace_period).
STOPSIGNAL SIGTERM
# The log goes to the console (stderr), one line per record: `docker logs`.
ENTRYPOINT ["evhost"]
CMD ["run", "--config", "/etc/evhost/host.yaml"]
