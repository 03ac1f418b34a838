# countd as a FROM scratch image: nothing is pulled, so the static binary
# is built on the host first (CGO_ENABLED=0, as `make build` does):
#
#   make build image        # or: make build && docker build -t countmesh/countd:latest .
#
# The image holds only /countd and /countctl. There is no shell, so everything is set
# through flags or COUNTMESH_<FLAG> environment variables (docker-compose.yml
# shows a mesh of 3 regions x 2 nodes).
FROM scratch
COPY bin/countd /countd
# countctl, for the init step that makes a secured mesh's certificates,
# gossip key and token (docker-compose.yml) and for operators.
COPY bin/countctl /countctl
# Pebble and the operation log; mount a volume here to keep them across
# container restarts.
VOLUME ["/data"]
ENV COUNTMESH_DATA_DIR=/data \
    COUNTMESH_HTTP_ADDR=0.0.0.0:7070 \
    COUNTMESH_GOSSIP_ADDR=0.0.0.0:7946
# 7070 HTTP API; 7946 memberlist (TCP and UDP); 7947 the peer listener (TCP).
EXPOSE 7070 7946/tcp 7946/udp 7947
STOPSIGNAL SIGTERM
ENTRYPOINT ["/countd"]
