"""TF Serving gRPC protocol for REALM exports: config files, a wire-compatible server, a client."""
