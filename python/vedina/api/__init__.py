"""HTTP endpoints, one module per resource: parse, call a service, serialise."""
