"""Connection tables: which input maps each output map of a convolution sums over (seed 000 §3.1's ``M_j``).

A table is a boolean array of shape ``(C_in, C_out)``: ``table[i, j]`` says whether input map ``i`` is in
``M_j``, the set output map ``j`` is computed from, ``x_j = f(Σ_{i∈M_j} x_i * k_ij + b_j)``. It is written
as text the way the LeNet-5 paper prints it (Table I): one row per input map, one column per output
map, ``X`` for a connection.
"""

from __future__ import annotations

import numpy as np

from numcnn.errors import ConfigurationError

__all__ = ["parse_connections", "format_connections", "check_connections", "LENET5_C3_CONNECTIONS"]


def parse_connections(text: str) -> np.ndarray:
    """A ``(C_in, C_out)`` boolean table from rows of ``X`` (connected) and ``.`` (not connected).

    Blank lines and a header row of column numbers are skipped; each remaining line is an optional
    row label followed by one mark per output map (spaces between marks are ignored).

    >>> parse_connections('''
    ...     0 1 2
    ... 0   X . X
    ... 1   . X X
    ... ''').astype(int)
    array([[1, 0, 1],
           [0, 1, 1]])
    """
    rows = []
    for line in text.strip("\n").splitlines():
        marks = [mark for mark in line.split() if mark in ("X", ".")]
        if marks:
            rows.append([mark == "X" for mark in marks])
    if not rows or any(len(row) != len(rows[0]) for row in rows):
        raise ConfigurationError("a connection table needs rows of equal length made of 'X' and '.'")
    return np.array(rows, dtype=bool)


def format_connections(table: np.ndarray) -> str:
    """The table as text: one row per input map, one column per output map (the inverse of parsing)."""
    table = np.asarray(table, dtype=bool)
    width = len(str(table.shape[1] - 1)) + 1
    header = " " * 4 + "".join(f"{j:>{width}}" for j in range(table.shape[1]))
    lines = [header]
    for i, row in enumerate(table):
        lines.append(f"{i:<4}" + "".join(f"{'X' if connected else '.':>{width}}" for connected in row))
    return "\n".join(lines)


def check_connections(table, in_channels: int, out_channels: int, layer: str = "Conv2d") -> np.ndarray:
    """Validate a connection table and return it as a boolean ``(C_in, C_out)`` array."""
    table = np.asarray(table)
    if table.shape != (in_channels, out_channels):
        raise ConfigurationError(
            f"{layer}: the connection table must have shape (in_channels, out_channels) = "
            f"({in_channels}, {out_channels}), got {table.shape}"
        )
    if table.dtype != bool and not np.isin(table, (0, 1)).all():
        raise ConfigurationError(f"{layer}: a connection table holds booleans (or 0/1), got {table.dtype}")
    table = table.astype(bool)
    unconnected = np.flatnonzero(~table.any(axis=0))
    if unconnected.size:
        raise ConfigurationError(
            f"{layer}: output map(s) {unconnected.tolist()} have no input map in the connection table"
        )
    return table


# LeCun, Bottou, Bengio, Haffner (1998), Table I: which S2 feature maps (rows) each C3 feature map
# (columns) combines. Maps 0-5 take every three contiguous S2 maps, 6-11 every four contiguous ones,
# 12-14 some discontinuous sets of four, and 15 all six: 60 connections, so C3 has
# 60 · 5·5 weights + 16 biases = 1,516 parameters instead of 6·16·25 + 16 = 2,416.
LENET5_C3_CONNECTIONS = parse_connections(
    """
        0  1  2  3  4  5  6  7  8  9 10 11 12 13 14 15
    0   X  .  .  .  X  X  X  .  .  X  X  X  X  .  X  X
    1   X  X  .  .  .  X  X  X  .  .  X  X  X  X  .  X
    2   X  X  X  .  .  .  X  X  X  .  .  X  .  X  X  X
    3   .  X  X  X  .  .  X  X  X  X  .  .  X  .  X  X
    4   .  .  X  X  X  .  .  X  X  X  X  .  X  X  .  X
    5   .  .  .  X  X  X  .  .  X  X  X  X  .  X  X  X
    """
)
LENET5_C3_CONNECTIONS.setflags(write=False)
