# brownout as a container: a multi-stage build, then a slim non-root runtime.
#
# Base images are pinned by version tag (pin by digest too, `image@sha256:...`, if
# your registry policy asks for it). Configure everything with BROWNOUT_*
# variables (docs/configuration.md); see docs/deployment.md for the sidecar form,
# docker-compose and Kubernetes.
#
# No Docker engine runs in CI: proxy/tests/container.rs runs the same build target
# and the same run and health-check commands this file declares, and
# integration-tests/tests/deploy.rs checks this file's essentials.

FROM rust:1.95.0-bookworm AS build
WORKDIR /src
COPY . .
RUN cargo build --release --locked -p brownout --bin brownout \
 && strip target/release/brownout

FROM debian:bookworm-slim
# A fixed, unprivileged user; records go to /var/lib/brownout (a volume), owned by it.
RUN useradd --system --uid 10001 --user-group --no-create-home --shell /usr/sbin/nologin brownout \
 && mkdir -p /var/lib/brownout /etc/brownout \
 && chown 10001:10001 /var/lib/brownout
COPY --from=build /src/target/release/brownout /usr/local/bin/brownout
COPY --from=build /src/profiles /etc/brownout/profiles
USER 10001:10001
WORKDIR /var/lib/brownout
# Inside a container the proxy listens on every interface. The admin API stays on
# loopback unless you set BROWNOUT_ADMIN=0.0.0.0:9911, which requires
# BROWNOUT_ADMIN_TOKEN (brownout refuses to start an open admin API without one).
ENV BROWNOUT_LISTEN=0.0.0.0:8080 \
    BROWNOUT_ADMIN=127.0.0.1:9911
EXPOSE 8080 9911
# Slim images have no curl: the binary checks its own /healthz (no token needed),
# at the address BROWNOUT_ADMIN names.
HEALTHCHECK --interval=10s --timeout=3s --start-period=5s --retries=3 \
  CMD ["/usr/local/bin/brownout", "ctl", "health"]
ENTRYPOINT ["/usr/local/bin/brownout"]
CMD ["serve"]
