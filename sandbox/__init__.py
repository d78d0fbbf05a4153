"""Loopback Kubernetes API server for tests and local demos (see README.md).

Never imported by product code: the product talks to it over HTTP with the
official client, exactly as it would talk to a real cluster.
"""
from .server import SandboxServer

__all__ = ["SandboxServer"]
