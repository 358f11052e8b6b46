#!/usr/bin/env python3
"""Packs files into a single-layer OCI image without a container engine: an OCI image-layout
directory and the same as a tar that `ctr images import` and `docker load` accept. The output
depends only on the input files (sorted entries, owner 0, times 0, gzip without a timestamp),
so the same input gives the same digest.

Usage: mkimage.py --name REF --entrypoint /podnet [--cmd ARG]... [--env K=V]...
                  --add SRC:DEST[:MODE]... [--dir DEST]... --out DIR [--tar FILE]
Prints the manifest digest and the compressed size."""
import argparse
import gzip
import hashlib
import io
import json
import os
import tarfile


def digest(b):
    return "sha256:" + hashlib.sha256(b).hexdigest()


def entry(name, size=0, mode=0o755, kind=tarfile.REGTYPE):
    info = tarfile.TarInfo(name)
    info.size, info.mode, info.type, info.mtime = size, mode, kind, 0
    info.uid = info.gid = 0
    info.uname = info.gname = ""
    return info


def tar_bytes(members):
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w", format=tarfile.GNU_FORMAT) as t:
        for info, data in members:
            t.addfile(info, io.BytesIO(data) if data is not None else None)
    return buf.getvalue()


def layer_members(adds, dirs):
    files = {}
    for spec in adds:
        parts = spec.split(":")
        src, dest = parts[0], parts[1].lstrip("/")
        mode = int(parts[2], 8) if len(parts) > 2 else (0o755 if os.access(src, os.X_OK) else 0o644)
        files[dest] = (open(src, "rb").read(), mode)
    wanted_dirs = {d.strip("/") for d in dirs}
    for dest in list(files) + list(wanted_dirs):
        parent = os.path.dirname(dest)
        while parent:
            wanted_dirs.add(parent)
            parent = os.path.dirname(parent)
    members = [(entry(d + "/", kind=tarfile.DIRTYPE), None) for d in sorted(wanted_dirs)]
    # /tmp is world-writable with the sticky bit, as programs expect.
    members = [(entry(m.name, kind=tarfile.DIRTYPE, mode=0o1777 if m.name == "tmp/" else 0o755), None) for m, _ in members]
    members += [(entry(dest, len(data), mode), data) for dest, (data, mode) in sorted(files.items())]
    return members


def main():
    p = argparse.ArgumentParser()
    p.add_argument("--name", required=True)
    p.add_argument("--entrypoint", required=True)
    p.add_argument("--cmd", action="append", default=[])
    p.add_argument("--env", action="append", default=[])
    p.add_argument("--add", action="append", default=[])
    p.add_argument("--dir", action="append", default=[])
    p.add_argument("--out", required=True)
    p.add_argument("--tar")
    a = p.parse_args()

    layer = tar_bytes(layer_members(a.add, a.dir))
    compressed = gzip.compress(layer, compresslevel=9, mtime=0)
    config = json.dumps({
        "architecture": "amd64", "os": "linux",
        "config": {"Entrypoint": [a.entrypoint], "Cmd": a.cmd, "Env": a.env, "WorkingDir": "/"},
        "rootfs": {"type": "layers", "diff_ids": [digest(layer)]},
    }, sort_keys=True).encode()
    manifest = json.dumps({
        "schemaVersion": 2, "mediaType": "application/vnd.oci.image.manifest.v1+json",
        "config": {"mediaType": "application/vnd.oci.image.config.v1+json", "digest": digest(config), "size": len(config)},
        "layers": [{"mediaType": "application/vnd.oci.image.layer.v1.tar+gzip", "digest": digest(compressed), "size": len(compressed)}],
    }, sort_keys=True).encode()
    index = json.dumps({
        "schemaVersion": 2, "mediaType": "application/vnd.oci.image.index.v1+json",
        "manifests": [{"mediaType": "application/vnd.oci.image.manifest.v1+json", "digest": digest(manifest), "size": len(manifest),
                       "platform": {"architecture": "amd64", "os": "linux"},
                       "annotations": {"io.containerd.image.name": a.name,
                                       "org.opencontainers.image.ref.name": a.name.rsplit(":", 1)[-1]}}],
    }, sort_keys=True).encode()
    layout = b'{"imageLayoutVersion":"1.0.0"}'
    blobs = [compressed, config, manifest]

    os.makedirs(os.path.join(a.out, "blobs", "sha256"), exist_ok=True)
    for b in blobs:
        with open(os.path.join(a.out, "blobs", "sha256", digest(b)[7:]), "wb") as f:
            f.write(b)
    for name, data in (("oci-layout", layout), ("index.json", index)):
        with open(os.path.join(a.out, name), "wb") as f:
            f.write(data)
    if a.tar:
        members = [(entry("blobs/", kind=tarfile.DIRTYPE), None), (entry("blobs/sha256/", kind=tarfile.DIRTYPE), None)]
        members += [(entry("blobs/sha256/" + digest(b)[7:], len(b), 0o644), b) for b in sorted(blobs, key=digest)]
        members += [(entry("oci-layout", len(layout), 0o644), layout), (entry("index.json", len(index), 0o644), index)]
        with open(a.tar, "wb") as f:
            f.write(tar_bytes(members))
    print(f"{a.name} {digest(manifest)} {len(compressed)} bytes compressed")


main()
