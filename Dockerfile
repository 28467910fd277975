# corral in a container: the whole single-host cluster (`serve --all`) or any one role.
# Running containers needs a privileged container with the host's cgroups, e.g.
#   docker build -t corral . && docker run --privileged --cgroupns=host -p 6443:6443 -v corral:/var/lib/corral corral
# (Not built in this project's CI: its machines have no Docker engine.)
FROM python:3.11-slim-bookworm

RUN apt-get update \
 && DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends \
      etcd-server etcd-client containerd runc containernetworking-plugins iproute2 nftables iptables \
 && rm -rf /var/lib/apt/lists/*

WORKDIR /src
COPY pyproject.toml README.md ./
COPY src ./src
RUN pip install --no-cache-dir . && rm -rf /src

VOLUME /var/lib/corral
EXPOSE 6443
ENTRYPOINT ["corral"]
CMD ["serve", "--all", "--data-dir", "/var/lib/corral", "--listen", "0.0.0.0:6443"]
