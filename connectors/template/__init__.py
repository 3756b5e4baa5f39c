"""The phone/fax order template: one row per order line, Chinese or English headers, csv or xlsx.

Staff key phone and fax orders into this template (and customers attach it to order emails). Columns are found by
name (any of the aliases in ``headers``, case/space/bracket-insensitive), never by position. Rows of one order share
the order number (订单号); order-level cells (customer, address…) may be repeated on each row, left empty after the
first, or merged. Each order becomes one raw record whose content is the header plus that order's rows as csv
text, so a person can fix and replay one order without touching the rest of the file.

- ``headers``: the column names and the values the template accepts (channels, payment methods, kinds).
- ``csv_rows``: csv text read in chunks of rows, each row's raw text kept (and the encoding check).
- ``rows``: template rows to canonical order and line frames, with a reason for every unusable cell.
- ``records``: rows grouped into one record per order, built on demand (bulk drops, attachments, replay).
"""
