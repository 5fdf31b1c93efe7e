"""Every Kubernetes API call of ours, through the official (synchronous) kubernetes client.

The only importer of ``kubernetes`` (an import-linter contract), so the client's types and exceptions
stop here. Two sides: the operator's own calls (``_operator.py``, exported here), and the calls the
console, the playground and the CLI make as the kubeconfig's user (:mod:`swarm_operator.cluster.user`,
imported by name so the operator's process never loads it).
"""

from ._operator import ApiClient, KubeResourceLister, KubeStatusWriter, api_client, core_api
from ._released import ConfigMapReleaseRecord
from ._shard import KubeShardLabeller

__all__ = [
    "ApiClient",
    "ConfigMapReleaseRecord",
    "KubeResourceLister",
    "KubeShardLabeller",
    "KubeStatusWriter",
    "api_client",
    "core_api",
]
