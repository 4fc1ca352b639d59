"""Strict rules for the load balancer, its listeners and target groups: see strict.py.

A mixin of StrictAws: `strict_setup_edge` sets up its bookkeeping, `strict_rules_edge` returns
{"service.Operation": rule(body) -> refusal or None}, `strict_after_edge` returns
{"service.Operation": hook(parsed)}. Rules run under the StrictAws lock.
"""

from __future__ import annotations


class EdgeRules:
    def strict_setup_edge(self):
        pass

    def strict_rules_edge(self):
        return {}

    def strict_after_edge(self):
        return {}
