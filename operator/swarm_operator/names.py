"""The operator's names, one copy: the resource's API coordinates, the tags every sandbox carries,
and the environment names it gives one.

The ground floor of the package: it imports nothing of ours, so every layer (handlers, lifecycle,
cluster adapter, sweeper, console, CRD generator) can name these without importing the lifecycle.
Renaming any of them breaks running installations (tags on live sandboxes, stored resources).
"""

from __future__ import annotations

from typing import Final

__all__ = [
    "FINALIZER",
    "GROUP",
    "KIND",
    "PLURAL",
    "RESUME_ANNOTATION",
    "SHARD_LABEL",
    "SINGULAR",
    "TAG_NAME",
    "TAG_NAMESPACE",
    "TAG_OPERATOR",
    "TAG_UID",
    "UID_ENV",
    "VERSION",
]

# The custom resource's API coordinates.
GROUP: Final = "claudeswarm.io"
VERSION: Final = "v1alpha1"
KIND: Final = "SwarmSandbox"
PLURAL: Final = "swarmsandboxes"
SINGULAR: Final = "swarmsandbox"

#: kopf's finalizer on every resource: the operator's name for it, not kopf's default.
FINALIZER: Final = "claudeswarm.io/finalizer"

#: Set (to a time) by ``swarm-operator resume``: lifts an idle pause. Not under GROUP's prefix,
#: where kopf keeps its own bookkeeping annotations.
RESUME_ANNOTATION: Final = "resume.claudeswarm.io/requested-at"

#: The label naming the shard (``0..N-1``) whose operator process serves the resource, when the
#: operator runs sharded (``SWARM_SHARD=i/N``); written on unlabelled resources by any shard.
SHARD_LABEL: Final = "claudeswarm.io/shard"

#: Metadata tags written on every sandbox. The uid tag is what adopt-or-create searches by.
TAG_UID: Final = "claudeswarm.io/uid"
TAG_NAMESPACE: Final = "claudeswarm.io/namespace"
TAG_NAME: Final = "claudeswarm.io/name"
TAG_OPERATOR: Final = "claudeswarm.io/operator"

#: The sandbox's own (non-secret) environment variable holding the resource uid, set at create and
#: read back from inside before any secret is sent.
UID_ENV: Final = "SWARM_RESOURCE_UID"
