"""Storage: tables and queries, key-value store, cache and job broker.

Each kind of storage sits behind a small protocol with a real implementation
(MySQL/MariaDB, Redis, RabbitMQ) and an embedded one (SQLite, in-process),
chosen once per process by :func:`vedina.storage.resources.open_resources`.
"""
