"""The embedded local stack, one module per service (``hft stack up``); production code never imports it."""
