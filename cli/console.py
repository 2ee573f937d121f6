"""The CLI's consoles: status lines never wrap (they are grepped and copied); tables fit the terminal."""

from rich.console import Console


def make_console() -> Console:
    return Console(soft_wrap=True)
