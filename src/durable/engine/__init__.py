"""The durable core: the state machine over the store, and the invocation loop."""
