"""The vectorised grid world (``grid``), its fixed facts (``world``) and reward shaping (``reward_strategy``).

Submodules are imported explicitly so that torch-free parts (``world``) stay importable without torch.
"""
