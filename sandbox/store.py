"""Object storage, the global resourceVersion counter and the watch event log.

One re-entrant lock guards everything; request handlers hold it for a whole
read-modify-write so writes are linearizable, like etcd transactions. Watch
streams never hold it while writing to a socket.
"""
from __future__ import annotations

import collections
import threading

from .util import clone

EVENT_HISTORY = 10000  # events kept for watch resumption; older RVs get 410 Gone
FIRST_RV = 1000


class Event:
    __slots__ = ("rv", "key", "type", "obj", "prev")

    def __init__(self, rv, key, type_, obj, prev):
        self.rv, self.key, self.type, self.obj, self.prev = rv, key, type_, obj, prev


class Store:
    def __init__(self):
        self.lock = threading.RLock()
        self.changed = threading.Condition(self.lock)  # any write, and reset()
        # Per (store key, namespace or None for all): what a watch of that waits on, so a write
        # wakes only the watches it may concern (with a watch per kind and namespace, most don't).
        self._watching: dict = {}
        self.reset()

    def watching(self, key, namespace=None) -> threading.Condition:
        """The condition a watch of `key` objects (in `namespace`; None: in all) waits on:
        notified on each write of such an object and on reset(). Shares the store lock."""
        with self.lock:
            condition = self._watching.get((key, namespace))
            if condition is None:
                condition = self._watching[(key, namespace)] = threading.Condition(self.lock)
            return condition

    def _notify(self, key, namespace) -> None:
        for which in ((key, namespace), (key, None)):
            condition = self._watching.get(which)
            if condition is not None:
                condition.notify_all()
        self.changed.notify_all()

    def reset(self):
        with self.lock:
            # resourceVersions keep growing across resets (never reused, like etcd
            # after a restore); watches resuming from before the reset get 410 Gone.
            self.rv = getattr(self, "rv", FIRST_RV - 1) + 1  # the reset itself is a "write"
            self.reset_rv = self.rv
            self.objects: dict = {}  # (group, plural) -> {(namespace, name): obj}
            self.events: collections.deque = collections.deque(maxlen=EVENT_HISTORY)
            self.epoch = getattr(self, "epoch", 0) + 1  # lets open watches notice a reset
            self.changed.notify_all()
            for condition in getattr(self, "_watching", {}).values():
                condition.notify_all()

    # -- reads -----------------------------------------------------------
    def get(self, key, namespace, name):
        with self.lock:
            obj = self.objects.get(key, {}).get((namespace or "", name))
            return clone(obj) if obj is not None else None

    def list(self, key, namespace=None) -> list:
        with self.lock:
            bucket = self.objects.get(key, {})
            items = [o for (ns, _), o in bucket.items() if namespace is None or ns == namespace]
            items.sort(key=lambda o: (o["metadata"].get("namespace", ""), o["metadata"]["name"]))
            return clone(items)

    def keys(self) -> list:
        with self.lock:
            return list(self.objects)

    @property
    def current_rv(self) -> str:
        return str(self.rv)

    @property
    def oldest_rv(self) -> int:
        """Lowest RV a watch can resume from without missing events."""
        with self.lock:
            if len(self.events) < (self.events.maxlen or EVENT_HISTORY):
                return self.reset_rv
            return max(self.reset_rv, self.events[0].rv - 1)

    # -- writes ----------------------------------------------------------
    def _bump(self) -> int:
        self.rv += 1
        return self.rv

    def put(self, key, obj: dict, *, owned: bool = False, copy: bool = True) -> dict:
        """Create or replace; assigns a fresh resourceVersion. Returns a copy.

        `owned`: the caller hands `obj` over (it never touches it again), so it is stored
        as is rather than copied. `copy=False` returns the stored object itself, for a
        caller that only reads it (stored objects are never changed in place).
        """
        with self.lock:
            meta = obj["metadata"]
            ident = (meta.get("namespace", ""), meta["name"])
            bucket = self.objects.setdefault(key, {})
            prev = bucket.get(ident)
            rv = self._bump()
            stored = obj if owned else clone(obj)
            stored["metadata"]["resourceVersion"] = str(rv)
            bucket[ident] = stored
            self.events.append(Event(rv, key, "MODIFIED" if prev else "ADDED", stored, prev))
            self._notify(key, ident[0])
            return clone(stored) if copy else stored

    def delete(self, key, namespace, name):
        with self.lock:
            bucket = self.objects.get(key, {})
            prev = bucket.pop((namespace or "", name), None)
            if prev is None:
                return None
            rv = self._bump()
            gone = clone(prev)
            gone["metadata"]["resourceVersion"] = str(rv)
            self.events.append(Event(rv, key, "DELETED", gone, prev))
            self._notify(key, namespace or "")
            return clone(gone)

    def delete_where(self, predicate) -> int:
        """Delete every object for which predicate(key, obj) is true (namespace/CRD cleanup)."""
        with self.lock:
            doomed = [(key, o["metadata"].get("namespace", ""), o["metadata"]["name"])
                      for key, bucket in self.objects.items() for o in bucket.values() if predicate(key, o)]
            for key, ns, name in doomed:
                self.delete(key, ns, name)
            return len(doomed)

    def events_after(self, rv: int) -> list:
        """Events with resourceVersion > rv, oldest first (caller holds the lock)."""
        out = []
        for ev in reversed(self.events):
            if ev.rv <= rv:
                break
            out.append(ev)
        out.reverse()
        return out
