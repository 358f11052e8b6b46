#!/usr/bin/env python3
"""Packs one static binary as an OCI image-layout tar that `ctr images import` accepts,
so tests need no registry. Usage: mkimage.py BINARY IMAGE_NAME OUT.tar"""
import hashlib
import io
import json
import sys
import tarfile


def tar_bytes(members):
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w", format=tarfile.PAX_FORMAT) as t:
        for info, data in members:
            t.addfile(info, io.BytesIO(data) if data is not None else None)
    return buf.getvalue()


def entry(name, size=0, mode=0o755, kind=tarfile.REGTYPE):
    info = tarfile.TarInfo(name)
    info.size, info.mode, info.type, info.mtime = size, mode, kind, 0
    return info


def digest(b):
    return "sha256:" + hashlib.sha256(b).hexdigest()


binary, name, out = sys.argv[1:4]
data = open(binary, "rb").read()
layer = tar_bytes([(entry("pause", len(data)), data)])
config = json.dumps({"architecture": "amd64", "os": "linux", "config": {"Entrypoint": ["/pause"], "WorkingDir": "/"},
                     "rootfs": {"type": "layers", "diff_ids": [digest(layer)]}}).encode()
manifest = json.dumps({"schemaVersion": 2, "mediaType": "application/vnd.oci.image.manifest.v1+json",
                       "config": {"mediaType": "application/vnd.oci.image.config.v1+json", "digest": digest(config), "size": len(config)},
                       "layers": [{"mediaType": "application/vnd.oci.image.layer.v1.tar", "digest": digest(layer), "size": len(layer)}]}).encode()
index = json.dumps({"schemaVersion": 2, "mediaType": "application/vnd.oci.image.index.v1+json",
                    "manifests": [{"mediaType": "application/vnd.oci.image.manifest.v1+json", "digest": digest(manifest),
                                   "size": len(manifest), "platform": {"architecture": "amd64", "os": "linux"},
                                   "annotations": {"io.containerd.image.name": name,
                                                   "org.opencontainers.image.ref.name": name.rsplit(":", 1)[-1]}}]}).encode()
layout = b'{"imageLayoutVersion":"1.0.0"}'
members = [(entry("blobs", kind=tarfile.DIRTYPE), None), (entry("blobs/sha256", kind=tarfile.DIRTYPE), None)]
members += [(entry("blobs/sha256/" + digest(b)[7:], len(b), 0o644), b) for b in (layer, config, manifest)]
members += [(entry("oci-layout", len(layout), 0o644), layout), (entry("index.json", len(index), 0o644), index)]
open(out, "wb").write(tar_bytes(members))
