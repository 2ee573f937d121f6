"""The training loop (``loop``) and clean Ctrl-C handling (``interrupt``)."""
