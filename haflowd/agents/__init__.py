"""Agent adapters: one module per agent CLI, all behind :class:`AgentAdapter`."""
