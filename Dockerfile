# Build stage: compile walletql in release mode.
FROM rust:1-bookworm AS build
WORKDIR /src
COPY . .
RUN cargo build --release --locked --bin walletql

# Runtime stage: a small Debian with only the binary, run as a non-root user.
FROM debian:bookworm-slim
RUN useradd --system --create-home --uid 10001 walletql
COPY --from=build /src/target/release/walletql /usr/local/bin/walletql
USER 10001
WORKDIR /home/walletql
ENV LISTEN_ADDR=0.0.0.0:8080
EXPOSE 8080
HEALTHCHECK --interval=10s --timeout=5s --retries=6 CMD ["walletql", "healthcheck"]
ENTRYPOINT ["walletql"]
