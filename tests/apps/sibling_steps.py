"""A step module imported by `single_app` as a sibling, not as part of a package."""


def shout(word: str) -> str:
    return word.upper() + "!"
