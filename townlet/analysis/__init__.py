"""Questions across runs: which runs (``run_selection``), the statistics that compare them (``statistics``)."""
