"""A Kubernetes API emulator realistic enough for kopf, the kubernetes client and kubectl.

Built on kmock; see :mod:`swarm_operator.emulators.kube._emulator` for what it emulates and what not.
"""

from swarm_operator.emulators.kube._counters import WRITE_VERBS, RequestCounter
from swarm_operator.emulators.kube._emulator import KubeEmulator, default_crd_dirs
from swarm_operator.emulators.kube._errors import ApiError
from swarm_operator.emulators.kube._server import KubeEmulatorServer, ThreadedKubeEmulator, write_kubeconfig

__all__ = [
    "WRITE_VERBS",
    "ApiError",
    "KubeEmulator",
    "KubeEmulatorServer",
    "RequestCounter",
    "ThreadedKubeEmulator",
    "default_crd_dirs",
    "write_kubeconfig",
]
