"""DH-MAML: distributed meta-reinforcement learning. The library (specs, envs, policies, the algorithms),
plus the two process packages ``dh_maml.agents`` (the learner) and ``dh_maml.observers`` (the rollout
processes), which live in the repository's top-level ``agents/`` and ``observers/`` folders."""
