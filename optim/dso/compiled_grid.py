"""The compiled grid: what the DSO's linearization reads of a grid, kept per grid file.

A time frame's linearization needs three things of the pandapower net, and all three depend on
the grid file alone:

- the compiled power-flow model (admittances, bus types, the monitored rows; one pandapower run
  of the grid with its own loads, :func:`optim.dso.linearize._grid_model`);
- the load table (building ids, buses, scaling, in service);
- each building's cable distance from its substation (the scenario's feeder ends).

They are computed once per grid file and kept in the private cache directory
(:func:`optim.private_cache.cache_dir`, folder ``grids``), named by the SHA-256 of grid.json's
bytes, what is stored and the code fingerprint, so a fresh process that linearizes a grid it has
seen before neither imports pandapower nor parses the JSON net (about 3 s of ``digiplat
linearize``; issue 12).

Why this is safe: the name binds an entry to the exact bytes of the file and to the code and
library versions that wrote it; entries are used only for a grid whose net is as it was read
(:meth:`gridgen.grid.Grid.pristine`: a net changed in memory is compiled from itself); an entry
that cannot be read is computed again; entries are written to a temporary file and renamed, so a
reader never sees half of one. A cache directory that cannot be used (another user's, not
creatable) only costs the time: the values are computed.
"""

from __future__ import annotations

from typing import Any, Callable, TypeVar

import pandas as pd

T = TypeVar("T")

#: Columns of ``net.load`` the linearization reads (:func:`load_table`).
LOAD_COLUMNS = ("building_id", "bus", "p_mw", "q_mvar", "scaling", "in_service")


def compiled(grid: Any, name: str, build: Callable[[], T], *, pristine: bool | None = None) -> T:
    """Return ``build()`` for ``grid``, computed once per grid file and kept (see the module docstring).

    Parameters
    ----------
    grid
        :class:`gridgen.grid.Grid`; one read by ``Grid.load`` and not changed in memory uses the store.
    name
        What is stored (part of the file name: it must say every option ``build`` depends on).
    build
        Computes the value from the grid (may parse its net).
    pristine
        ``grid.pristine()`` if the caller has it (it hashes the net's tables when it is parsed).
    """
    from optim.private_cache import stored

    if not (grid.pristine() if pristine is None else pristine):
        return build()
    return stored("grids", f"{grid.source[1][:32]}-{name}", build)


def is_stored(grid: Any) -> bool:
    """Whether the store holds this grid file's load table (it was linearized before with this code)."""
    from optim import private_cache

    return grid.pristine() and private_cache.is_stored("grids", f"{grid.source[1][:32]}-loads")


def load_table(grid: Any, *, pristine: bool | None = None) -> pd.DataFrame:
    """``net.load``'s columns :data:`LOAD_COLUMNS` (index: pandapower load index), from the store."""
    def build() -> pd.DataFrame:
        load = grid.net.load
        return load.loc[:, [c for c in LOAD_COLUMNS if c in load]].copy()

    return compiled(grid, "loads", build, pristine=pristine)
