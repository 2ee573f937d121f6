"""The web dashboard (`townlet-telemetry serve`): a Starlette app over the read side, and its static page."""
