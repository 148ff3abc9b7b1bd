# Latchkey: one image for `serve`, `worker`, `migrate` and the self-hosted connector.
FROM rust:1.95-bookworm AS build
WORKDIR /src
COPY . .
RUN cargo build --release --locked --bin latchkey

FROM debian:bookworm-slim
# ca-certificates: outbound TLS to Microsoft Graph verifies against the system roots.
RUN apt-get update \
 && apt-get install -y --no-install-recommends ca-certificates \
 && rm -rf /var/lib/apt/lists/* \
 && useradd --system --uid 10001 --home /nonexistent latchkey
COPY --from=build /src/target/release/latchkey /usr/local/bin/latchkey
USER 10001
ENV LATCHKEY_LISTEN=0.0.0.0:8080 LATCHKEY_LOG_FORMAT=json
EXPOSE 8080
ENTRYPOINT ["latchkey"]
CMD ["serve"]
