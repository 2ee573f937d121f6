"""``python -m townlet_cli`` runs the same app as the ``townlet-telemetry`` command."""

from townlet_cli.app import main

main()
