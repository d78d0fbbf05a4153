"""A fake deployment controller: status follows spec immediately.

Real clusters update Deployment status asynchronously after ReplicaSets and
Pods come up; callers poll `status.observedGeneration`, `updatedReplicas`,
`availableReplicas` and the `Available`/`Progressing` conditions. Here the
status write happens right after each spec write (a separate write with its
own resourceVersion and watch event, made by "kube-controller-manager").
`hold` simulates pods that never become ready.
"""
from __future__ import annotations

import hashlib
import json

from . import apply as ssa
from .util import clone

REVISION = "deployment.kubernetes.io/revision"
_HASH_ALPHABET = "bcdfghjklmnpqrstvwxz2456789"
MANAGER = "kube-controller-manager"


def template_hash(template) -> str:
    digest = hashlib.sha256(json.dumps(template, sort_keys=True).encode()).digest()
    return "".join(_HASH_ALPHABET[b % len(_HASH_ALPHABET)] for b in digest[:10])


def _condition(type_, status, reason, message, now, previous):
    for cond in previous:
        if cond.get("type") == type_ and cond.get("status") == status:
            transition = cond.get("lastTransitionTime", now)
            break
    else:
        transition = now
    return {"type": type_, "status": status, "lastUpdateTime": now, "lastTransitionTime": transition,
            "reason": reason, "message": message}


class DeploymentController:
    def __init__(self):
        self.hold = False
        self.templates: dict = {}  # uid -> (template hash, revision)

    def reset(self):
        self.hold = False
        self.templates.clear()

    def desired(self, dep: dict, now: str):
        """Return (annotations, status) the controller wants for this deployment."""
        spec = dep.get("spec") or {}
        meta = dep["metadata"]
        replicas = spec.get("replicas", 1)
        thash = template_hash(spec.get("template"))
        seen_hash, revision = self.templates.get(meta["uid"], (None, 0))
        if thash != seen_hash:
            revision += 1
            self.templates[meta["uid"]] = (thash, revision)
        annotations = dict(meta.get("annotations") or {})
        annotations[REVISION] = str(revision)
        rs_name = f'{meta["name"]}-{thash}'
        previous = (dep.get("status") or {}).get("conditions") or []
        status = {"observedGeneration": meta.get("generation", 1)}
        if self.hold and replicas > 0:
            status.update(replicas=replicas, updatedReplicas=replicas, unavailableReplicas=replicas)
            status["conditions"] = [
                _condition("Available", "False", "MinimumReplicasUnavailable",
                           "Deployment does not have minimum availability.", now, previous),
                _condition("Progressing", "True", "ReplicaSetUpdated", f'ReplicaSet "{rs_name}" is progressing.',
                           now, previous),
            ]
        else:
            if replicas:  # zero counters are omitted, as the real (omitempty) status does
                status.update(replicas=replicas, updatedReplicas=replicas, readyReplicas=replicas,
                              availableReplicas=replicas)
            status["conditions"] = [
                _condition("Available", "True", "MinimumReplicasAvailable", "Deployment has minimum availability.",
                           now, previous),
                _condition("Progressing", "True", "NewReplicaSetAvailable",
                           f'ReplicaSet "{rs_name}" has successfully progressed.', now, previous),
            ]
        return annotations, status

    def sync(self, api, rt, dep: dict, now: str):
        """Write status (and the revision annotation) for one stored deployment."""
        annotations, status = self.desired(dep, now)
        current = dep.get("status") or {}

        def strip(st):
            st = clone(st)
            for cond in st.get("conditions") or []:
                cond.pop("lastUpdateTime", None)
                cond.pop("lastTransitionTime", None)
            return st

        if (dep["metadata"].get("annotations") or {}) == annotations and strip(current) == strip(status):
            return dep
        node = rt.root_node()
        updated = clone(dep)
        updated["metadata"]["annotations"] = annotations
        ssa.track_update(dep, updated, MANAGER, node, "main", "", rt.api_version, now)
        final = clone(updated)
        final["status"] = status
        ssa.track_update(updated, final, MANAGER, node, "status", "status", rt.api_version, now)
        return api.store.put(rt.store_key, final)
