"""How a count reads in a message: ``1 episode``, ``2 episodes`` (one place, for the CLI and the library)."""


def counted(n: int, noun: str, plural: str | None = None) -> str:
    """``n`` and ``noun``, the noun in the plural unless ``n`` is 1 (``plural`` for an irregular one)."""
    return f"{n} {noun if n == 1 else plural or noun + 's'}"
