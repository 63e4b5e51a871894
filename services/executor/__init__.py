"""Executor: runs on every host; applies verified policies, canaries them, rolls back."""
