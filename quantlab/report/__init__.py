"""report.md and report.html from manifest.json: tables, plots and a selection guide computed from measurements."""
