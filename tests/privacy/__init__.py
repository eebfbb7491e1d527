"""The privacy test suite: samplers, accountant, release-gate games and attacks (issue 14)."""
