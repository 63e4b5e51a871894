"""The scheduling domain: the policy library and its metadata, parameters, group matchers,
procfs readings, protected processes, verdict claims, native policies and sched_ext facts.
Imports the runtime only."""
