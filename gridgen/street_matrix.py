"""The street graph as sparse arrays: C-speed shortest paths that equal networkx's, ties included.

networkx's Dijkstra (pure Python) was most of the 20 kV ring's time on a large area (one search per
ring node over every street node). scipy's Dijkstra computes the same distances bit for bit (both
take, per node, the minimum over its settled neighbours of ``dist[u] + length``; float addition and
minimum are deterministic). The *path* can differ only where two predecessors give exactly the
same float distance: :meth:`StreetMatrix.shortest_paths` checks every node of every returned path
for a second such predecessor and returns None then, so the caller uses networkx for that source.
Without such a tie the predecessor chain is the one networkx finds (networkx replaces a path only
on a strictly shorter distance), so the ring is the same.
"""

from __future__ import annotations

import networkx as nx
import numpy as np
import scipy.sparse as sp
from scipy.sparse.csgraph import dijkstra


class StreetMatrix:
    """Node positions, edges in the graph's iteration order and a symmetric CSR of lengths (m).

    Parameters
    ----------
    streets
        Undirected street graph whose edges have ``length`` (m, > 0).
    """

    def __init__(self, streets: nx.Graph) -> None:
        self.nodes = list(streets.nodes)
        self.index = {n: i for i, n in enumerate(self.nodes)}
        edges = list(streets.edges(data="length"))
        self.eu = np.array([self.index[u] for u, _, _ in edges], dtype=np.int64)
        self.ev = np.array([self.index[v] for _, v, _ in edges], dtype=np.int64)
        self.edge_length_m = np.array([d for _, _, d in edges], dtype=float)
        n = len(self.nodes)
        self.length = sp.csr_matrix(
            (
                np.concatenate([self.edge_length_m, self.edge_length_m]),
                (np.concatenate([self.eu, self.ev]), np.concatenate([self.ev, self.eu])),
            ),
            shape=(n, n),
        )
        self.length.sort_indices()

    def distances_m(self, source) -> np.ndarray:
        """Return the street distance from ``source`` to every node (inf if unreachable)."""
        return dijkstra(self.length, directed=True, indices=self.index[source])

    def shortest_paths(self, source, targets) -> tuple[dict, dict] | None:
        """Return ``(distance_m, path)`` dicts for ``targets`` reachable from ``source``.

        None if a path has a float tie (another predecessor at exactly the same distance), where
        networkx might pick another path of equal length.
        """
        src = self.index[source]
        dist, pred = dijkstra(self.length, directed=True, indices=src, return_predecessors=True)
        indptr, indices, data = self.length.indptr, self.length.indices, self.length.data
        distance: dict = {}
        paths: dict = {}
        checked: set[int] = {src}
        for t in targets:
            ti = self.index[t]
            if not np.isfinite(dist[ti]):
                continue
            chain = [ti]
            while chain[-1] != src:
                chain.append(int(pred[chain[-1]]))
            for v in chain:
                if v in checked:
                    continue
                nbrs = indices[indptr[v] : indptr[v + 1]]
                tight = np.count_nonzero(dist[nbrs] + data[indptr[v] : indptr[v + 1]] == dist[v])
                if tight != 1:
                    return None
                checked.add(v)
            distance[t] = float(dist[ti])
            paths[t] = [self.nodes[i] for i in reversed(chain)]
        return distance, paths
