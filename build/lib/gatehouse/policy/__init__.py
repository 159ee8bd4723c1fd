"""Pipeline steps: authenticate, authorize, admit (limits, budgets), settle."""
