# capstan's container image: one static binary (musl, OpenSSL built in) on an empty
# base, plus the CA certificates its TLS clients read. About 52 MB.
#
#   docker build -t capstan .
#   docker run --rm -p 9120:9120 -v "$PWD/capstan.toml:/etc/capstan/capstan.toml:ro" \
#     -e CAPSTAN_TOKEN=... capstan
#
# The binary it copies is the one `scripts/build-static` builds and checks on a
# Debian machine without a container engine (docs/deploy.md).

# --- build ------------------------------------------------------------------------
FROM rust:1-bookworm AS build
RUN apt-get update \
    && apt-get install -y --no-install-recommends musl-tools cmake perl make \
    && rm -rf /var/lib/apt/lists/* \
    && rustup target add x86_64-unknown-linux-musl
WORKDIR /src
COPY . .
RUN cargo build --release --locked -p capstan --features static \
        --target x86_64-unknown-linux-musl \
    && strip -o /capstan target/x86_64-unknown-linux-musl/release/capstan \
    && mkdir -p /rootfs/etc/capstan /rootfs/var/lib/capstan /rootfs/tmp

# --- image ------------------------------------------------------------------------
FROM scratch
COPY --from=build /etc/ssl/certs/ca-certificates.crt /etc/ssl/certs/ca-certificates.crt
COPY --from=build --chown=65534:65534 /rootfs/ /
COPY --from=build /capstan /usr/local/bin/capstan
# Not root: nobody. The store (`[store] path`) goes under /var/lib/capstan, a volume.
USER 65534:65534
VOLUME ["/var/lib/capstan"]
# The HTTP listener: /metrics, the API, the webhooks and the page. Beyond loopback it
# requires `[server] token` or `token_file` (capstan refuses to start without one).
EXPOSE 9120
ENTRYPOINT ["/usr/local/bin/capstan"]
CMD ["run", "--config", "/etc/capstan/capstan.toml"]
