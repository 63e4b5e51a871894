"""Observer: runs on every host; host facts, workload profiles and measurements."""
