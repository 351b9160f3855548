"""Distribution grid generator: OpenStreetMap -> 20 kV / 0.4 kV pandapower grid (paper A, III-A)."""

OSM_CREDIT = "© OpenStreetMap contributors, ODbL 1.0"
