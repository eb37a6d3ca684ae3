# switchboard: ingress, dispatcher and the `switchboard` tool (tap, send,
# journal, sandbox) in one image; docker-compose.yml picks the command.
#
# Both stages install their packages with scripts/deps.sh, the script of the
# native set-up, so the image and a native build use the same packages.

# ---- build: Debian 12 with the -dev packages --------------------------------
FROM debian:bookworm AS build
COPY scripts/deps.sh /src/scripts/deps.sh
RUN bash /src/scripts/deps.sh build && rm -rf /var/lib/apt/lists/*
COPY . /src
WORKDIR /src
# The five binaries into /usr/bin, the migrations and the example rules into
# /usr/share/switchboard (cmake --install; the dispatcher finds its migrations
# there by itself).
RUN cmake -S . -B build -DCMAKE_BUILD_TYPE=RelWithDebInfo -DCMAKE_INSTALL_PREFIX=/usr \
 && cmake --build build -j"$(nproc)" \
      --target switchboard-ingress switchboard-dispatcher switchboard switchboard-sandbox \
               switchboard-console \
 && DESTDIR=/out cmake --install build

# ---- runtime: Debian 12 slim with the shared libraries only ------------------
FROM debian:bookworm-slim
COPY scripts/deps.sh /tmp/deps.sh
RUN bash /tmp/deps.sh runtime && rm -rf /var/lib/apt/lists/* /tmp/deps.sh \
 && useradd --system --user-group --uid 10001 --home-dir /var/lib/switchboard \
      --shell /usr/sbin/nologin switchboard \
 && mkdir -p /var/lib/switchboard/journal \
 && chown -R switchboard:switchboard /var/lib/switchboard
COPY --from=build /out/ /
USER switchboard
WORKDIR /var/lib/switchboard
ENV SB_JOURNAL_DIR=/var/lib/switchboard/journal \
    SB_RULES=/usr/share/switchboard/rules.yaml
# ingress HTTP, dispatcher HTTP, sandbox HTTP, ingress PUB, dispatcher PUB
EXPOSE 8080 8081 8090 5556 5558
CMD ["switchboard-ingress"]
