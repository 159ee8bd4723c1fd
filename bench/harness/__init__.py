"""The bench harness: processes, load generators, scenarios, report."""
