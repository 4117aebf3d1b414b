"""How the engine runs a function: push invocation over AWS Lambda durable functions' contract.

`contract` holds the wire shapes, `dataplane` the checkpoint/state transactions behind a
checkpoint token, `push` the registered functions (an HTTP endpoint, a Lambda Invoke-shaped URL,
or an in-process handler) and the worker that invokes them when their runs have work.
"""
