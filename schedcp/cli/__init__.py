"""The `schedcp` command (main), its decision-cycle commands (cycle), the local stack (stack, the
trace store, health probes) and the demo. Talks to the services over gRPC, never imports them."""
