"""The per-agent table that ``replay`` and ``watch`` both draw: one row per agent, readable in 80 columns.

Three things keep it narrow without hiding anything: the fields the trainer sets for all agents at once
(baseline, epsilon, stage) move into one ``every agent:`` line when every shown agent agrees; the meters
share one column headed by their initials (``e h s m``), and so do the affordance visits (``b s f j``),
named in a legend under the table. A single agent is drawn down the page, one row per field. A field this
code does not know (a newer addition) still gets a column of its own.
"""

from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

from townlet.environment.world import CAUSE_TIMEOUT, METERS, cause_name
from townlet.telemetry.dto import DTO_BY_VERSION, FIELD_NAMES

if TYPE_CHECKING:
    from rich.console import Group
    from rich.table import Table

HIDDEN = ("agent_idx", "episode")
SHORT = {
    "survival_steps": "survival",
    "baseline_survival_steps": "baseline",
    "episode_reward": "reward",
    "epsilon": "ε",
    "curriculum_stage": "stage",
    "death_cause": "cause",
    "action_entropy": "entropy",
}
#: Fields the trainer sets for every agent at once: when all shown agents agree, one line says so.
SHAREABLE = ("baseline_survival_steps", "epsilon", "curriculum_stage")
#: Fields drawn together in one column, under the header that names them in order.
GROUPS = {"meter_": "meters", "visits_": "visits"}


def _group(name: str) -> str | None:
    """The ``GROUPS`` prefix a field belongs to, or None."""
    return next((prefix for prefix in GROUPS if name.startswith(prefix)), None)


def cell(value: Any) -> str:
    """A number as a researcher reads it: floats to 2 decimals, integers whole."""
    return f"{value:.2f}" if isinstance(value, float) else str(value)


def header(name: str) -> str:
    """A short column header for a DTO field (``survival_steps`` -> ``survival``, ``meter_energy`` -> ``energy``)."""
    prefix = _group(name)
    return name.removeprefix(prefix) if prefix else SHORT.get(name, name.replace("_", " "))


def _columns(fields: Sequence[str]) -> list[tuple[str, list[str]]]:
    """``(group or header, fields)`` per column, in field order; grouped fields share their group's column."""
    columns: list[tuple[str, list[str]]] = []
    placed: dict[str, list[str]] = {}
    for name in fields:
        prefix = _group(name)
        if prefix is None:
            columns.append((header(name), [name]))
        elif prefix in placed:
            placed[prefix].append(name)
        else:
            placed[prefix] = [name]
            columns.append((GROUPS[prefix], placed[prefix]))
    return columns


def agents_table(title: str, agents: list[dict[str, Any]], schema_version: int, max_rows: int, hint: str) -> "Group":
    """The title, the ``every agent:`` line, the table of the first ``max_rows`` agents and its legend."""
    from rich import box
    from rich.console import Group
    from rich.table import Table
    from rich.text import Text

    shown = agents[:max_rows]
    known = FIELD_NAMES[DTO_BY_VERSION[schema_version]]
    present = list(shown[0]) if shown else []
    fields = [k for k in known if k in present] + [k for k in present if k not in known]  # DTO order first
    fields = [k for k in fields if k not in HIDDEN]
    if len(shown) == 1:
        return Group(Text(title, style="bold"), _one_agent(shown[0], fields))
    shared = [k for k in fields if k in SHAREABLE and len({agent[k] for agent in shown}) == 1]
    columns = _columns([k for k in fields if k not in shared])
    table = Table(
        box=box.SIMPLE_HEAD,
        pad_edge=False,  # two more columns for the cells: a V2 episode fits 80 columns, headers whole
        caption=f"showing {len(shown)} of {len(agents)} agents: {hint}" if len(shown) < len(agents) else None,
        caption_justify="left",
    )
    table.add_column("agent", justify="right")
    legend = []
    widths: dict[str, int] = {}
    for group, names in columns:
        if _group(names[0]) is None:
            if names == ["death_cause"]:  # a cause is a meter's name or "timeout": never cut ("satiati…")
                causes = (cause_name(code) for code in (CAUSE_TIMEOUT, *range(len(METERS))))
                table.add_column(group, justify="left", min_width=max(len(group), *map(len, causes)))
            else:
                table.add_column(group, justify="right", min_width=len(group))
            continue
        for name in names:
            widths[name] = max(len(cell(agent[name])) for agent in shown)
        letters = " ".join(header(n)[0].rjust(widths[n]) for n in names)
        table.add_column(f"{group}\n{letters}", justify="right", no_wrap=True)
        legend.append(f"{group}: {' '.join(header(n) for n in names)}")
    for agent in shown:
        table.add_row(
            str(agent["agent_idx"]),
            *(" ".join(cell(agent[n]).rjust(widths.get(n, 0)) for n in names) for _, names in columns),
        )
    lines: list[Any] = [Text(title, style="bold")]
    if shared:
        who = "every agent" if len(shown) == len(agents) else f"all {len(shown)} agents shown"
        lines.append(Text(f"{who}: " + " · ".join(f"{header(k)} {cell(shown[0][k])}" for k in shared)))
    lines.append(table)
    if legend:
        lines.append(Text(" · ".join(legend), style="dim"))
    return Group(*lines)


def _one_agent(agent: dict[str, Any], fields: Sequence[str]) -> "Table":
    """A single agent reads best down the page: one row per field."""
    from rich import box
    from rich.table import Table

    table = Table("agent", str(agent["agent_idx"]), box=box.SIMPLE_HEAD)
    for name in fields:
        table.add_row(name, cell(agent[name]))
    return table
