"""Planner: central; goal inference and policy synthesis for many hosts."""
