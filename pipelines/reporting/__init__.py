"""The run report's internals: a run's outputs read and compared (``data``), its flag thresholds
(``thresholds``) and review sample (``review``), its figures (``figures``) and its page (``html``)."""
