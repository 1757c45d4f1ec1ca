# Multi-stage build: compile in the Rust image, run as a non-root user in a slim one.
FROM rust:1-bookworm AS build
WORKDIR /src
COPY . .
RUN cargo build --release -p brownout && strip target/release/brownout

FROM debian:bookworm-slim
RUN useradd --system --uid 10001 --no-create-home brownout
COPY --from=build /src/target/release/brownout /usr/local/bin/brownout
COPY --from=build /src/profiles /etc/brownout/profiles
USER 10001
# Sidecar form: configure with BROWNOUT_* variables (see docs/configuration.md).
ENV BROWNOUT_LISTEN=0.0.0.0:8080 BROWNOUT_ADMIN=127.0.0.1:9911
EXPOSE 8080 9911
ENTRYPOINT ["/usr/local/bin/brownout"]
CMD ["serve"]
