"""Lambda entry points. Wiring only: each module builds its collaborators once and delegates."""
