"""The population: the agents' shared DQN (``vectorized``) and their runtime state (``runtime_registry``)."""
