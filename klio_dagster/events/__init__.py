"""Events and ingestion: message formats, the local queue, Pub/Sub, top-down, priority, output events."""
