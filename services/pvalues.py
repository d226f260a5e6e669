"""The one way every report, decision and log line writes a p-value.

A leaf module (no imports): the evaluation reports, the decision records the registry stores
and the benchmarks all use it without pulling one another in.
"""

from __future__ import annotations


def p_text(p: float | None) -> str:
    """A p-value as reports print it: ``p<0.001``, else ``p=0.012`` (three decimals); ``""``
    when there is none (the baseline, or no test)."""
    if p is None:
        return ""
    return "p<0.001" if p < 0.001 else f"p={p:.3f}"
