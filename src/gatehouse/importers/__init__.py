"""`gatehouse import litellm|kong FILE`: a peer gateway's declarative config turned into a
Gatehouse config (docs/migration.md#gatehouse-import). Secrets never get copied: upstream keys
become `${VAR}` references to set in the environment, consumer keys become sha256 hashes."""
