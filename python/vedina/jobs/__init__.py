"""Background jobs: handlers by topic, run by the outbox relay (embedded) or `vedina worker` (RabbitMQ)."""
