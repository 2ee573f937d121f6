"""The CLI's consoles: status lines never wrap (they are grepped and copied); tables fit the terminal.

rich loads only when a command prints through a console, so machine output (--json, --csv) never pays for it.
"""

from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from rich.console import Console


def make_console(*, stderr: bool = False) -> "Console":
    from rich.console import Console

    return Console(soft_wrap=True, stderr=stderr)
