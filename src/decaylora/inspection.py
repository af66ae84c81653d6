"""``summary``: exactly what is trainable and frozen, per module, and what compression saves.

The notes lost a week to trainable flags that silently reverted; this table reads the real
``requires_grad`` flags of every parameter, so it shows what the optimizer will actually see.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field

from torch import nn

from .layers import DecayLayer


@dataclass
class ModuleRow:
    name: str
    type: str
    trainable: int
    frozen: int
    # Only for wrapped layers: the layer before and after compression.
    rank: int | None = None
    params_before: int | None = None
    params_after: int | None = None
    macs_before: int | None = None
    macs_after: int | None = None


@dataclass
class Summary:
    rows: list[ModuleRow] = field(default_factory=list)

    @property
    def trainable(self) -> int:
        return sum(r.trainable for r in self.rows)

    @property
    def frozen(self) -> int:
        return sum(r.frozen for r in self.rows)

    @property
    def total(self) -> int:
        return self.trainable + self.frozen

    @property
    def wrapped(self) -> list[ModuleRow]:
        return [r for r in self.rows if r.rank is not None]

    @property
    def wrapped_params_before(self) -> int:
        return sum(r.params_before or 0 for r in self.wrapped)

    @property
    def wrapped_params_after(self) -> int:
        return sum(r.params_after or 0 for r in self.wrapped)

    @property
    def wrapped_macs_before(self) -> int:
        return sum(r.macs_before or 0 for r in self.wrapped)

    @property
    def wrapped_macs_after(self) -> int:
        return sum(r.macs_after or 0 for r in self.wrapped)

    @property
    def params_after_compression(self) -> int:
        """Parameters of the model after ``compress``: W, b and the wrapped layers' adapters are
        replaced by the compressed low-rank modules."""
        wrapped_now = sum(r.trainable + r.frozen for r in self.wrapped)
        return self.total - wrapped_now + self.wrapped_params_after

    def to_dict(self) -> dict:
        return {
            "rows": [asdict(r) for r in self.rows],
            "totals": {
                "trainable": self.trainable,
                "frozen": self.frozen,
                "total": self.total,
                "wrapped_layers": len(self.wrapped),
                "wrapped_params_before": self.wrapped_params_before,
                "wrapped_params_after": self.wrapped_params_after,
                "wrapped_macs_before": self.wrapped_macs_before,
                "wrapped_macs_after": self.wrapped_macs_after,
                "params_after_compression": self.params_after_compression,
            },
        }

    def table(self, max_rows: int | None = None) -> str:
        """Plain-text table (fixed width, readable in a terminal and in Markdown code blocks)."""
        head = ("module", "type", "trainable", "frozen", "r", "params before→after",
                "MACs/pos before→after")
        lines = []
        rows = self.rows if max_rows is None else self.rows[:max_rows]
        for r in rows:
            if r.rank is not None:
                p = f"{r.params_before:,}→{r.params_after:,}"
                m = f"{r.macs_before:,}→{r.macs_after:,}"
                rank = str(r.rank)
            else:
                p = m = rank = ""
            lines.append((r.name or "(root)", r.type, f"{r.trainable:,}", f"{r.frozen:,}", rank, p, m))
        if max_rows is not None and len(self.rows) > max_rows:
            lines.append((f"... {len(self.rows) - max_rows} more rows", "", "", "", "", "", ""))
        w = self.wrapped
        lines.append(("TOTAL", "", f"{self.trainable:,}", f"{self.frozen:,}", "",
                      f"{self.wrapped_params_before:,}→{self.wrapped_params_after:,}" if w else "",
                      f"{self.wrapped_macs_before:,}→{self.wrapped_macs_after:,}" if w else ""))
        widths = [max(len(str(x[i])) for x in [head, *lines]) for i in range(len(head))]
        right = {2, 3, 4, 5, 6}

        def fmt(row: tuple) -> str:
            return "  ".join(
                str(c).rjust(widths[i]) if i in right else str(c).ljust(widths[i])
                for i, c in enumerate(row)
            ).rstrip()

        sep = "  ".join("-" * x for x in widths)
        out = [fmt(head), sep, *[fmt(x) for x in lines[:-1]], sep, fmt(lines[-1])]
        total = self.total
        out.append(
            f"{self.trainable:,} trainable of {total:,} parameters "
            f"({100.0 * self.trainable / max(total, 1):.2f}%)"
        )
        if w:
            out.append(
                f"{len(w)} wrapped layers: {self.wrapped_params_before:,} → "
                f"{self.wrapped_params_after:,} parameters "
                f"({self.wrapped_params_before / max(self.wrapped_params_after, 1):.1f}x smaller); "
                f"model after compression: {self.params_after_compression:,} parameters"
            )
        return "\n".join(out)

    def __str__(self) -> str:
        return self.table()


def summary(model: nn.Module) -> Summary:
    """Per-module trainable/frozen parameter counts (shared parameters counted once), and for
    every wrapped layer its rank, parameters and multiply-adds per output position before and
    after compression."""
    seen: set[int] = set()
    rows: list[ModuleRow] = []
    inside_wrapped: list[str] = []

    def count(params) -> tuple[int, int]:
        t = f = 0
        for p in params:
            if id(p) in seen:
                continue
            seen.add(id(p))
            if p.requires_grad:
                t += p.numel()
            else:
                f += p.numel()
        return t, f

    for name, m in model.named_modules():
        if any(name.startswith(w + ".") for w in inside_wrapped):
            continue
        if isinstance(m, DecayLayer):
            inside_wrapped.append(name)
            t, f = count(m.parameters())
            g = m.geometry
            rows.append(ModuleRow(
                name, f"Decay{type(m.base_layer).__name__}", t, f, m.r,
                g.dense_params(), g.lowrank_params(m.r, m.C is not None),
                g.dense_macs(), g.lowrank_macs(m.r),
            ))
            continue
        t, f = count(m.parameters(recurse=False))
        if t or f:
            rows.append(ModuleRow(name, type(m).__name__, t, f))
    return Summary(rows)
