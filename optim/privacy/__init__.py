"""What a sensitivity package reveals: attacks on package files and their scores (DSO side).

- :mod:`optim.privacy.attacks` reads a package alone, as a curious TSO would, and reconstructs grid
  structure from it (numpy/scipy/scikit-learn only, no grid data);
- :mod:`optim.privacy.truth` builds the real answers from the DSO's grid and key;
- :mod:`optim.privacy.audit` runs every attack and scores it against the truth.

This package is DSO-side tooling: ``optim.tso`` never imports it (``tests/unit/test_privacy_attacks.py``).
"""
