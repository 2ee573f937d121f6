"""The ``townlet-telemetry`` command line (installed as the ``townlet_cli`` package)."""
