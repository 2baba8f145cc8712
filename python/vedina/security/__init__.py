"""Security: thin wrappers over vedina._native and the identity primitives (passwords, keys, RBAC, CSRF)."""
