"""Strict rules for the Auto Scaling Group, its instances and the launch template: see strict.py.

A mixin of StrictAws: `strict_setup_compute` sets up its bookkeeping, `strict_rules_compute` returns
{"service.Operation": rule(body) -> refusal or None}, `strict_after_compute` returns
{"service.Operation": hook(parsed)}. Rules run under the StrictAws lock.
"""

from __future__ import annotations


class ComputeRules:
    def strict_setup_compute(self):
        pass

    def strict_rules_compute(self):
        return {}

    def strict_after_compute(self):
        return {}
