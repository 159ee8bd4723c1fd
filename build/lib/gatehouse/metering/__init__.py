"""Token counting, pricing and the usage ledger."""
