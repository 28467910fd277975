"""corral.runtime: containerd, spoken over its gRPC API with grpclib.

- ``proto/`` + ``_pb/``: corral's own subset of containerd 1.6's .proto files and the generated stubs
  (``scripts/gen-protos.sh``).
- ``client.py``: ``Client`` — one channel, namespace/lease headers, error translation, reconnect.
- ``content.py``, ``leases.py``, ``images.py``, ``unpack.py``, ``archive.py``: blobs, GC leases, image
  records, unpacking into overlayfs, importing OCI / docker-save archives.
- ``embedded.py``: a containerd child process; ``imagebuild.py``: the busybox test image.
- containers, tasks, events, OCI spec, logs, registry pull: their own modules beside these.
"""
