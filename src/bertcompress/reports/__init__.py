"""Run reports: a Markdown table, results.json and plots."""
