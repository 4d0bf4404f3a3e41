"""Policies callable with an explicit parameter dict, so adapted parameters need no module copies."""

from dh_maml.policies.mlp import CategoricalMLPPolicy, GaussianMLPPolicy, Params, Policy, make_policy

__all__ = ["CategoricalMLPPolicy", "GaussianMLPPolicy", "Params", "Policy", "make_policy"]
