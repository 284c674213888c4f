"""The durable email queue: validation, retry policy, SMTP transport, claims and workers."""
