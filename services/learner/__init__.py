"""Learner: central; the policy repository and what outcomes taught."""
