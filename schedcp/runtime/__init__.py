"""What every process shares: settings, errors, logging, telemetry, gRPC bootstrap, NATS bus, TLS,
access by role, rate limits, metrics, subjects and streams. Imports nothing else of schedcp."""
