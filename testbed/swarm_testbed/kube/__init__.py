"""A Kubernetes API emulator realistic enough for kopf, the kubernetes client and kubectl.

Built on kmock; see :mod:`swarm_testbed.kube._emulator` for what it emulates and what not.
"""

from swarm_testbed.kube._counters import WRITE_VERBS, RequestCounter
from swarm_testbed.kube._emulator import KubeEmulator
from swarm_testbed.kube._errors import ApiError
from swarm_testbed.kube._server import KubeEmulatorServer, ThreadedKubeEmulator, write_kubeconfig

__all__ = [
    "WRITE_VERBS",
    "ApiError",
    "KubeEmulator",
    "KubeEmulatorServer",
    "RequestCounter",
    "ThreadedKubeEmulator",
    "write_kubeconfig",
]
