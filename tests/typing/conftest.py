"""The files here are for type checkers only (tests/test_typing.py): pytest must not import
them, as some hold code that is wrong on purpose."""

collect_ignore_glob = ["*.py"]
