"""Every output a human reads, rendered from what the judge decided and deciding nothing:
run.py a verdict's review page (repro.report, and each run-based submission of a contest),
contest.py a contest review's status.md, index, pages, review.json and workers.log."""
