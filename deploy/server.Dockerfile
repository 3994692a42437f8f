# The catty-server image, for Kubernetes and other container platforms. From the repository's
# root after `bun build.ts`:
#
#   docker build -f deploy/server.Dockerfile -t catty-server:latest .
FROM debian:bookworm-slim
RUN apt-get update && apt-get install -y --no-install-recommends ca-certificates && rm -rf /var/lib/apt/lists/*
COPY dist/catty-server /usr/local/bin/catty-server
USER 65532:65532
EXPOSE 4815
ENTRYPOINT ["/usr/local/bin/catty-server"]
CMD ["serve", "--host", "0.0.0.0"]
