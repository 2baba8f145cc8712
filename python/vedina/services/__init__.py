"""Business rules. Plain Python: no HTTP, no SQL; storage comes in through repositories."""
