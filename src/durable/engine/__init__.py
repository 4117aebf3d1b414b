"""The durable core: the state machine over the store (machine.py), queue admission
(admission.py) and schedules (schedules.py) beside it, and the invocation loop (worker.py)."""
