"""Channels area (issue 18): writing back to the order channels — shipment confirmation (发货回传), shipping
deadlines, stock figures. ``rules`` is pure; ``store`` holds the SQL; ``confirmations``, ``deadlines`` and
``stock_sync`` are the steps."""
