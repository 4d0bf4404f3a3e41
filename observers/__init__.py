"""Rollout processes: answer the agent's RPCs with sampled task groups and meta-test returns."""
