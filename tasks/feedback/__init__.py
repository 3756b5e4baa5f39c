"""Feedback (issue 14; T3): one queue for phone, email and online feedback, classified, answered within working
hours; satisfaction surveys and their replies. Rules in ``rules``, SQL and steps in ``queue``, ``surveys``."""
