"""Bounds on image archives, shared by the controller (receives them) and the agent (loads them).

Each bound has a clear one-line error when exceeded; docs/security.md lists them.
They are module constants so that a deployment can change them in one place, and the
stores take them as constructor arguments so tests can use small ones.
"""

from __future__ import annotations

# A whole archive as streamed by ``clusterctl image load`` or ``ImagePull`` (8 GiB).
MAX_ARCHIVE_BYTES = 8 << 30
# manifest.json, index.json, an OCI manifest or an image config read from an archive.
MAX_JSON_BYTES = 4 << 20
# Entries in the archive's own tar (not in its layers).
MAX_ARCHIVE_MEMBERS = 100_000
# Layers of one image (Docker's overlay2 driver allows 128 too).
MAX_LAYERS = 128
# Images in one manifest.json, and manifests in one OCI index.
MAX_MANIFESTS = 256
# Levels of OCI indexes that point at other indexes before a manifest.
MAX_INDEX_DEPTH = 4
# Uncompressed bytes of one layer (a gzip bomb stops here; 32 GiB).
MAX_LAYER_BYTES = 32 << 30
