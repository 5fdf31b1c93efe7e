"""Offline stand-ins for the services the operator talks to: E2B and the Kubernetes API.

They speak the real wire protocols so that the real clients (the official ``e2b`` SDK, kopf, the
kubernetes client, kubectl) are exercised unmodified. They back the tests, the local playground
(``swarm-operator dev``) and the benchmarks. A distribution of its own (``testbed/``, installed by
``scripts/setup``), never shipped in the operator's wheel or image, and importing nothing from it.
"""
