"""The run report's internals: a run's outputs read and compared (``data``), and the page drawn (``html``)."""
