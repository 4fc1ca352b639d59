"""The step engine: the registry of step classes and their declarations (kinds), the dependency
graph walked in parallel, the run's context (clients, tags, deadlines), the state file, the
retry table and the waiters, and the errors every layer raises."""
