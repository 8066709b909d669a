# The gateway's container image: built from this repository, run as an unprivileged user.
#   docker build -t iggy-kafka-gateway .                       # tokio (the default)
#   docker build --build-arg RUNTIME=smol -t iggy-kafka-gateway:smol .
#   docker run -p 9093:9093 -p 9464:9464 \
#     -e IGGY_KAFKA_IGGY=iggy://iggy:iggy@iggy:8090 \
#     -e IGGY_KAFKA_ADVERTISED_LISTENER=localhost:9093 iggy-kafka-gateway
# Without IGGY_KAFKA_IGGY it serves from the embedded in-memory store (nothing is kept).
# The admin listener (/metrics, /health, /ready) listens on every interface here, so that
# the orchestrator and the scraper reach it: publish port 9464 only where they are.

FROM rust:1-bookworm AS build
ARG RUNTIME=tokio
WORKDIR /src
COPY . .
RUN cargo build --release --locked --no-default-features --features "${RUNTIME}" \
      --bin iggy-kafka-gateway \
 && cp target/release/iggy-kafka-gateway /iggy-kafka-gateway

FROM debian:bookworm-slim
RUN useradd --system --uid 10001 --no-create-home --shell /usr/sbin/nologin gateway
COPY --from=build /iggy-kafka-gateway /usr/local/bin/iggy-kafka-gateway
COPY deploy/iggy-kafka-gateway.toml /etc/iggy-kafka-gateway/gateway.toml
USER gateway
ENV IGGY_KAFKA_CONFIG=/etc/iggy-kafka-gateway/gateway.toml \
    IGGY_KAFKA_LISTEN=0.0.0.0:9093 \
    IGGY_KAFKA_ADMIN_LISTEN=0.0.0.0:9464
EXPOSE 9093 9464
STOPSIGNAL SIGTERM
ENTRYPOINT ["/usr/local/bin/iggy-kafka-gateway"]
