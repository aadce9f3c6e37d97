"""Background delivery for request handlers: queue, coalescing, routing, outbox."""
