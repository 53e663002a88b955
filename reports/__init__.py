"""Reports of a run folder: HTML with seaborn figures, and a short terminal summary.

- ``reports.data.load_run(run_dir)``: the run's tables, scenario and metadata;
- ``reports.build_report(run_dir)``: run_dir/report.html and run_dir/figures/*.png;
- ``reports.print_summary(run_dir, console=None)``: headline numbers per variant;
- ``reports.replication.main(argv)``: the paper-replication study (`admarket replicate`).
"""

from reports.data import RunData, load_run
from reports.html import build_report
from reports.summary import print_summary

__all__ = ["RunData", "build_report", "load_run", "print_summary"]
